package authn_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
)

// genericClientToken is shaped exactly as the token of issue 10's non-
// Keycloak OAuth2 server: an RS256 access token with the right iss and
// aud, header typ "JWT", and a payload with client_id but no typ, azp or
// preferred_username. It is a client-credentials token: sub is the client.
func genericClientToken(iss, client string) map[string]any {
	return map[string]any{
		"iss": iss, "aud": "mlflow", "sub": client, "client_id": client,
		"iat": jwtTestNow.Unix(), "exp": jwtTestNow.Add(time.Hour).Unix(),
		"jti": "b7f5c1d2-9e3a-4b6c-8d7e-1f2a3b4c5d6e", "scope": "mlflow.write",
	}
}

// rfc9068Token is a user's access token as RFC 9068 section 2.2 lays it
// out (typed at+jwt in the header, section 2.1), with the section 2.2.3.1
// groups and roles claims.
func rfc9068Token(iss string) map[string]any {
	return map[string]any{
		"iss": iss, "aud": []any{"mlflow"}, "sub": "5ba552d67", "client_id": "s6BhdRkqt3",
		"iat": jwtTestNow.Unix(), "exp": jwtTestNow.Add(time.Hour).Unix(), "jti": "dbe39bf3a3ba4238a513f51d6e1691c4",
		"scope": "openid profile mlflow", "auth_time": jwtTestNow.Unix(),
		"groups": []any{"team-a", "/org/team-b"}, "roles": []any{"mlflow-admin"},
		"email": "alice@example.com",
	}
}

func TestGenericProfile(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	jwtHeader := map[string]any{"alg": "RS256", "typ": "JWT", "kid": k.ID}
	atHeader := map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": k.ID}

	keycloak := newTestJWT(t, newJWTClock(), jwtTestConfig(ti.URL))
	generic := func(mod func(*authn.IssuerConfig)) *authn.JWT {
		cfg := jwtTestConfig(ti.URL)
		cfg.Profile = authn.ProfileGeneric
		if mod != nil {
			mod(&cfg)
		}
		return newTestJWT(t, newJWTClock(), cfg)
	}
	plain := generic(nil)
	withClaims := generic(func(c *authn.IssuerConfig) {
		c.UsernameClaim = authn.ClaimNames{"preferred_username", "email"}
		c.RolesClaim = "roles"
		c.AdminRoles = []string{"mlflow-admin"}
	})
	nested := generic(func(c *authn.IssuerConfig) {
		c.UsernameClaim = authn.ClaimNames{"profile.login"}
		c.GroupsClaim = "https://mlflow.example.com/groups"
		c.RolesClaim = "resource.mlflow.roles"
	})
	mapped := generic(func(c *authn.IssuerConfig) {
		c.ServiceAccounts = map[string]string{"ci-runner": "ci-bot"}
	})

	sign := func(hdr, claims map[string]any) string { return authntest.Sign(t, hdr, claims, "RS256", rsa1(t)) }
	with := func(c map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}

	tests := []struct {
		name   string
		j      *authn.JWT
		token  string
		want   *authz.Identity // nil: denied with reason
		reason authz.Reason
	}{
		// Nothing loosens by default: the keycloak profile refuses them.
		{"issue's token, keycloak profile", keycloak, sign(jwtHeader, genericClientToken(ti.URL, "ci-runner")), nil, authn.ReasonTokenWrongType},
		{"RFC 9068 token, keycloak profile", keycloak, sign(atHeader, rfc9068Token(ti.URL)), nil, authn.ReasonTokenWrongType},

		{"issue's token is a client's service account", plain, sign(jwtHeader, genericClientToken(ti.URL, "ci-runner")),
			&authz.Identity{Kind: authz.KindServiceAccount, Username: "service-account-ci-runner", ClientID: "ci-runner", Subject: "ci-runner"}, ""},
		{"service account mapped", mapped, sign(jwtHeader, genericClientToken(ti.URL, "ci-runner")),
			&authz.Identity{Kind: authz.KindServiceAccount, Username: "ci-bot", ClientID: "ci-runner", Subject: "ci-runner"}, ""},
		{"client in azp", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "cli"), "client_id", nil, "azp", "cli")),
			&authz.Identity{Kind: authz.KindServiceAccount, Username: "service-account-cli", ClientID: "cli", Subject: "cli"}, ""},
		{"issue's shape for a person: sub by default", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "web"), "sub", "u-42")),
			&authz.Identity{Kind: authz.KindUser, Username: "u-42", ClientID: "web", Subject: "u-42"}, ""},
		{"RFC 9068 user token, fallback to email, roles claim", withClaims, sign(atHeader, rfc9068Token(ti.URL)),
			&authz.Identity{Kind: authz.KindUser, Username: "alice@example.com", ClientID: "s6BhdRkqt3", Subject: "5ba552d67",
				Groups: []string{"team-a", "org/team-b"}, Roles: []string{"mlflow-admin"}, Admin: true}, ""},
		{"first username claim wins", withClaims, sign(atHeader, with(rfc9068Token(ti.URL), "preferred_username", "alice")),
			&authz.Identity{Kind: authz.KindUser, Username: "alice", ClientID: "s6BhdRkqt3", Subject: "5ba552d67",
				Groups: []string{"team-a", "org/team-b"}, Roles: []string{"mlflow-admin"}, Admin: true}, ""},
		{"empty username claim falls through", withClaims, sign(atHeader, with(rfc9068Token(ti.URL), "preferred_username", "")),
			&authz.Identity{Kind: authz.KindUser, Username: "alice@example.com", ClientID: "s6BhdRkqt3", Subject: "5ba552d67",
				Groups: []string{"team-a", "org/team-b"}, Roles: []string{"mlflow-admin"}, Admin: true}, ""},
		{"Keycloak's own token under generic", plain, authntest.Token(t, k, jwtUserClaims(ti.URL)),
			&authz.Identity{Kind: authz.KindUser, Username: "6f1c2a3b-7d4e-4f60-9a8b-1c2d3e4f5a6b", ClientID: "mlflow-ui",
				Subject: "6f1c2a3b-7d4e-4f60-9a8b-1c2d3e4f5a6b", Groups: []string{"team-a", "org/team-b"}}, ""},
		{"nested and namespaced claims, a lone string group", nested, sign(atHeader, with(rfc9068Token(ti.URL),
			"profile", map[string]any{"login": "alice"},
			"https://mlflow.example.com/groups", "platform",
			"resource", map[string]any{"mlflow": map[string]any{"roles": []any{"editor"}}})),
			&authz.Identity{Kind: authz.KindUser, Username: "alice", ClientID: "s6BhdRkqt3", Subject: "5ba552d67",
				Groups: []string{"platform"}, Roles: []string{"editor"}}, ""},

		{"ID token (typ claim) under generic", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "c"), "typ", "ID")), nil, authn.ReasonTokenWrongType},
		{"refresh token under generic", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "c"), "typ", "Refresh")), nil, authn.ReasonTokenWrongType},
		{"logout token header under generic", plain, sign(map[string]any{"alg": "RS256", "typ": "logout+jwt", "kid": k.ID},
			genericClientToken(ti.URL, "c")), nil, authn.ReasonTokenWrongType},
		{"non-string typ claim", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "c"), "typ", 1)), nil, authn.ReasonTokenWrongType},
		{"no username", withClaims, sign(atHeader, with(rfc9068Token(ti.URL), "email", nil)), nil, authn.ReasonTokenMissingUsername},
		{"no sub, no username claim", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "c"), "sub", nil)), nil, authn.ReasonTokenMissingUsername},
		{"person named like a service account", withClaims, sign(atHeader, with(rfc9068Token(ti.URL), "preferred_username", "Service-Account-ci-runner")),
			nil, authn.ReasonTokenBadServiceAcct},
		{"groups not strings", plain, sign(atHeader, with(rfc9068Token(ti.URL), "groups", []any{1})), nil, authn.ReasonTokenMalformed},
		{"nested roles not a list", nested, sign(atHeader, with(rfc9068Token(ti.URL), "profile", map[string]any{"login": "alice"},
			"resource", map[string]any{"mlflow": map[string]any{"roles": map[string]any{}}})), nil, authn.ReasonTokenMalformed},
		{"wrong audience", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "c"), "aud", "other")), nil, authn.ReasonTokenWrongAudience},
		{"expired", plain, sign(jwtHeader, with(genericClientToken(ti.URL, "c"), "exp", jwtTestNow.Add(-time.Hour).Unix())), nil, authn.ReasonTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+tt.token))
			if tt.want == nil {
				requireJWTDeny(t, id, err, tt.reason, false, tt.token)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, ti.URL, id.Issuer)
			assert.Equal(t, "jwt", id.Method)
			id.Issuer, id.Method, id.Expiry = "", "", time.Time{}
			assert.Equal(t, tt.want, id)
		})
	}
}

// TestKeycloakUsernameFallback: the keycloak profile takes a list of
// username claims too (mlflow-oidc-auth's OIDC_USERNAME_FIELD is
// "email,preferred_username").
func TestKeycloakUsernameFallback(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	cfg := jwtTestConfig(ti.URL)
	cfg.UsernameClaim = authn.ClaimNames{"email", "preferred_username"}
	j := newTestJWT(t, newJWTClock(), cfg)
	id, err := j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, jwtUserClaims(ti.URL))))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Username, "no email: preferred_username")
	c := jwtUserClaims(ti.URL)
	c["email"] = "alice@example.com"
	id, err = j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+authntest.Token(t, k, c)))
	require.NoError(t, err)
	assert.Equal(t, "alice@example.com", id.Username)
}

func TestProfileConfig(t *testing.T) {
	decode := func(doc string) (authn.IssuerConfig, error) {
		var c authn.IssuerConfig
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	const base = "issuer: https://id.example.com\naudiences: [mlflow]\n"
	c, err := decode(base + "profile: generic\nusername_claim: [preferred_username, email]\nroles_claim: realm_access.roles\n")
	require.NoError(t, err)
	assert.Equal(t, authn.ClaimNames{"preferred_username", "email"}, c.UsernameClaim)
	assert.Equal(t, "realm_access.roles", c.RolesClaim)
	c, err = decode(base + "username_claim: email\n")
	require.NoError(t, err)
	assert.Equal(t, authn.ClaimNames{"email"}, c.UsernameClaim)

	_, err = decode(base + "profile: okta\n")
	require.ErrorContains(t, err, "profile:")
	_, err = decode(base + "username_claim: [email, '']\n")
	require.ErrorContains(t, err, "username_claim:")
	_, err = decode(base + "username_claim: {a: b}\n")
	require.ErrorContains(t, err, "claim name")
}
