// Package devissuer is a DEVELOPMENT-ONLY OpenID Connect token issuer. It
// serves a discovery document and a JWKS on loopback and signs access tokens
// shaped like Keycloak's, so that `mlflow-authz demo` and the end-to-end tests
// exercise the real JWT verification path without a Keycloak. `serve` never
// starts it: anyone who can reach it can mint tokens.
//
// It is also the one token issuer of the tests. It publishes any number of
// RSA and EC keys (and swaps them, as Keycloak does when it rotates), can go
// down, can name another issuer in its discovery document, counts the
// requests it serves, and signs any header and claims with any algorithm
// (including HS256 and none), so a test can build what an attacker would
// send. Package authntest wraps it for tests.
package devissuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // registers SHA-256 for crypto.Hash.New
	_ "crypto/sha512" // registers SHA-384 and SHA-512
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Audience is the audience every development token carries.
const Audience = "mlflow"

// DefaultKeyID is the kid of the key Start generates when given no keys.
const DefaultKeyID = "dev-key-1"

// Key is a key whose private half the issuer holds.
type Key struct {
	// ID is the key's kid.
	ID string
	// Alg is the JWK's alg and the JWS algorithm the key signs with: RS*,
	// PS* or ES* (or, for an encryption key, say RSA-OAEP). Empty publishes
	// the key without an alg.
	Alg string
	// Use is the JWK's use: "sig" when empty, or "enc".
	Use string
	// Private is an *rsa.PrivateKey or an *ecdsa.PrivateKey.
	Private crypto.Signer
}

// NewKey generates a key for alg: a 2048-bit RSA key for RS* and PS*, a
// P-256, P-384 or P-521 key for ES256, ES384 and ES512.
func NewKey(id, alg string) (Key, error) {
	k := Key{ID: id, Alg: alg}
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		k.Private, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k.Private, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		k.Private, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		k.Private, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		return Key{}, fmt.Errorf("devissuer: no key type for alg %q", alg)
	}
	if err != nil {
		return Key{}, fmt.Errorf("devissuer: %w", err)
	}
	return k, nil
}

// JWK returns the public half of k as a JWK, as the issuer publishes it.
func (k Key) JWK() (jwk.Key, error) {
	if k.Private == nil {
		return nil, fmt.Errorf("devissuer: key %q has no private key", k.ID)
	}
	pub, err := jwk.Import(k.Private.Public())
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	use := k.Use
	if use == "" {
		use = "sig"
	}
	if err := pub.Set(jwk.KeyIDKey, k.ID); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	if err := pub.Set(jwk.KeyUsageKey, use); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	if k.Alg != "" {
		if err := pub.Set(jwk.AlgorithmKey, k.Alg); err != nil {
			return nil, fmt.Errorf("devissuer: %w", err)
		}
	}
	return pub, nil
}

// Sign signs claims with k under the header Keycloak writes:
// {"alg": k.Alg, "typ": "JWT", "kid": k.ID}.
func (k Key) Sign(claims map[string]any) (string, error) {
	return Sign(map[string]any{"alg": k.Alg, "typ": "JWT", "kid": k.ID}, claims, k.Alg, k.Private)
}

// Sign builds a compact JWS of header and claims, both written exactly as
// given, and signs it with alg: RS*, PS* or ES* with an *rsa.PrivateKey or
// *ecdsa.PrivateKey, HS* with a []byte secret, or "none" (an empty
// signature) with a nil key. The header's own alg is not consulted, so a
// test can claim one algorithm and sign with another.
//
// It is written on the standard library alone, so the verifier (which uses
// jwx) is checked against an independent implementation.
func Sign(header, claims map[string]any, alg string, key any) (string, error) {
	hb, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("devissuer: header: %w", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devissuer: claims: %w", err)
	}
	input := b64(hb) + "." + b64(cb)
	sig, err := signature(input, alg, key)
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}

func signature(input, alg string, key any) ([]byte, error) {
	if alg == "none" {
		return nil, nil
	}
	var h crypto.Hash
	if len(alg) == 5 {
		switch alg[2:] {
		case "256":
			h = crypto.SHA256
		case "384":
			h = crypto.SHA384
		case "512":
			h = crypto.SHA512
		}
	}
	if h == 0 {
		return nil, fmt.Errorf("devissuer: unsupported alg %q", alg)
	}
	wrongKey := fmt.Errorf("devissuer: alg %s cannot sign with a %T", alg, key)
	if alg[:2] == "HS" {
		secret, ok := key.([]byte)
		if !ok {
			return nil, wrongKey
		}
		m := hmac.New(h.New, secret)
		m.Write([]byte(input))
		return m.Sum(nil), nil
	}
	d := h.New()
	d.Write([]byte(input))
	digest := d.Sum(nil)
	switch alg[:2] {
	case "RS", "PS":
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, wrongKey
		}
		if alg[0] == 'R' {
			return rsa.SignPKCS1v15(rand.Reader, k, h, digest)
		}
		return rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, wrongKey
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, fmt.Errorf("devissuer: %w", err)
		}
		// JWS wants r and s as two fixed-size big-endian halves (RFC 7518
		// section 3.4), not ASN.1.
		size := (k.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig, nil
	}
	return nil, fmt.Errorf("devissuer: unsupported alg %q", alg)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Option configures Start.
type Option func(*options)

type options struct {
	realm string
	keys  []Key
}

// WithRealm sets the realm in the issuer URL (.../realms/<realm>). The
// default is "dev".
func WithRealm(realm string) Option {
	return func(o *options) { o.realm = realm }
}

// WithKeys sets the published keys; the first one signs Token. The default
// is one fresh RS256 key named DefaultKeyID.
func WithKeys(keys ...Key) Option {
	return func(o *options) { o.keys = keys }
}

// Issuer signs development tokens and serves the keys to verify them.
type Issuer struct {
	// URL is the issuer URL (the iss claim), e.g. http://127.0.0.1:PORT/realms/dev.
	URL string
	// JWKSURL is where the keys are served, as discovery names it.
	JWKSURL string

	srv *http.Server
	now func() time.Time

	mu              sync.Mutex
	keys            []Key  // guarded by mu
	jwks            []byte // the public keys, encoded; guarded by mu
	discoveryIssuer string // guarded by mu
	conns           map[net.Conn]struct{}

	down             atomic.Bool
	jwksFetches      atomic.Int64
	discoveryFetches atomic.Int64
}

// Start listens on addr (use "127.0.0.1:0") and serves discovery and JWKS.
func Start(addr string, opts ...Option) (*Issuer, error) {
	o := options{realm: "dev"}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.keys) == 0 {
		k, err := NewKey(DefaultKeyID, "RS256")
		if err != nil {
			return nil, err
		}
		o.keys = []Key{k}
	}
	iss := &Issuer{now: time.Now, conns: map[net.Conn]struct{}{}}
	if err := iss.SetKeys(o.keys...); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	realm := "/realms/" + o.realm
	iss.URL = "http://" + ln.Addr().String() + realm
	iss.JWKSURL = iss.URL + "/protocol/openid-connect/certs"
	mux := http.NewServeMux()
	iss.handle(mux, realm+"/.well-known/openid-configuration", &iss.discoveryFetches, func(w http.ResponseWriter) {
		iss.mu.Lock()
		claimed := iss.discoveryIssuer
		iss.mu.Unlock()
		if claimed == "" {
			claimed = iss.URL
		}
		// The login endpoints are named as Keycloak names them but not
		// served: they let a browser-login redirect be built and checked;
		// a real login flow needs a real OpenID provider.
		oidc := iss.URL + "/protocol/openid-connect"
		writeJSON(w, map[string]any{
			"issuer":                                claimed,
			"jwks_uri":                              iss.JWKSURL,
			"authorization_endpoint":                oidc + "/auth",
			"token_endpoint":                        oidc + "/token",
			"end_session_endpoint":                  oidc + "/logout",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	iss.handle(mux, realm+"/protocol/openid-connect/certs", &iss.jwksFetches, func(w http.ResponseWriter) {
		iss.mu.Lock()
		body := iss.jwks
		iss.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ConnState: iss.track}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

// handle serves GET path with write, counting every request in count and
// answering 503 instead while the issuer is down.
func (i *Issuer) handle(mux *http.ServeMux, path string, count *atomic.Int64, write func(http.ResponseWriter)) {
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
		count.Add(1)
		if i.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		write(w)
	})
}

// Close stops the server.
func (i *Issuer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return i.srv.Shutdown(ctx)
}

// SetKeys replaces the published keys; the first one signs Token.
// Publishing the old key next to a new one is how Keycloak rotates.
func (i *Issuer) SetKeys(keys ...Key) error {
	if len(keys) == 0 {
		return errors.New("devissuer: at least one key is required")
	}
	set := make([]any, len(keys))
	for n, k := range keys {
		pub, err := k.JWK()
		if err != nil {
			return err
		}
		set[n] = pub
	}
	body, err := json.Marshal(map[string]any{"keys": set})
	if err != nil {
		return fmt.Errorf("devissuer: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = keys
	i.jwks = body
	return nil
}

// AddKey publishes k next to the current keys.
func (i *Issuer) AddKey(k Key) error {
	i.mu.Lock()
	keys := append([]Key(nil), i.keys...)
	i.mu.Unlock()
	return i.SetKeys(append(keys, k)...)
}

// Key returns the published key named kid.
func (i *Issuer) Key(kid string) (Key, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, k := range i.keys {
		if k.ID == kid {
			return k, true
		}
	}
	return Key{}, false
}

// SetDown makes discovery and the JWKS answer 503, as during a Keycloak
// outage, or serve again.
func (i *Issuer) SetDown(down bool) { i.down.Store(down) }

// SetDiscoveryIssuer makes the discovery document name iss as the issuer
// ("" restores URL), as a misrouted discovery URL would.
func (i *Issuer) SetDiscoveryIssuer(iss string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.discoveryIssuer = iss
}

// JWKSFetches counts the JWKS requests served, including those answered
// 503 while down.
func (i *Issuer) JWKSFetches() int { return int(i.jwksFetches.Load()) }

// DiscoveryFetches counts the discovery requests served, including those
// answered 503 while down.
func (i *Issuer) DiscoveryFetches() int { return int(i.discoveryFetches.Load()) }

// CloseClientConnections closes every open connection to the issuer, as a
// restarting Keycloak would, so clients must reconnect.
func (i *Issuer) CloseClientConnections() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for c := range i.conns {
		_ = c.Close()
	}
}

// track keeps the set of open connections for CloseClientConnections.
func (i *Issuer) track(c net.Conn, state http.ConnState) {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch state {
	case http.StateNew:
		i.conns[c] = struct{}{}
	case http.StateHijacked, http.StateClosed:
		delete(i.conns, c)
	}
}

// User describes the person or robot a token is for.
type User struct {
	Username string
	Groups   []string // as Keycloak's group mapper writes them, e.g. "/team-a"
	Roles    []string // realm roles
	// ClientID, when set, makes a client-credentials (service account) token.
	ClientID string
	TTL      time.Duration // default one hour
}

// Token returns an access token for u, shaped like Keycloak's and signed
// with the issuer's first key.
func (i *Issuer) Token(u User) (string, error) {
	if u.Username == "" && u.ClientID == "" {
		return "", errors.New("devissuer: a token needs a username or a client id")
	}
	ttl := u.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	now := i.now()
	claims := map[string]any{
		"iss":          i.URL,
		"aud":          []string{Audience, "account"},
		"sub":          "dev-" + u.Username + u.ClientID,
		"iat":          now.Unix(),
		"exp":          now.Add(ttl).Unix(),
		"typ":          "Bearer",
		"azp":          "mlflow-ui",
		"realm_access": map[string]any{"roles": append([]string{"default-roles-dev"}, u.Roles...)},
	}
	if u.ClientID != "" {
		claims["preferred_username"] = "service-account-" + u.ClientID
		claims["client_id"] = u.ClientID
		claims["azp"] = u.ClientID
	} else {
		claims["preferred_username"] = u.Username
	}
	if len(u.Groups) > 0 {
		claims["groups"] = u.Groups
	}
	i.mu.Lock()
	k := i.keys[0]
	i.mu.Unlock()
	return k.Sign(claims)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
