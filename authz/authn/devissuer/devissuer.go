// Package devissuer is a DEVELOPMENT-ONLY OpenID Connect token issuer. It
// serves a discovery document and a JWKS on loopback and signs access tokens
// shaped like Keycloak's, so that `mlflow-authz demo` and the end-to-end tests
// exercise the real JWT verification path without a Keycloak. `serve` never
// starts it: anyone who can reach it can mint tokens.
package devissuer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Audience is the audience every development token carries.
const Audience = "mlflow"

// Issuer signs development tokens and serves the keys to verify them.
type Issuer struct {
	// URL is the issuer URL (the iss claim), e.g. http://127.0.0.1:PORT/realms/dev.
	URL string

	key    jwk.Key
	public jwk.Set
	srv    *http.Server
	ln     net.Listener
	now    func() time.Time
}

// Start listens on addr (use "127.0.0.1:0") and serves discovery and JWKS.
func Start(addr string) (*Issuer, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	key, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	_ = key.Set(jwk.KeyIDKey, "dev-key-1")
	_ = key.Set(jwk.AlgorithmKey, jwa.RS256())
	_ = key.Set(jwk.KeyUsageKey, "sig")
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	iss := &Issuer{
		URL:    "http://" + ln.Addr().String() + "/realms/dev",
		key:    key,
		public: set,
		ln:     ln,
		now:    time.Now,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realms/dev/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                iss.URL,
			"jwks_uri":                              iss.URL + "/protocol/openid-connect/certs",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /realms/dev/protocol/openid-connect/certs", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, iss.public)
	})
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

// Close stops the server.
func (i *Issuer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return i.srv.Shutdown(ctx)
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

// Token returns a signed access token for u, shaped like Keycloak's.
func (i *Issuer) Token(u User) (string, error) {
	if u.Username == "" && u.ClientID == "" {
		return "", errors.New("devissuer: a token needs a username or a client id")
	}
	ttl := u.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	now := i.now()
	b := jwt.NewBuilder().
		Issuer(i.URL).
		Audience([]string{Audience, "account"}).
		Subject("dev-"+u.Username+u.ClientID).
		IssuedAt(now).
		Expiration(now.Add(ttl)).
		Claim("typ", "Bearer").
		Claim("azp", "mlflow-ui").
		Claim("realm_access", map[string]any{"roles": append([]string{"default-roles-dev"}, u.Roles...)})
	if u.ClientID != "" {
		b = b.Claim("preferred_username", "service-account-"+u.ClientID).
			Claim("client_id", u.ClientID).
			Claim("azp", u.ClientID)
	} else {
		b = b.Claim("preferred_username", u.Username)
	}
	if len(u.Groups) > 0 {
		b = b.Claim("groups", u.Groups)
	}
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), i.key))
	if err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	return string(signed), nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
