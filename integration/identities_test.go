package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
)

// TestIdentities checks who the caller is and where its permission comes
// from: user rows, group rows (Keycloak's "/team-a" against the database's
// "team-a"), explicit NO_PERMISSIONS rows, users.is_admin, admin groups in
// the token, the per-application default, SPIFFE-mapped workloads, and the
// credential failures that must be 401s.
func TestIdentities(t *testing.T) {
	h := start(t)

	expired, err := h.iss.Token(devissuer.User{Username: "bob", Groups: []string{"/team-a"}, TTL: -10 * time.Minute})
	require.NoError(t, err)
	good := h.tokens["bob"]
	tampered := good[:len(good)-6] + "AAAAAA"
	stranger, err := devissuer.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = stranger.Close() })
	foreign, err := stranger.Token(devissuer.User{Username: "bob"})
	require.NoError(t, err)

	runGet := func(run string) string { return "/api/2.0/mlflow/runs/get?run_id=" + run }
	tests := []struct {
		name      string
		host      string // default hostMLflow
		who       string
		bearer    string // replaces who's token when set
		principal string // mTLS peer
		method    string
		target    string
		body      string
		allow     bool
		status    int
		reason    string
	}{
		{name: "user grant", who: "bob", method: "GET", target: runGet(runA), allow: true},
		{name: "group grant, token group /team-a matches DB team-a", who: "gina", method: "GET", target: runGet(runB), allow: true},
		{name: "group grant does not reach other experiments", who: "gina", method: "GET", target: runGet(runA),
			status: 403, reason: "permission_denied"},
		{name: "group READ is not EDIT", who: "gina", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"` + runB + `"}`,
			status: 403, reason: "permission_denied"},
		{name: "user NO_PERMISSIONS row overrides the group grant", who: "erin", method: "GET", target: runGet(runB),
			status: 403, reason: "permission_denied"},
		{name: "users.is_admin", who: "carol", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"3"}`, allow: true},
		{name: "admin group in the token", who: "dave", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"3"}`, allow: true},
		{name: "default NO_PERMISSIONS", who: "mallory", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=3",
			status: 403, reason: "permission_denied"},
		{name: "default READ in another app", host: hostOpen, who: "mallory", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=3", allow: true},
		{name: "default READ is not EDIT", host: hostOpen, who: "mallory", method: "POST", target: "/api/2.0/mlflow/experiments/update",
			body: `{"experiment_id":"3","new_name":"x"}`, status: 403, reason: "permission_denied"},
		{name: "NO_PERMISSIONS row beats default READ", host: hostOpen, who: "erin", method: "GET", target: runGet(runB),
			status: 403, reason: "permission_denied"},
		{name: "SPIFFE workload acts as its user", principal: principalTrainer, method: "POST", target: "/api/2.0/mlflow/runs/log-metric",
			body: `{"run_id":"` + runB + `","key":"loss","value":0.1,"timestamp":1}`, allow: true},
		{name: "SPIFFE workload has only its user's grants", principal: principalTrainer, method: "POST", target: "/api/2.0/mlflow/runs/log-metric",
			body: `{"run_id":"` + runA + `","key":"loss","value":0.1,"timestamp":1}`, status: 403, reason: "permission_denied"},
		{name: "token outranks the mTLS peer", who: "bob", principal: principalTrainer, method: "POST", target: "/api/2.0/mlflow/runs/log-metric",
			body: `{"run_id":"` + runB + `","key":"loss","value":0.1,"timestamp":1}`, status: 403, reason: "permission_denied"},
		{name: "unmapped mTLS peer is anonymous", principal: principalOther, method: "GET", target: runGet(runA),
			status: 401, reason: "unauthenticated"},
		{name: "anonymous", method: "GET", target: runGet(runA), status: 401, reason: "unauthenticated"},
		{name: "tampered token", bearer: tampered, method: "GET", target: runGet(runA), status: 401, reason: "token_bad_signature"},
		{name: "expired token", bearer: expired, method: "GET", target: runGet(runA), status: 401, reason: "token_expired"},
		{name: "token from an unknown issuer", bearer: foreign, method: "GET", target: runGet(runA), status: 401, reason: "token_unknown_issuer"},
		{name: "unknown host", host: "elsewhere.test", who: "alice", method: "GET", target: runGet(runA), status: 403, reason: "unknown_host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == "" {
				host = hostMLflow
			}
			c := h.call(host, tt.who, tt.method, tt.target, tt.body)
			if tt.bearer != "" {
				c.Headers["authorization"] = "Bearer " + tt.bearer
			}
			c.Principal = tt.principal
			res := h.check(t, c)
			requireDecision(t, res, tt.allow, tt.status, tt.reason)
			if !tt.allow && tt.status == 401 {
				assertChallenge(t, res)
			}
		})
	}
}
