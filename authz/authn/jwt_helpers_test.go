package authn_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
)

// jwtTestNow is the fixed "now" of the JWT tests (2026-01-01T00:00:00Z).
var jwtTestNow = time.Unix(1767225600, 0)

// jwtTestKey is a signing key the tests hold the private half of.
type jwtTestKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

var (
	jwtKeysOnce sync.Once
	jwtRSA1     *rsa.PrivateKey
	jwtRSA2     *rsa.PrivateKey
	jwtRSAEvil  *rsa.PrivateKey
	jwtEC1      *ecdsa.PrivateKey
)

// jwtKeys generates the test keys once per test binary: RSA generation is
// slow and the tests only need distinct keys, not fresh ones per test.
func jwtKeys(tb testing.TB) {
	tb.Helper()
	jwtKeysOnce.Do(func() {
		var err error
		for _, k := range []**rsa.PrivateKey{&jwtRSA1, &jwtRSA2, &jwtRSAEvil} {
			*k, err = rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
		}
		jwtEC1, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
	})
}

func jwtRSAKey(tb testing.TB) jwtTestKey {
	jwtKeys(tb)
	return jwtTestKey{kid: "rsa-1", alg: "RS256", priv: jwtRSA1}
}

// jwtTestIssuer is a Keycloak-shaped issuer: discovery plus JWKS over real
// HTTP, with counters so tests can prove how often we fetch.
type jwtTestIssuer struct {
	srv       *httptest.Server
	url       string
	mu        sync.Mutex
	jwks      []byte
	down      atomic.Bool
	fetches   atomic.Int32
	discovery atomic.Int32
	// discoveryIssuer, when set, is what discovery claims the issuer is.
	discoveryIssuer string
}

func newJWTTestIssuer(t testing.TB, realm string, keys ...jwtTestKey) *jwtTestIssuer {
	t.Helper()
	ti := &jwtTestIssuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/realms/"+realm+"/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		ti.discovery.Add(1)
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		iss := ti.url
		if ti.discoveryIssuer != "" {
			iss = ti.discoveryIssuer
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":   iss,
			"jwks_uri": ti.url + "/protocol/openid-connect/certs",
		})
	})
	mux.HandleFunc("/realms/"+realm+"/protocol/openid-connect/certs", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		ti.mu.Lock()
		body := ti.jwks
		ti.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	ti.url = ti.srv.URL + "/realms/" + realm
	ti.setKeys(t, keys...)
	return ti
}

// setKeys publishes keys, plus an encryption key as Keycloak does, which
// must never be used to verify.
func (ti *jwtTestIssuer) setKeys(t testing.TB, keys ...jwtTestKey) {
	t.Helper()
	jwtKeys(t)
	var set []any
	for _, k := range keys {
		set = append(set, jwtPublicJWK(t, k.priv.Public(), k.kid, k.alg, "sig"))
	}
	set = append(set, jwtPublicJWK(t, jwtRSAEvil.Public(), "enc-1", "RSA-OAEP", "enc"))
	body, err := json.Marshal(map[string]any{"keys": set})
	require.NoError(t, err)
	ti.mu.Lock()
	ti.jwks = body
	ti.mu.Unlock()
}

func jwtPublicJWK(t testing.TB, pub crypto.PublicKey, kid, alg, use string) jwk.Key {
	t.Helper()
	k, err := jwk.Import(pub)
	require.NoError(t, err)
	require.NoError(t, k.Set(jwk.KeyIDKey, kid))
	if alg != "" {
		require.NoError(t, k.Set(jwk.AlgorithmKey, alg))
	}
	require.NoError(t, k.Set(jwk.KeyUsageKey, use))
	return k
}

// jwtSign builds a compact JWS by hand with the standard library, so the
// verifier under test is checked against an independent signer.
func jwtSign(t testing.TB, hdr, claims map[string]any, alg string, key any) string {
	t.Helper()
	hb, err := json.Marshal(hdr)
	require.NoError(t, err)
	cb, err := json.Marshal(claims)
	require.NoError(t, err)
	input := b64(hb) + "." + b64(cb)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		r, s, e := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest[:])
		require.NoError(t, e)
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	default:
		t.Fatalf("unsupported alg %s", alg)
	}
	require.NoError(t, err)
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwtToken signs claims with k under a Keycloak-like header.
func jwtToken(t testing.TB, k jwtTestKey, claims map[string]any) string {
	t.Helper()
	return jwtSign(t, map[string]any{"alg": k.alg, "typ": "JWT", "kid": k.kid}, claims, k.alg, k.priv)
}

// jwtUserClaims is a KC 26 user access token for iss.
func jwtUserClaims(iss string) map[string]any {
	return map[string]any{
		"exp": jwtTestNow.Add(5 * time.Minute).Unix(), "iat": jwtTestNow.Unix(),
		"jti": "onrtac:0b6c1e2e-5a8d-4c4e-9d1a-3f0d2c9b7a11",
		"iss": iss, "aud": []any{"mlflow", "account"},
		"sub": "6f1c2a3b-7d4e-4f60-9a8b-1c2d3e4f5a6b", "typ": "Bearer",
		"azp": "mlflow-ui", "sid": "tqtgtN9qZm1l1UX0Nmeo3mjd",
		"realm_access": map[string]any{"roles": []any{"default-roles-ml", "ml-user"}},
		"resource_access": map[string]any{
			"mlflow":  map[string]any{"roles": []any{"experiment-editor"}},
			"account": map[string]any{"roles": []any{"view-profile"}},
		},
		"scope":              "openid profile email",
		"preferred_username": "alice",
		"groups":             []any{"/team-a", "/org/team-b"},
	}
}

// jwtServiceClaims is a KC 26 client-credentials token of client.
func jwtServiceClaims(iss, client string) map[string]any {
	return map[string]any{
		"exp": jwtTestNow.Add(5 * time.Minute).Unix(), "iat": jwtTestNow.Unix(),
		"jti": "trtcc:7d2a", "iss": iss, "aud": "mlflow",
		"sub": "0d3c9a7e-2b1f-4c8d-9e6a-7f5b4c3d2e1f", "typ": "Bearer",
		"azp": client, "scope": "profile email",
		"realm_access":       map[string]any{"roles": []any{"default-roles-ml"}},
		"preferred_username": "service-account-" + client,
		"client_id":          client,
	}
}

// jwtClock is an adjustable clock for the authenticator.
type jwtClock struct{ ns atomic.Int64 }

func newJWTClock() *jwtClock {
	c := &jwtClock{}
	c.ns.Store(jwtTestNow.UnixNano())
	return c
}
func (c *jwtClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *jwtClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func jwtTestConfig(iss string) authn.IssuerConfig {
	return authn.IssuerConfig{
		Name:            "ml",
		Issuer:          iss,
		Audiences:       []string{"mlflow"},
		AdminGroups:     []string{"/platform-admins"},
		AdminRoles:      []string{"mlflow/admin"},
		ServiceAccounts: map[string]string{"training-pipeline": "trainer"},
	}
}

func newTestJWT(t testing.TB, clock *jwtClock, cfgs ...authn.IssuerConfig) *authn.JWT {
	t.Helper()
	j, err := authn.NewJWT(t.Context(), cfgs,
		authn.WithJWTClock(clock.now),
		authn.WithJWTLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(j.Close)
	return j
}

func jwtRequest(t testing.TB, authorization string) *authz.Request {
	t.Helper()
	h := map[string]string{}
	if authorization != "" {
		h["authorization"] = authorization
	}
	r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "mlflow.example.com", Target: "/api/2.0/mlflow/experiments/get?experiment_id=1", Headers: h})
	require.Nil(t, d)
	return r
}

// jwtStatus maps an authenticator error to the HTTP status the engine gives
// it: a CredentialError is a 401, anything else an infrastructure 503.
func jwtStatus(err error) int {
	if err == nil {
		return http.StatusOK
	}
	if _, ok := authz.AsCredentialError(err); ok {
		return http.StatusUnauthorized
	}
	return http.StatusServiceUnavailable
}

// requireJWTDeny asserts a 401 with reason and foreign flag, and that the
// message does not echo the token.
func requireJWTDeny(t *testing.T, id *authz.Identity, err error, reason authz.Reason, foreign bool, token string) {
	t.Helper()
	require.Nil(t, id)
	require.Equal(t, http.StatusUnauthorized, jwtStatus(err), "error: %v", err)
	ce, _ := authz.AsCredentialError(err)
	require.Equal(t, reason, ce.Reason, "message: %s", ce.Message)
	require.Equal(t, foreign, ce.Foreign)
	if len(token) > 8 {
		require.NotContains(t, ce.Error(), token)
	}
	var target *authz.CredentialError
	require.True(t, errors.As(err, &target))
}

func b64Dec(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
