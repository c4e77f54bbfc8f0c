package authn_test

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
)

func TestJWTUserToken(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	j := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))
	require.True(t, j.Ready())

	tests := []struct {
		name      string
		edit      func(map[string]any)
		wantAdmin bool
		wantRoles []string
	}{
		{name: "plain user", wantRoles: []string{"default-roles-ml", "ml-user", "account/view-profile", "mlflow/experiment-editor"}},
		{name: "admin group", edit: func(c map[string]any) { c["groups"] = []any{"/team-a", "/platform-admins"} }, wantAdmin: true},
		{name: "admin group without leading slash", edit: func(c map[string]any) { c["groups"] = []any{"platform-admins"} }, wantAdmin: true},
		{name: "admin client role", edit: func(c map[string]any) {
			c["resource_access"] = map[string]any{"mlflow": map[string]any{"roles": []any{"admin"}}}
		}, wantAdmin: true},
		{name: "realm role named like the client role is not admin", edit: func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": []any{"admin"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := jwtUserClaims(ti.URL)
			if tt.edit != nil {
				tt.edit(c)
			}
			id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, c)))
			require.NoError(t, err)
			require.NotNil(t, id)
			assert.Equal(t, authz.KindUser, id.Kind)
			assert.Equal(t, "alice", id.Username)
			assert.Equal(t, "6f1c2a3b-7d4e-4f60-9a8b-1c2d3e4f5a6b", id.Subject)
			assert.Equal(t, "mlflow-ui", id.ClientID)
			assert.Equal(t, ti.URL, id.Issuer)
			assert.Equal(t, "jwt", id.Method)
			assert.Equal(t, jwtTestNow.Add(5*time.Minute), id.Expiry)
			assert.Equal(t, tt.wantAdmin, id.Admin)
			if tt.edit == nil {
				assert.Equal(t, []string{"team-a", "org/team-b"}, id.Groups)
				assert.True(t, id.InGroup("/team-a"))
			}
			if tt.wantRoles != nil {
				assert.Equal(t, tt.wantRoles, id.Roles)
			}
		})
	}
}

func TestJWTAlgorithms(t *testing.T) {
	rsa := devissuer.Key{ID: "rsa-1", Alg: "RS256", Private: rsa1(t)}
	ps := devissuer.Key{ID: "ps-1", Alg: "PS256", Private: rsa2(t)}
	ec := devissuer.Key{ID: "ec-1", Alg: "ES256", Private: ec1(t)}
	ti := newJWTTestIssuer(t, "ml", rsa, ps, ec)
	j := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))
	for _, k := range []devissuer.Key{rsa, ps, ec} {
		t.Run(k.Alg, func(t *testing.T) {
			id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, jwtUserClaims(ti.URL))))
			require.NoError(t, err)
			assert.Equal(t, "alice", id.Username)
		})
	}
	t.Run("RS256 signature under the PS256 key's kid", func(t *testing.T) {
		tok := authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "ps-1"}, jwtUserClaims(ti.URL), "RS256", rsa2(t))
		id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
		requireJWTDeny(t, id, err, authn.ReasonTokenAlgNotAllowed, false, tok)
	})
	t.Run("ES256 header naming an RSA key", func(t *testing.T) {
		tok := authntest.Sign(t, map[string]any{"alg": "ES256", "kid": "rsa-1"}, jwtUserClaims(ti.URL), "ES256", ec1(t))
		id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
		requireJWTDeny(t, id, err, authn.ReasonTokenAlgNotAllowed, false, tok)
	})
	t.Run("encryption key is never used to verify", func(t *testing.T) {
		tok := authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "enc-1"}, jwtUserClaims(ti.URL), "RS256", rsaEvil(t))
		id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
		requireJWTDeny(t, id, err, authn.ReasonTokenUnknownKey, false, tok)
	})
	t.Run("allowlist narrower than the JWKS", func(t *testing.T) {
		cfg := jwtTestConfig(ti.URL)
		cfg.Algorithms = []string{"ES256"}
		j2 := newTestJWT(t, newJWTClock(), cfg)
		tok := authntest.Token(t, rsa, jwtUserClaims(ti.URL))
		id, err := j2.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
		requireJWTDeny(t, id, err, authn.ReasonTokenAlgNotAllowed, false, tok)
	})
}

func TestJWTServiceAccounts(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	j := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))

	tests := []struct {
		name       string
		claims     map[string]any
		wantUser   string
		wantClient string
		wantReason authz.Reason
	}{
		{name: "mapped client", claims: jwtServiceClaims(ti.URL, "training-pipeline"), wantUser: "trainer", wantClient: "training-pipeline"},
		{name: "unmapped client", claims: jwtServiceClaims(ti.URL, "batch-scorer"), wantUser: "service-account-batch-scorer", wantClient: "batch-scorer"},
		{name: "legacy clientId claim", claims: func() map[string]any {
			c := jwtServiceClaims(ti.URL, "training-pipeline")
			delete(c, "client_id")
			c["clientId"] = "training-pipeline"
			c["azp"] = "something-else"
			return c
		}(), wantUser: "trainer", wantClient: "training-pipeline"},
		{name: "azp fallback", claims: func() map[string]any {
			c := jwtServiceClaims(ti.URL, "batch-scorer")
			delete(c, "client_id")
			return c
		}(), wantUser: "service-account-batch-scorer", wantClient: "batch-scorer"},
		{name: "Keycloak lower-cases the service-account username", claims: func() map[string]any {
			c := jwtServiceClaims(ti.URL, "Batch-Scorer")
			c["preferred_username"] = "service-account-batch-scorer"
			return c
		}(), wantUser: "service-account-Batch-Scorer", wantClient: "Batch-Scorer"},
		{name: "username disagrees with client", claims: func() map[string]any {
			c := jwtServiceClaims(ti.URL, "training-pipeline")
			c["preferred_username"] = "service-account-admin-bot"
			return c
		}(), wantReason: authn.ReasonTokenBadServiceAcct},
		{name: "human named service-account-* logging in through a UI", claims: func() map[string]any {
			c := jwtUserClaims(ti.URL)
			c["preferred_username"] = "service-account-mlflow-ui"
			return c
		}(), wantReason: authn.ReasonTokenBadServiceAcct},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := authntest.Token(t, k, tt.claims)
			id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
			if tt.wantReason != "" {
				requireJWTDeny(t, id, err, tt.wantReason, false, tok)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, authz.KindServiceAccount, id.Kind)
			assert.Equal(t, tt.wantUser, id.Username)
			assert.Equal(t, tt.wantClient, id.ClientID)
		})
	}
}

func TestJWTDenies(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	other := newJWTTestIssuer(t, "other", k)
	clock := newJWTClock()
	j := newTestJWT(t, clock, jwtTestConfig(ti.URL))

	// An attacker serves its own JWKS and points jku/x5u at it.
	var attackerHits atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
	}))
	t.Cleanup(attacker.Close)

	pubDER, err := x509.MarshalPKIXPublicKey(rsa1(t).Public())
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	with := func(edit func(map[string]any)) map[string]any {
		c := jwtUserClaims(ti.URL)
		edit(c)
		return c
	}
	sign := func(c map[string]any) string { return authntest.Token(t, k, c) }
	valid := sign(jwtUserClaims(ti.URL))
	parts := strings.Split(valid, ".")

	tests := []struct {
		name    string
		token   string
		reason  authz.Reason
		foreign bool
		ok      bool
	}{
		{name: "expired", token: sign(with(func(c map[string]any) { c["exp"] = jwtTestNow.Add(-31 * time.Second).Unix() })), reason: authn.ReasonTokenExpired},
		{name: "expired within skew", token: sign(with(func(c map[string]any) { c["exp"] = jwtTestNow.Add(-29 * time.Second).Unix() })), ok: true},
		{name: "not yet valid", token: sign(with(func(c map[string]any) { c["nbf"] = jwtTestNow.Add(31 * time.Second).Unix() })), reason: authn.ReasonTokenNotYetValid},
		{name: "nbf within skew", token: sign(with(func(c map[string]any) { c["nbf"] = jwtTestNow.Add(29 * time.Second).Unix() })), ok: true},
		{name: "issued in the future", token: sign(with(func(c map[string]any) { c["iat"] = jwtTestNow.Add(time.Minute).Unix() })), reason: authn.ReasonTokenNotYetValid},
		{name: "missing exp", token: sign(with(func(c map[string]any) { delete(c, "exp") })), reason: authn.ReasonTokenMissingExp},
		{name: "exp not a number", token: sign(with(func(c map[string]any) { c["exp"] = "soon" })), reason: authn.ReasonTokenMalformed},
		{name: "wrong audience", token: sign(with(func(c map[string]any) { c["aud"] = []any{"account", "kiali"} })), reason: authn.ReasonTokenWrongAudience},
		{name: "missing audience", token: sign(with(func(c map[string]any) { delete(c, "aud") })), reason: authn.ReasonTokenWrongAudience},
		{name: "audience as string", token: sign(with(func(c map[string]any) { c["aud"] = "mlflow" })), ok: true},
		{name: "audience as array", token: sign(with(func(c map[string]any) { c["aud"] = []any{"account", "mlflow"} })), ok: true},
		{name: "ID token", token: sign(with(func(c map[string]any) { c["typ"] = "ID" })), reason: authn.ReasonTokenWrongType},
		{name: "refresh token", token: sign(with(func(c map[string]any) { c["typ"] = "Refresh" })), reason: authn.ReasonTokenWrongType},
		{name: "no typ", token: sign(with(func(c map[string]any) { delete(c, "typ") })), reason: authn.ReasonTokenWrongType},
		{name: "at+jwt header", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": k.ID, "typ": "at+jwt"}, jwtUserClaims(ti.URL), "RS256", rsa1(t)), ok: true},
		{name: "logout token header", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": k.ID, "typ": "logout+jwt"}, jwtUserClaims(ti.URL), "RS256", rsa1(t)), reason: authn.ReasonTokenWrongType},
		{name: "alg none", token: authntest.Sign(t, map[string]any{"alg": "none", "kid": k.ID}, jwtUserClaims(ti.URL), "none", nil), reason: authn.ReasonTokenAlgNotAllowed},
		{name: "HS256 with the public key PEM as secret", token: authntest.Sign(t, map[string]any{"alg": "HS256", "kid": k.ID}, jwtUserClaims(ti.URL), "HS256", pubPEM), reason: authn.ReasonTokenAlgNotAllowed},
		{name: "lightweight token", token: sign(map[string]any{
			"exp": jwtTestNow.Add(time.Minute).Unix(), "iat": jwtTestNow.Unix(), "jti": "onrtac:55eed8d2", "iss": ti.URL,
			"typ": "Bearer", "azp": "ui-client", "sid": "PsDjWKPMmchxBYS19si5j2F5", "scope": "openid", "aud": "mlflow",
		}), reason: authn.ReasonTokenMissingUsername},
		{name: "another realm", token: authntest.Token(t, k, jwtUserClaims(other.URL)), reason: authn.ReasonTokenUnknownIssuer, foreign: true},
		{name: "no iss", token: sign(with(func(c map[string]any) { delete(c, "iss") })), reason: authn.ReasonTokenUnknownIssuer, foreign: true},
		{name: "iss with trailing slash", token: sign(with(func(c map[string]any) { c["iss"] = ti.URL + "/" })), reason: authn.ReasonTokenUnknownIssuer, foreign: true},
		{name: "opaque token", token: "phx_4f1b2c3d4e5f60718293a4b5c6d7e8f9", reason: authn.ReasonTokenNotJWT, foreign: true},
		{name: "JWE-shaped token", token: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", reason: authn.ReasonTokenNotJWT, foreign: true},
		{name: "tampered payload", token: parts[0] + "." + b64([]byte(strings.Replace(string(mustB64Decode(t, parts[1])), "alice", "admin", 1))) + "." + parts[2], reason: authn.ReasonTokenBadSignature},
		{name: "stripped signature", token: parts[0] + "." + parts[1] + ".", reason: authn.ReasonTokenBadSignature},
		{name: "signature from another key", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": k.ID}, jwtUserClaims(ti.URL), "RS256", rsaEvil(t)), reason: authn.ReasonTokenBadSignature},
		{name: "jku to attacker JWKS", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "evil", "jku": attacker.URL + "/jwks"}, jwtUserClaims(ti.URL), "RS256", rsaEvil(t)), reason: authn.ReasonTokenUnknownKey},
		{name: "x5u to attacker", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "evil2", "x5u": attacker.URL + "/cert"}, jwtUserClaims(ti.URL), "RS256", rsaEvil(t)), reason: authn.ReasonTokenUnknownKey},
		{name: "jku with our kid", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": k.ID, "jku": attacker.URL + "/jwks"}, jwtUserClaims(ti.URL), "RS256", rsaEvil(t)), reason: authn.ReasonTokenBadSignature},
		{name: "embedded jwk", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": k.ID, "jwk": authntest.JWK(t, devissuer.Key{ID: k.ID, Alg: "RS256", Private: rsaEvil(t)})}, jwtUserClaims(ti.URL), "RS256", rsaEvil(t)), reason: authn.ReasonTokenBadSignature},
		{name: "no kid", token: authntest.Sign(t, map[string]any{"alg": "RS256"}, jwtUserClaims(ti.URL), "RS256", rsa1(t)), reason: authn.ReasonTokenUnknownKey},
		{name: "crit header", token: authntest.Sign(t, map[string]any{"alg": "RS256", "kid": k.ID, "crit": []any{"exp"}, "exp": 1}, jwtUserClaims(ti.URL), "RS256", rsa1(t)), reason: authn.ReasonTokenBadSignature},
		{name: "groups not a list", token: sign(with(func(c map[string]any) { c["groups"] = "/team-a" })), reason: authn.ReasonTokenMalformed},
		{name: "roles not a list", token: sign(with(func(c map[string]any) { c["realm_access"] = map[string]any{"roles": "admin"} })), reason: authn.ReasonTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tt.token))
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, "alice", id.Username)
				return
			}
			requireJWTDeny(t, id, err, tt.reason, tt.foreign, tt.token)
		})
	}
	assert.Zero(t, attackerHits.Load(), "jku/x5u must never be fetched")
	assert.Zero(t, other.JWKSFetches()+other.DiscoveryFetches(), "an unconfigured issuer is never contacted")
}

func mustB64Decode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := b64Dec(s)
	require.NoError(t, err)
	return b
}

func TestJWTHeaders(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	j := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))
	valid := authntest.Token(t, k, jwtUserClaims(ti.URL))

	tests := []struct {
		name   string
		header string
		reason authz.Reason // "" means (nil, nil)
		ok     bool
	}{
		{name: "no Authorization header"},
		{name: "Basic credentials are not ours", header: "Basic YWxpY2U6c2VjcmV0"},
		{name: "Negotiate", header: "Negotiate abc"},
		{name: "scheme without space is not Bearer", header: "Bearerx " + valid},
		{name: "lower-case scheme", header: "bearer " + valid, ok: true},
		{name: "extra spaces", header: "Bearer   " + valid + "  ", ok: true},
		{name: "duplicate headers merged by Envoy", header: "Bearer a,Bearer b", reason: authn.ReasonTokenMalformed},
		{name: "duplicate valid tokens", header: "Bearer " + valid + ", Bearer " + valid, reason: authn.ReasonTokenMalformed},
		{name: "Basic then Bearer", header: "Basic YWxpY2U6c2VjcmV0,Bearer " + valid, reason: authn.ReasonTokenMalformed},
		{name: "empty bearer", header: "Bearer", reason: authn.ReasonTokenMalformed},
		{name: "empty bearer with space", header: "Bearer    ", reason: authn.ReasonTokenMalformed},
		{name: "token with inner space", header: "Bearer " + valid + " x", reason: authn.ReasonTokenMalformed},
		{name: "oversized", header: "Bearer " + strings.Repeat("a", authn.JWTMaxTokenSize+1), reason: authn.ReasonTokenTooLarge},
		{name: "oversized with valid prefix", header: "Bearer " + valid + strings.Repeat(".", authn.JWTMaxTokenSize), reason: authn.ReasonTokenTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := j.Authenticate(t.Context(), jwtRequest(t, tt.header))
			switch {
			case tt.ok:
				require.NoError(t, err)
				require.Equal(t, "alice", id.Username)
			case tt.reason == "":
				require.NoError(t, err)
				require.Nil(t, id)
			default:
				requireJWTDeny(t, id, err, tt.reason, false, valid)
			}
		})
	}
}

func TestJWTRotation(t *testing.T) {
	oldKey := devissuer.Key{ID: "old", Alg: "RS256", Private: rsa1(t)}
	newKey := devissuer.Key{ID: "new", Alg: "RS256", Private: rsa2(t)}
	ti := newJWTTestIssuer(t, "ml", oldKey)
	j := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))
	require.Equal(t, 1, ti.JWKSFetches())
	require.Equal(t, 1, ti.DiscoveryFetches())

	setKeys(t, ti, oldKey, newKey) // Keycloak adds a higher-priority key
	id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, newKey, jwtUserClaims(ti.URL))))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Username)
	assert.Equal(t, 2, ti.JWKSFetches(), "one refresh for the new kid")
	assert.Equal(t, 1, ti.DiscoveryFetches(), "discovery is read once")

	// The passive old key still verifies tokens minted before the rotation.
	id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, oldKey, jwtUserClaims(ti.URL))))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Username)
	assert.Equal(t, 2, ti.JWKSFetches())
}

func TestJWTUnknownKidFlood(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	clock := newJWTClock()
	cfg := jwtTestConfig(ti.URL)
	cfg.JWKSMinRefreshInterval = time.Minute
	j := newTestJWT(t, clock, cfg)
	require.Equal(t, 1, ti.JWKSFetches())

	flood := func(n int) []error {
		tokens := make([]string, n)
		for i := range tokens {
			tokens[i] = authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "forged-" + strings.Repeat("x", i%7) + string(rune('a'+i%26))},
				jwtUserClaims(ti.URL), "RS256", rsaEvil(t))
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, errs[i] = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tokens[i]))
			})
		}
		wg.Wait()
		return errs
	}

	for _, err := range flood(100) {
		ce, ok := authz.AsCredentialError(err)
		require.True(t, ok, "error: %v", err)
		require.Equal(t, http.StatusUnauthorized, jwtStatus(err))
		require.Equal(t, authn.ReasonTokenUnknownKey, ce.Reason)
	}
	assert.Equal(t, 2, ti.JWKSFetches(), "100 forged kids cost one JWKS fetch")

	clock.Advance(30 * time.Second)
	flood(50)
	assert.Equal(t, 2, ti.JWKSFetches(), "no fetch inside the min refresh interval")

	clock.Advance(31 * time.Second)
	flood(50)
	assert.Equal(t, 3, ti.JWKSFetches(), "one more fetch once the interval passed")
}

func TestJWTIssuerOutages(t *testing.T) {
	t.Run("JWKS down after the first fetch keeps cached keys", func(t *testing.T) {
		k := jwtRSAKey(t)
		ti := newJWTTestIssuer(t, "ml", k)
		clock := newJWTClock()
		j := newTestJWT(t, clock, jwtTestConfig(ti.URL))
		assert.Equal(t, []authn.JWKSStatus{{Issuer: "ml", LastSuccess: clock.Now()}}, j.JWKSStatus())
		ti.SetDown(true)
		ti.CloseClientConnections()

		id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, jwtUserClaims(ti.URL))))
		require.NoError(t, err)
		assert.Equal(t, "alice", id.Username)
		assert.True(t, j.Ready())

		tok := authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "rotated"}, jwtUserClaims(ti.URL), "RS256", rsa2(t))
		id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
		requireJWTDeny(t, id, err, authn.ReasonTokenUnknownKey, false, tok)
		// The refresh the unknown kid caused failed: an operator sees it.
		assert.Equal(t, []authn.JWKSStatus{{Issuer: "ml", Failures: 1, LastSuccess: clock.Now()}}, j.JWKSStatus())
	})

	t.Run("JWKS down from the start", func(t *testing.T) {
		k := jwtRSAKey(t)
		ti := newJWTTestIssuer(t, "ml", k)
		ti.SetDown(true)
		j := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))
		assert.False(t, j.Ready())
		st := j.JWKSStatus()
		require.Len(t, st, 1)
		assert.NotZero(t, st[0].Failures)
		assert.True(t, st[0].LastSuccess.IsZero(), "never fetched")

		id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, jwtUserClaims(ti.URL))))
		require.Nil(t, id)
		require.Error(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, jwtStatus(err))

		// Keycloak comes back: the background retry picks the keys up.
		ti.SetDown(false)
		require.Eventually(t, j.Ready, 10*time.Second, 50*time.Millisecond)
		assert.False(t, j.JWKSStatus()[0].LastSuccess.IsZero())
		id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, jwtUserClaims(ti.URL))))
		require.NoError(t, err)
		assert.Equal(t, "alice", id.Username)
	})

	t.Run("hanging Keycloak does not block start-up", func(t *testing.T) {
		release := make(chan struct{})
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(hang.Close)
		t.Cleanup(func() { close(release) })
		cfg := jwtTestConfig(hang.URL + "/realms/ml")
		cfg.HTTPTimeout = 200 * time.Millisecond
		start := time.Now()
		j := newTestJWT(t, newJWTClock(), cfg)
		assert.Less(t, time.Since(start), 3*time.Second)
		assert.False(t, j.Ready())
	})

	t.Run("discovery naming another issuer", func(t *testing.T) {
		k := jwtRSAKey(t)
		ti := newJWTTestIssuer(t, "ml", k)
		ti.SetDiscoveryIssuer("https://evil.example.com/realms/ml")
		j := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))
		assert.False(t, j.Ready())
		assert.Zero(t, ti.JWKSFetches(), "keys of a mismatched issuer are never fetched")
	})

	t.Run("jwks_url skips discovery", func(t *testing.T) {
		k := jwtRSAKey(t)
		ti := newJWTTestIssuer(t, "ml", k)
		cfg := jwtTestConfig(ti.URL)
		cfg.JWKSURL = ti.JWKSURL
		j := newTestJWT(t, newJWTClock(), cfg)
		assert.True(t, j.Ready())
		assert.Zero(t, ti.DiscoveryFetches())
	})
}

func TestJWTMultipleIssuers(t *testing.T) {
	k1 := devissuer.Key{ID: "same-kid", Alg: "RS256", Private: rsa1(t)}
	k2 := devissuer.Key{ID: "same-kid", Alg: "RS256", Private: rsa2(t)}
	ml := newJWTTestIssuer(t, "ml", k1)
	ops := newJWTTestIssuer(t, "ops", k2)
	opsCfg := jwtTestConfig(ops.URL)
	opsCfg.Name = "ops"
	opsCfg.Audiences = []string{"kiali", "mlflow"}
	j := newTestJWT(t, newJWTClock(), jwtTestConfig(ml.URL), opsCfg)

	id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k2, jwtUserClaims(ops.URL))))
	require.NoError(t, err)
	assert.Equal(t, ops.URL, id.Issuer)

	// A token claiming one realm but signed with the other realm's key (same
	// kid) is refused: keys are per issuer.
	tok := authntest.Token(t, k2, jwtUserClaims(ml.URL))
	id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
	requireJWTDeny(t, id, err, authn.ReasonTokenBadSignature, false, tok)
}

func TestJWTCache(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	clock := newJWTClock()
	j := newTestJWT(t, clock, jwtTestConfig(ti.URL))
	claims := jwtUserClaims(ti.URL)
	claims["exp"] = jwtTestNow.Add(2 * time.Minute).Unix()
	tok := authntest.Token(t, k, claims)

	id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
	require.NoError(t, err)
	id.Username = "mallory" // callers get a copy; the cache is unaffected

	id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Username)

	// exp (earlier than the TTL) ends the cached entry: the re-verification
	// then rejects the token.
	clock.Advance(2*time.Minute + 31*time.Second)
	id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
	requireJWTDeny(t, id, err, authn.ReasonTokenExpired, false, tok)
}

func TestNewJWTConfigErrors(t *testing.T) {
	base := func() authn.IssuerConfig {
		return authn.IssuerConfig{Issuer: "https://sso.example.com/realms/ml", Audiences: []string{"mlflow"}, HTTPTimeout: 50 * time.Millisecond}
	}
	tests := []struct {
		name    string
		edit    func(*authn.IssuerConfig)
		second  bool
		wantErr string
	}{
		{name: "missing issuer", edit: func(c *authn.IssuerConfig) { c.Issuer = "" }, wantErr: "issuers[0].issuer"},
		{name: "no audiences", edit: func(c *authn.IssuerConfig) { c.Audiences = nil }, wantErr: "issuers[0].audiences"},
		{name: "empty audience", edit: func(c *authn.IssuerConfig) { c.Audiences = []string{""} }, wantErr: "issuers[0].audiences"},
		{name: "alg none", edit: func(c *authn.IssuerConfig) { c.Algorithms = []string{"RS256", "none"} }, wantErr: "issuers[0].algorithms"},
		{name: "HS256", edit: func(c *authn.IssuerConfig) { c.Algorithms = []string{"HS256"} }, wantErr: "issuers[0].algorithms"},
		{name: "HS512", edit: func(c *authn.IssuerConfig) { c.Algorithms = []string{"HS512"} }, wantErr: "issuers[0].algorithms"},
		{name: "lower-case alg", edit: func(c *authn.IssuerConfig) { c.Algorithms = []string{"rs256"} }, wantErr: "issuers[0].algorithms"},
		{name: "relative jwks_url", edit: func(c *authn.IssuerConfig) { c.JWKSURL = "/certs" }, wantErr: "issuers[0].jwks_url"},
		{name: "file discovery_url", edit: func(c *authn.IssuerConfig) { c.DiscoveryURL = "file:///etc/passwd" }, wantErr: "issuers[0].discovery_url"},
		{name: "negative timeout", edit: func(c *authn.IssuerConfig) { c.HTTPTimeout = -1 }, wantErr: "issuers[0].http_timeout"},
		{name: "empty service account username", edit: func(c *authn.IssuerConfig) { c.ServiceAccounts = map[string]string{"x": ""} }, wantErr: "issuers[0].service_accounts"},
		{name: "duplicate issuer", second: true, wantErr: "issuers[1].issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			if tt.edit != nil {
				tt.edit(&c)
			}
			cfgs := []authn.IssuerConfig{c}
			if tt.second {
				cfgs = append(cfgs, base())
			}
			j, err := authn.NewJWT(t.Context(), cfgs)
			require.Nil(t, j)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	_, err := authn.NewJWT(t.Context(), nil)
	require.ErrorContains(t, err, "issuers")
}

func TestIssuerConfigYAML(t *testing.T) {
	const doc = `
name: ml
issuer: https://sso.example.com/realms/ml
discovery_url: https://keycloak.sso.svc:8443/realms/ml/.well-known/openid-configuration
audiences: [mlflow, kiali]
username_claim: email
groups_claim: team_paths
admin_groups: [/platform-admins]
admin_roles: [mlflow/admin]
algorithms: [RS256, PS256]
service_accounts:
  training-pipeline: trainer
jwks_refresh_interval: 10m
jwks_min_refresh_interval: 1m
http_timeout: 2s
`
	var c authn.IssuerConfig
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&c))
	require.NoError(t, c.Validate())
	assert.Equal(t, authn.IssuerConfig{
		Name:                   "ml",
		Issuer:                 "https://sso.example.com/realms/ml",
		DiscoveryURL:           "https://keycloak.sso.svc:8443/realms/ml/.well-known/openid-configuration",
		Audiences:              []string{"mlflow", "kiali"},
		UsernameClaim:          authn.ClaimNames{"email"},
		GroupsClaim:            "team_paths",
		AdminGroups:            []string{"/platform-admins"},
		AdminRoles:             []string{"mlflow/admin"},
		Algorithms:             []string{"RS256", "PS256"},
		ServiceAccounts:        map[string]string{"training-pipeline": "trainer"},
		JWKSRefreshInterval:    10 * time.Minute,
		JWKSMinRefreshInterval: time.Minute,
		HTTPTimeout:            2 * time.Second,
	}, c)

	bad := authn.IssuerConfig{Issuer: "https://sso.example.com/realms/ml", Audiences: []string{"mlflow"}, Algorithms: []string{"HS256"}}
	require.ErrorContains(t, bad.Validate(), "algorithms:")
}

func TestJWTCustomClaims(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	cfg := jwtTestConfig(ti.URL)
	cfg.UsernameClaim = authn.ClaimNames{"email"}
	cfg.GroupsClaim = "team_paths"
	j := newTestJWT(t, newJWTClock(), cfg)

	c := jwtUserClaims(ti.URL)
	c["email"] = "alice@example.com"
	c["team_paths"] = []any{"/platform-admins"}
	id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, c)))
	require.NoError(t, err)
	assert.Equal(t, "alice@example.com", id.Username)
	assert.Equal(t, []string{"platform-admins"}, id.Groups)
	assert.True(t, id.Admin)

	delete(c, "email")
	tok := authntest.Token(t, k, c)
	id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tok))
	requireJWTDeny(t, id, err, authn.ReasonTokenMissingUsername, false, tok)
	ce, _ := authz.AsCredentialError(err)
	assert.Contains(t, ce.Message, "Add to lightweight access token")
	assert.Contains(t, ce.Message, `"email"`)
}

func TestJWTCloseStopsRetries(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	ti.SetDown(true)
	j, err := authn.NewJWT(t.Context(), []authn.IssuerConfig{jwtTestConfig(ti.URL)}, authn.WithJWTClock(newJWTClock().Now))
	require.NoError(t, err)
	j.Close()
	j.Close() // idempotent
	n := ti.DiscoveryFetches()
	time.Sleep(1500 * time.Millisecond) // longer than the first retry backoff
	assert.Equal(t, n, ti.DiscoveryFetches(), "no fetches after Close")
	assert.False(t, j.Ready())
}
