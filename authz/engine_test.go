package authz_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// headerAuthenticator is a small real Authenticator: the "authorization"
// header names the outcome.
type headerAuthenticator struct{}

var errStoreDown = errors.New("store: connection refused")

func (headerAuthenticator) Authenticate(ctx context.Context, r *authz.Request) (*authz.Identity, error) {
	tok, ok := strings.CutPrefix(r.Header("authorization"), "Bearer ")
	switch {
	case !ok:
		return nil, nil
	case tok == "invalid":
		return nil, &authz.CredentialError{Reason: authz.ReasonInvalidToken, Message: "signature invalid"}
	case tok == "foreign":
		return nil, &authz.CredentialError{Reason: authz.ReasonForeignCredentials, Message: "not ours", Foreign: true}
	case tok == "down":
		return nil, errStoreDown
	case tok == "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &authz.Identity{Kind: authz.KindUser, Username: tok, Method: "jwt"}, nil
}

// skipAuthenticator never finds a credential, to prove the chain moves on.
type skipAuthenticator struct{ calls *atomic.Int32 }

func (s skipAuthenticator) Authenticate(context.Context, *authz.Request) (*authz.Identity, error) {
	s.calls.Add(1)
	return nil, nil
}

type userHeader struct{}

func (userHeader) Headers(_ *authz.Request, id *authz.Identity) ([]authz.Header, []string) {
	if id.Username == "" {
		return nil, []string{"x-authz-user"}
	}
	return []authz.Header{{Name: "x-authz-user", Value: id.Username}}, nil
}

// ownerPolicy lets alice through, asks anonymous callers to authenticate and
// denies everyone else; /slow waits for the deadline and then allows.
func ownerPolicy(ctx context.Context, r *authz.Request, id *authz.Identity) authz.Decision {
	switch {
	case r.Path == "/slow":
		<-ctx.Done()
		return authz.Allow(authz.ReasonAllowed)
	case !id.Authenticated():
		return authz.Deny(http.StatusUnauthorized, authz.ReasonUnauthenticated, "log in")
	case id.Username == "alice":
		return authz.Allow(authz.ReasonAllowed)
	}
	return authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, "no")
}

func newRequest(t *testing.T, host, target, auth string) *authz.Request {
	t.Helper()
	h := map[string]string{}
	if auth != "" {
		h["authorization"] = "Bearer " + auth
	}
	r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: host, Target: target, Headers: h})
	require.Nil(t, d)
	return r
}

func TestEngineCheck(t *testing.T) {
	var skips atomic.Int32
	e, err := authz.NewEngine(authz.Config{
		Apps: []*authz.App{
			{Name: "mlflow", Hosts: []string{"MLflow.example.com"}, Policy: authz.PolicyFunc(ownerPolicy), Upstream: userHeader{}},
			{Name: "phoenix", Hosts: []string{"phoenix.example.com"}, Policy: authz.PolicyFunc(ownerPolicy), Upstream: userHeader{}, PassForeignCredentials: true},
			{Name: "kiali", Hosts: []string{"kiali.example.com"}, Policy: authz.PolicyFunc(ownerPolicy), Upstream: userHeader{}, DryRun: true},
			{Name: "plain", Hosts: []string{"plain.example.com"}, Policy: authz.PolicyFunc(ownerPolicy)},
		},
		Authenticators: []authz.Authenticator{skipAuthenticator{&skips}, headerAuthenticator{}},
	})
	require.NoError(t, err)

	tests := []struct {
		name        string
		host        string
		path        string
		auth        string
		timeout     time.Duration
		wantAllowed bool
		wantStatus  int
		wantReason  authz.Reason
		wantApp     string
		wantUser    string
		wantDryRun  bool
		wantSet     []authz.Header
		wantRemove  []string
		wantRespHdr []authz.Header
	}{
		{
			name: "allow sets upstream headers", host: "mlflow.example.com", path: "/x", auth: "alice",
			wantAllowed: true, wantStatus: 200, wantReason: authz.ReasonAllowed, wantApp: "mlflow", wantUser: "alice",
			wantSet: []authz.Header{{Name: "x-authz-user", Value: "alice"}},
		},
		{
			name: "unknown host", host: "evil.example.com", path: "/x", auth: "alice",
			wantStatus: 403, wantReason: authz.ReasonUnknownHost,
		},
		{
			name: "policy deny", host: "mlflow.example.com", path: "/x", auth: "bob",
			wantStatus: 403, wantReason: authz.ReasonPermissionDenied, wantApp: "mlflow", wantUser: "bob",
		},
		{
			name: "no credential is anonymous", host: "mlflow.example.com", path: "/x",
			wantStatus: 401, wantReason: authz.ReasonUnauthenticated, wantApp: "mlflow",
		},
		{
			name: "invalid credential is 401 with www-authenticate, never anonymous", host: "mlflow.example.com", path: "/x", auth: "invalid",
			wantStatus: 401, wantReason: authz.ReasonInvalidToken, wantApp: "mlflow",
			wantRespHdr: []authz.Header{{Name: "www-authenticate", Value: `Bearer error="invalid_token"`}},
		},
		{
			name: "foreign credential denied by default", host: "mlflow.example.com", path: "/x", auth: "foreign",
			wantStatus: 401, wantReason: authz.ReasonForeignCredentials, wantApp: "mlflow",
			wantRespHdr: []authz.Header{{Name: "www-authenticate", Value: `Bearer error="invalid_token"`}},
		},
		{
			name: "foreign credential passed as anonymous", host: "phoenix.example.com", path: "/x", auth: "foreign",
			wantStatus: 401, wantReason: authz.ReasonUnauthenticated, wantApp: "phoenix",
		},
		{
			name: "infrastructure error is 503", host: "mlflow.example.com", path: "/x", auth: "down",
			wantStatus: 503, wantReason: authz.ReasonUnavailable, wantApp: "mlflow",
		},
		{
			name: "deadline during authentication is 503", host: "mlflow.example.com", path: "/x", auth: "slow", timeout: 10 * time.Millisecond,
			wantStatus: 503, wantReason: authz.ReasonDeadlineExceeded, wantApp: "mlflow",
		},
		{
			name: "deadline during policy turns its allow into 503", host: "mlflow.example.com", path: "/slow", auth: "alice", timeout: 10 * time.Millisecond,
			wantStatus: 503, wantReason: authz.ReasonDeadlineExceeded, wantApp: "mlflow", wantUser: "alice",
		},
		{
			name: "dry-run allows a deny, keeps its reason and sets headers", host: "kiali.example.com", path: "/x", auth: "bob",
			wantAllowed: true, wantDryRun: true, wantStatus: 403, wantReason: authz.ReasonPermissionDenied, wantApp: "kiali", wantUser: "bob",
			wantSet: []authz.Header{{Name: "x-authz-user", Value: "bob"}},
		},
		{
			name: "dry-run of an authentication deny strips identity headers", host: "kiali.example.com", path: "/x", auth: "invalid",
			wantAllowed: true, wantDryRun: true, wantStatus: 401, wantReason: authz.ReasonInvalidToken, wantApp: "kiali",
			wantRemove:  []string{"x-authz-user"},
			wantRespHdr: []authz.Header{{Name: "www-authenticate", Value: `Bearer error="invalid_token"`}},
		},
		{
			name: "dry-run allow is a plain allow", host: "kiali.example.com", path: "/x", auth: "alice",
			wantAllowed: true, wantStatus: 200, wantReason: authz.ReasonAllowed, wantApp: "kiali", wantUser: "alice",
			wantSet: []authz.Header{{Name: "x-authz-user", Value: "alice"}},
		},
		{
			name: "no upstream sets no headers", host: "plain.example.com", path: "/x", auth: "alice",
			wantAllowed: true, wantStatus: 200, wantReason: authz.ReasonAllowed, wantApp: "plain", wantUser: "alice",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			d := e.Check(ctx, newRequest(t, tt.host, tt.path, tt.auth))
			assert.Equal(t, tt.wantAllowed, d.Allowed)
			assert.Equal(t, tt.wantStatus, d.Status)
			assert.Equal(t, tt.wantReason, d.Reason)
			assert.Equal(t, tt.wantApp, d.App)
			assert.Equal(t, tt.wantDryRun, d.DryRun)
			if tt.wantUser != "" {
				require.NotNil(t, d.Identity)
				assert.Equal(t, tt.wantUser, d.Identity.Username)
			}
			assert.Equal(t, tt.wantSet, d.UpstreamHeaders)
			assert.Equal(t, tt.wantRemove, d.RemoveHeaders)
			assert.Equal(t, tt.wantRespHdr, d.ResponseHeaders)
		})
	}
	assert.Positive(t, skips.Load(), "an authenticator that finds nothing passes to the next")
}

func TestEngineConfigErrors(t *testing.T) {
	allow := authz.PolicyFunc(func(context.Context, *authz.Request, *authz.Identity) authz.Decision {
		return authz.Allow(authz.ReasonAllowed)
	})
	tests := []struct {
		name string
		apps []*authz.App
	}{
		{"app without policy", []*authz.App{{Name: "a", Hosts: []string{"a"}}}},
		{"host in two apps", []*authz.App{{Name: "a", Hosts: []string{"h"}, Policy: allow}, {Name: "b", Hosts: []string{"H:443"}, Policy: allow}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authz.NewEngine(authz.Config{Apps: tt.apps})
			require.Error(t, err)

			e, err := authz.NewEngine(authz.Config{Apps: []*authz.App{{Name: "good", Hosts: []string{"h"}, Policy: allow}}})
			require.NoError(t, err)
			require.Error(t, e.Swap(authz.Config{Apps: tt.apps}))
			d := e.Check(t.Context(), newRequest(t, "h", "/", ""))
			assert.True(t, d.Allowed, "a failed Swap keeps the old configuration")
			assert.Equal(t, "good", d.App)
		})
	}
}

func TestEngineTrace(t *testing.T) {
	e, err := authz.NewEngine(authz.Config{
		Apps:           []*authz.App{{Name: "mlflow", Hosts: []string{"h"}, Policy: authz.PolicyFunc(ownerPolicy)}},
		Authenticators: []authz.Authenticator{headerAuthenticator{}},
	})
	require.NoError(t, err)
	tr := &authz.Trace{}
	d := e.Check(authz.WithTrace(t.Context(), tr), newRequest(t, "h", "/x", "alice"))
	assert.True(t, d.Allowed)
	var stages []string
	for _, s := range tr.Steps {
		stages = append(stages, s.Stage)
	}
	assert.Equal(t, []string{"request", "identity", "decision"}, stages)

	tr = &authz.Trace{}
	d = e.Check(authz.WithTrace(t.Context(), tr), newRequest(t, "other", "/x", "alice"))
	assert.Equal(t, authz.ReasonUnknownHost, d.Reason)
	assert.Equal(t, http.StatusForbidden, d.Status)
	require.Len(t, tr.Steps, 1)
}

// TestEngineSwapIsAtomic runs checks while the configuration flips between
// two generations. Each generation's policy stamps its name into the
// decision; a check that mixed the app of one generation with the policy of
// the other would show up as a mismatch. Run with -race.
func TestEngineSwapIsAtomic(t *testing.T) {
	gen := func(name string) authz.Config {
		return authz.Config{Apps: []*authz.App{{
			Name:  name,
			Hosts: []string{"h"},
			Policy: authz.PolicyFunc(func(context.Context, *authz.Request, *authz.Identity) authz.Decision {
				d := authz.Allow(authz.ReasonAllowed)
				d.Message = name
				return d
			}),
		}}}
	}
	e, err := authz.NewEngine(gen("one"))
	require.NoError(t, err)
	r := newRequest(t, "h", "/", "")

	var mismatches, checks atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := e.Check(t.Context(), r)
				checks.Add(1)
				if !d.Allowed || d.Message != d.App {
					mismatches.Add(1)
				}
			}
		})
	}
	// Keep swapping until the checkers have really run alongside: on a busy
	// machine they may not be scheduled before a fixed number of swaps ends.
	for i := 0; i < 2000 || checks.Load() < 1000; i++ {
		name := "one"
		if i%2 == 1 {
			name = "two"
		}
		if err := e.Swap(gen(name)); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	assert.Zero(t, mismatches.Load(), "a check saw a half-swapped configuration")
	assert.Positive(t, checks.Load())
}
