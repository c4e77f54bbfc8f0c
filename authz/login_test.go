package authz_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// fakeLogin is a Login with fixed answers: it owns /callback, redirects
// every 401 on "/" and adds a marker header to any other 401.
type fakeLogin struct{}

func (fakeLogin) Intercept(_ context.Context, r *authz.Request) (authz.Decision, bool) {
	if r.Path != "/callback" {
		return authz.Decision{}, false
	}
	d := authz.Deny(http.StatusFound, "login_complete", "welcome back")
	d.ResponseHeaders = []authz.Header{{Name: "location", Value: "/"}}
	return d, true
}

func (fakeLogin) Challenge(_ context.Context, r *authz.Request, d authz.Decision) (authz.Decision, bool) {
	if r.Path == "/" {
		out := authz.Deny(http.StatusFound, authz.ReasonLoginRequired, "log in first")
		out.ResponseHeaders = []authz.Header{{Name: "location", Value: "https://idp.example.com/auth"}}
		return out, true
	}
	d.ResponseHeaders = append(d.ResponseHeaders, authz.Header{Name: "x-challenged", Value: "api"})
	return d, false
}

// renewingAuthenticator authenticates "Bearer renewed-<user>" and asks for
// a header on the response, as a refreshed session cookie does; "Bearer
// cross-site" is a valid credential used where it may not be (403).
type renewingAuthenticator struct{}

func (renewingAuthenticator) Authenticate(_ context.Context, r *authz.Request) (*authz.Identity, error) {
	tok, _ := strings.CutPrefix(r.Header("authorization"), "Bearer ")
	if tok == "cross-site" {
		return nil, &authz.CredentialError{Reason: "csrf_origin_mismatch", Message: "cross-site", Status: http.StatusForbidden}
	}
	user, ok := strings.CutPrefix(tok, "renewed-")
	if !ok {
		return nil, nil
	}
	return &authz.Identity{Kind: authz.KindUser, Username: user, Method: "session",
		ResponseHeaders: []authz.Header{{Name: "set-cookie", Value: "session=new"}}}, nil
}

func TestEngineLogin(t *testing.T) {
	e, err := authz.NewEngine(authz.Config{
		Apps: []*authz.App{
			{Name: "mlflow", Hosts: []string{"mlflow.example.com"}, Policy: authz.PolicyFunc(ownerPolicy), Upstream: userHeader{}, Login: fakeLogin{}},
			{Name: "kiali", Hosts: []string{"kiali.example.com"}, Policy: authz.PolicyFunc(ownerPolicy), Upstream: userHeader{}, Login: fakeLogin{}, DryRun: true},
			{Name: "phoenix", Hosts: []string{"phoenix.example.com"}, Policy: authz.PolicyFunc(ownerPolicy), Upstream: userHeader{}},
		},
		Authenticators: []authz.Authenticator{renewingAuthenticator{}, headerAuthenticator{}},
	})
	require.NoError(t, err)

	tests := []struct {
		name        string
		host, path  string
		auth        string
		wantAllowed bool
		wantStatus  int
		wantReason  authz.Reason
		wantRespHdr []authz.Header
	}{
		{
			name: "login endpoint answered before authentication", host: "mlflow.example.com", path: "/callback", auth: "invalid",
			wantStatus: 302, wantReason: "login_complete", wantRespHdr: []authz.Header{{Name: "location", Value: "/"}},
		},
		{
			name: "a 401 on a navigation becomes the login redirect", host: "mlflow.example.com", path: "/",
			wantStatus: 302, wantReason: authz.ReasonLoginRequired,
			wantRespHdr: []authz.Header{{Name: "location", Value: "https://idp.example.com/auth"}},
		},
		{
			name: "a 401 from an authenticator goes through the login too", host: "mlflow.example.com", path: "/api", auth: "invalid",
			wantStatus: 401, wantReason: authz.ReasonInvalidToken,
			wantRespHdr: []authz.Header{{Name: "www-authenticate", Value: `Bearer error="invalid_token"`}, {Name: "x-challenged", Value: "api"}},
		},
		{
			name: "dry run still redirects to the login", host: "kiali.example.com", path: "/",
			wantStatus: 302, wantReason: authz.ReasonLoginRequired,
			wantRespHdr: []authz.Header{{Name: "location", Value: "https://idp.example.com/auth"}},
		},
		{
			name: "dry run allows a 401 the login left alone", host: "kiali.example.com", path: "/api",
			wantAllowed: true, wantStatus: 401, wantReason: authz.ReasonUnauthenticated,
			wantRespHdr: []authz.Header{{Name: "x-challenged", Value: "api"}},
		},
		{
			name: "no login, no redirect", host: "phoenix.example.com", path: "/",
			wantStatus: 401, wantReason: authz.ReasonUnauthenticated,
		},
		{
			name: "identity response headers go with an allow", host: "mlflow.example.com", path: "/x", auth: "renewed-alice",
			wantAllowed: true, wantStatus: 200, wantReason: authz.ReasonAllowed,
			wantRespHdr: []authz.Header{{Name: "set-cookie", Value: "session=new"}},
		},
		{
			name: "identity response headers go with a deny", host: "mlflow.example.com", path: "/x", auth: "renewed-bob",
			wantStatus: 403, wantReason: authz.ReasonPermissionDenied,
			wantRespHdr: []authz.Header{{Name: "set-cookie", Value: "session=new"}},
		},
		{
			name: "a credential error may carry its own status", host: "phoenix.example.com", path: "/x", auth: "cross-site",
			wantStatus: 403, wantReason: "csrf_origin_mismatch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Check(t.Context(), newRequest(t, tt.host, tt.path, tt.auth))
			assert.Equal(t, tt.wantAllowed, d.Allowed)
			assert.Equal(t, tt.wantStatus, d.Status)
			assert.Equal(t, tt.wantReason, d.Reason)
			assert.Equal(t, tt.wantRespHdr, d.ResponseHeaders)
			assert.NotEmpty(t, d.App)
		})
	}
}
