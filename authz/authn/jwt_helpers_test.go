package authn_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// jwtTestNow is the fixed "now" of the JWT tests (2026-01-01T00:00:00Z).
var jwtTestNow = time.Unix(1767225600, 0)

// The tests' private keys, shared across the test binary (see
// authntest.RSAKey). rsaEvil is the attacker's: the issuers publish it only
// as an encryption key, which must never verify a signature.
func rsa1(tb testing.TB) *rsa.PrivateKey    { return authntest.RSAKey(tb, "rsa-1") }
func rsa2(tb testing.TB) *rsa.PrivateKey    { return authntest.RSAKey(tb, "rsa-2") }
func rsaEvil(tb testing.TB) *rsa.PrivateKey { return authntest.RSAKey(tb, "rsa-evil") }
func ec1(tb testing.TB) *ecdsa.PrivateKey   { return authntest.ECKey(tb, "ec-1") }

func jwtRSAKey(tb testing.TB) devissuer.Key {
	return devissuer.Key{ID: "rsa-1", Alg: "RS256", Private: rsa1(tb)}
}

// newJWTTestIssuer starts a Keycloak-shaped issuer for realm publishing
// keys (see setKeys).
func newJWTTestIssuer(tb testing.TB, realm string, keys ...devissuer.Key) *devissuer.Issuer {
	tb.Helper()
	return authntest.Start(tb, devissuer.WithRealm(realm), devissuer.WithKeys(withEncKey(tb, keys)...))
}

// setKeys publishes keys, plus an encryption key as Keycloak does, which
// must never be used to verify.
func setKeys(tb testing.TB, iss *devissuer.Issuer, keys ...devissuer.Key) {
	tb.Helper()
	require.NoError(tb, iss.SetKeys(withEncKey(tb, keys)...))
}

func withEncKey(tb testing.TB, keys []devissuer.Key) []devissuer.Key {
	return append(slices.Clone(keys), devissuer.Key{ID: "enc-1", Alg: "RSA-OAEP", Use: "enc", Private: rsaEvil(tb)})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

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

// newJWTClock returns an adjustable clock for the authenticator, at
// jwtTestNow.
func newJWTClock() *storetest.Clock { return storetest.NewClock(jwtTestNow) }

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

func newTestJWT(t testing.TB, clock *storetest.Clock, cfgs ...authn.IssuerConfig) *authn.JWT {
	t.Helper()
	j, err := authn.NewJWT(t.Context(), cfgs,
		authn.WithJWTClock(clock.Now),
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
