package authn

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/logsink"
	"github.com/mlflow-authz/mlflow-authz/authz/upstream"
)

// warmPathAllocs pins the allocations of one warm, allowed check through
// the Check server as production wires it: a cached bearer JWT, the
// identity headers, metrics, the decision log (JSON, buffered) and
// server.check_timeout. What is left: the check's deadline (1; its timer is
// armed only if something waits, which a cached check never does; with
// context.WithTimeout it was 4), the Request (1, its parsed query inside
// it), the caller's copy of the cached identity (1), the decision line's
// identity group (1; the line itself is formatted from attributes on the
// stack, logsink.Handler.HandleAttrs), the upstream headers and the joined
// groups (2), and the CheckResponse with all its messages (1). Lower it
// when you remove one; a change that raises it needs a reason in its commit.
const warmPathAllocs = 7

// TestWarmCheckAllocations is the allocation regression test of the warm
// path (testing.AllocsPerRun).
func TestWarmCheckAllocations(t *testing.T) {
	f := newLoginFixture(t)
	f.clock.Advance(time.Since(f.clock.Now())) // devissuer signs with the wall clock
	token, err := f.iss.Token(devissuer.User{Username: "alice", Groups: []string{"/team-a", "/team-b"}, Roles: []string{"ml-user"}})
	require.NoError(t, err)
	up, err := upstream.New(upstream.Config{})
	require.NoError(t, err)
	policy := authz.PolicyFunc(func(_ context.Context, _ *authz.Request, id *authz.Identity) authz.Decision {
		if id.Username != "alice" {
			return authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, "no")
		}
		return authz.Allow(authz.ReasonAllowed)
	})
	e, err := authz.NewEngine(authz.Config{
		Apps:           []*authz.App{{Name: "mlflow", Hosts: []string{testHost}, Policy: policy, Upstream: up}},
		Authenticators: []authz.Authenticator{f.login.jwt},
	})
	require.NoError(t, err)
	m, err := extauthz.NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	log, sink := logsink.New(io.Discard, logsink.Options{FlushInterval: time.Hour})
	t.Cleanup(func() { _ = sink.Close() })
	srv := extauthz.NewServer(e, log, m, extauthz.WithTimeout(2*time.Second)) // check_timeout's default
	req := extauthz.Call{Method: "GET", Host: testHost, Target: "/api/2.0/mlflow/experiments/get?experiment_id=1",
		Headers: map[string]string{"authorization": "Bearer " + token, "accept": "application/json", "x-request-id": "r-1"}}.CheckRequest()
	check := func() {
		resp, err := srv.Check(t.Context(), req)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("check: %v %v", err, resp.GetStatus())
		}
	}
	check() // warm the token cache and the metric series
	got := testing.AllocsPerRun(1000, check)
	t.Logf("%.1f allocations per warm check", got)
	require.LessOrEqual(t, got, float64(warmPathAllocs), "the warm check allocates more than it did")
}
