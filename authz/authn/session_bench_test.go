package authn

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// BenchmarkCheckCookieVsBearer compares a warm request authenticated by the
// session cookie with a warm one authenticated by a bearer JWT, through
// the whole Check server (proto → Request → chain → policy → proto)
// without transport: the budget is cookie ≤ 1.3 × bearer. Both callers are
// the same user; the chain is the production order (JWT, Sessions).
func BenchmarkCheckCookieVsBearer(b *testing.B) {
	f := newLoginFixture(b)
	f.clock.Advance(time.Since(f.clock.Now())) // devissuer signs with the wall clock
	token, err := f.iss.Token(devissuer.User{Username: "alice", Groups: []string{"/team-a"}, Roles: []string{"ml-user"}})
	if err != nil {
		b.Fatal(err)
	}
	st := f.session()
	st.Roles = []string{"default-roles-dev", "ml-user"}
	cookie := f.login.CookieName() + "=" + f.seal(b, testHost, st)
	// The same pair for a user in 50 full-path groups with a Keycloak-sized
	// refresh token: the largest cookie and token we expect.
	groups := keycloakGroups()
	bigToken, err := f.iss.Token(devissuer.User{Username: "alice", Groups: groups, Roles: []string{"ml-user"}})
	if err != nil {
		b.Fatal(err)
	}
	big := f.session()
	for _, g := range groups {
		big.Groups = append(big.Groups, authz.NormalizeGroup(g))
	}
	big.Refresh = keycloakRefreshToken()
	bigCookie := f.login.CookieName() + "=" + f.seal(b, testHost, big)
	policy := authz.PolicyFunc(func(_ context.Context, _ *authz.Request, id *authz.Identity) authz.Decision {
		if id.Username != "alice" {
			return authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, "no")
		}
		return authz.Allow(authz.ReasonAllowed)
	})
	e, err := authz.NewEngine(authz.Config{
		Apps:           []*authz.App{{Name: "mlflow", Hosts: []string{testHost}, Policy: policy, Login: f.login}},
		Authenticators: []authz.Authenticator{f.login.jwt, NewSessions(map[string]*Login{testHost: f.login})},
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := extauthz.NewServer(e, nil, nil)
	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{"bearer", map[string]string{"authorization": "Bearer " + token, "accept": "application/json"}},
		{"cookie", map[string]string{"cookie": "_ga=GA1.1.123; " + cookie + "; theme=dark", "accept": "application/json"}},
		{"bearer-50-groups", map[string]string{"authorization": "Bearer " + bigToken, "accept": "application/json"}},
		{"cookie-50-groups", map[string]string{"cookie": "_ga=GA1.1.123; " + bigCookie + "; theme=dark", "accept": "application/json"}},
	} {
		req := extauthz.Call{Method: "GET", Host: testHost, Target: "/ajax-api/2.0/mlflow/experiments/get?experiment_id=1", Headers: tc.headers}.CheckRequest()
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := srv.Check(b.Context(), req)
				if err != nil || resp.GetStatus().GetCode() != 0 {
					b.Fatalf("check: %v %v", err, resp.GetStatus())
				}
			}
		})
	}
}
