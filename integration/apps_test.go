package integration

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTraceWriter checks the one token-less exception: the configured
// collector may POST /v1/traces on its mTLS certificate alone. Anything else
// it sends, and the same export from any other peer, falls through to the
// MLflow rules, where an anonymous caller gets a 401.
func TestTraceWriter(t *testing.T) {
	h := start(t)
	otlp := func(principal, method, target string) result {
		c := h.call(hostMLflow, "", method, target, "\x0a\x00")
		c.Headers["content-type"] = "application/x-protobuf"
		c.Headers["x-mlflow-experiment-id"] = "1"
		c.Principal = principal
		return h.check(t, c)
	}
	tests := []struct {
		name      string
		principal string
		method    string
		target    string
		allow     bool
		status    int
		reason    string
	}{
		{name: "collector exports traces without a token", principal: principalCollector, method: "POST", target: "/v1/traces", allow: true},
		{name: "collector on another path follows the rules", principal: principalCollector, method: "POST", target: "/api/2.0/mlflow/runs/log-batch",
			status: 401, reason: "unauthenticated"},
		{name: "collector reading traces follows the rules", principal: principalCollector, method: "GET", target: "/api/3.0/mlflow/traces/" + trace1,
			status: 401, reason: "unauthenticated"},
		{name: "another peer", principal: principalOther, method: "POST", target: "/v1/traces", status: 401, reason: "unauthenticated"},
		{name: "no peer", method: "POST", target: "/v1/traces", status: 401, reason: "unauthenticated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := otlp(tt.principal, tt.method, tt.target)
			requireDecision(t, res, tt.allow, tt.status, tt.reason)
			if !tt.allow {
				assertChallenge(t, res)
			}
		})
	}
}

// TestDryRun checks that an application in dry-run mode lets through what its
// policy denies, and that the decision log records the deny it would have
// made, so operators can roll a policy out safely.
func TestDryRun(t *testing.T) {
	h := start(t)
	target := "/api/2.0/mlflow/experiments/get?experiment_id=3"

	res := h.check(t, h.call(hostDryRun, "mallory", "GET", target, ""))
	requireDecision(t, res, true, 0, "")
	// The same request where enforcement is on is denied.
	res = h.check(t, h.call(hostMLflow, "mallory", "GET", target, ""))
	requireDecision(t, res, false, 403, "permission_denied")
	// An allowed request in dry-run is logged as a plain allow.
	res = h.check(t, h.call(hostDryRun, "carol", "GET", target, ""))
	requireDecision(t, res, true, 0, "")

	var dry []map[string]any
	var allows int
	sc := bufio.NewScanner(strings.NewReader(h.logs.String()))
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), sc.Text())
		if line["msg"] != "decision" || line["app"] != "mlflow-dry" {
			continue
		}
		switch line["decision"] {
		case "dry_run_deny":
			dry = append(dry, line)
		case "allow":
			allows++
		}
	}
	require.Len(t, dry, 1, "decision log:\n%s", h.logs.String())
	assert.Equal(t, "permission_denied", dry[0]["reason"])
	assert.EqualValues(t, 403, dry[0]["status"])
	assert.Equal(t, hostDryRun, dry[0]["host"])
	assert.Equal(t, "/api/2.0/mlflow/experiments/get", dry[0]["path"])
	assert.Equal(t, map[string]any{"kind": "user", "method": "jwt", "user": "mallory", "client_id": "mlflow-ui"}, dry[0]["identity"])
	assert.Equal(t, 1, allows, "carol's request is a plain allow")
	assert.NotContains(t, h.logs.String(), h.tokens["mallory"], "the decision log must never hold a token")
}

// TestReload swaps a new configuration into the running service: the new
// rules apply to the next check, and a change that needs a restart (the
// store) is refused with the old configuration left live.
func TestReload(t *testing.T) {
	h := start(t)
	target := "/api/2.0/mlflow/experiments/get?experiment_id=3"
	mallory := h.call(hostMLflow, "mallory", "GET", target, "")
	requireDecision(t, h.check(t, mallory), false, 403, "permission_denied")

	// The first default_permission is the mlflow app's.
	readByDefault := strings.Replace(testConfig, "default_permission: NO_PERMISSIONS", "default_permission: READ", 1)
	require.NoError(t, h.run.Reload(t.Context(), h.parse(t, readByDefault)))
	requireDecision(t, h.check(t, mallory), true, 0, "")

	otherStore := strings.Replace(testConfig, "statement_timeout: 1s", "statement_timeout: 3s", 1)
	err := h.run.Reload(t.Context(), h.parse(t, otherStore))
	require.ErrorContains(t, err, "store")
	requireDecision(t, h.check(t, mallory), true, 0, "")
}
