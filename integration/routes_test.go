package integration

import (
	"net/http"
	"testing"
)

// TestMLflowRoutes sends one request per MLflow resource family twice: as a
// caller whose grants allow it and as one whose grants do not. Every row goes
// through the whole pipeline: JWT verification against the issuer's JWKS,
// route classification, id extraction, ownership lookups in the tracking
// tables and grant reads in the auth tables.
func TestMLflowRoutes(t *testing.T) {
	h := start(t)
	tests := []struct {
		name           string
		method, target string
		body           string
		headers        map[string]string
		allow          string // caller who is allowed, or none
		deny           string // caller who is denied, or none
		// denyTarget and denyBody replace target and body for the denied
		// call when the same caller is denied on other ids.
		denyTarget, denyBody string
		status               int
		reason               string
	}{
		// Experiments.
		{name: "experiments/get", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=1",
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},
		{name: "experiments/get ajax", method: "GET", target: "/ajax-api/2.0/mlflow/experiments/get?experiment_id=1",
			allow: "alice", deny: "bob", denyTarget: "/ajax-api/2.0/mlflow/experiments/get?experiment_id=3", status: 403, reason: "permission_denied"},
		{name: "experiments/get-by-name", method: "GET", target: "/api/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-detection",
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},
		{name: "experiments/get-by-name unknown", method: "GET", target: "/api/2.0/mlflow/experiments/get-by-name?experiment_name=no-such",
			deny: "alice", status: 404, reason: "resource_not_found"},
		{name: "experiments/update needs EDIT", method: "POST", target: "/api/2.0/mlflow/experiments/update", body: `{"experiment_id":"1","new_name":"n"}`,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "experiments/delete needs MANAGE", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"1"}`,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "experiments/create any authenticated", method: "POST", target: "/api/2.0/mlflow/experiments/create", body: `{"name":"new"}`,
			allow: "mallory", deny: anonymous, status: 401, reason: "unauthenticated"},

		// Runs.
		{name: "runs/get", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=" + runA,
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},
		{name: "runs/get unknown run", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=ffffffffffffffffffffffffffffffff",
			deny: "alice", status: 404, reason: "resource_not_found"},
		{name: "runs/update", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"` + runA + `","status":"FINISHED"}`,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "runs/log-batch", method: "POST", target: "/api/2.0/mlflow/runs/log-batch", body: `{"run_id":"` + runA + `","metrics":[{"key":"loss","value":0.1,"timestamp":1,"step":0}]}`,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "runs/log-batch workload", method: "POST", target: "/api/2.0/mlflow/runs/log-batch", body: `{"run_id":"` + runB + `","metrics":[]}`,
			allow: trainerMTLS, deny: "bob", status: 403, reason: "permission_denied"},
		{name: "runs/delete", method: "POST", target: "/api/2.0/mlflow/runs/delete", body: `{"run_id":"` + runA + `"}`,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "runs/search checks every experiment", method: "POST", target: "/api/2.0/mlflow/runs/search", body: `{"experiment_ids":["1","2"]}`,
			allow: "bob", deny: "alice", status: 403, reason: "permission_denied"},
		{name: "metrics/get-history", method: "GET", target: "/api/2.0/mlflow/metrics/get-history?run_uuid=" + runA + "&metric_key=loss",
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},
		{name: "ajax metrics/get-history-bulk repeated run_id", method: "GET",
			target: "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=" + runA + "&run_id=" + runA2 + "&metric_key=loss",
			allow:  "bob", deny: "bob", denyTarget: "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=" + runA + "&run_id=" + runC + "&metric_key=loss",
			status: 403, reason: "permission_denied"},

		// Artifacts.
		{name: "artifacts/list", method: "GET", target: "/api/2.0/mlflow/artifacts/list?run_id=" + runA,
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},
		{name: "proxied artifact GET", method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts/1/" + runA + "/artifacts/model.pkl",
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},
		{name: "proxied artifact PUT", method: "PUT", target: "/api/2.0/mlflow-artifacts/artifacts/1/" + runA + "/artifacts/model.pkl", body: "\x80\x04pickle",
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "proxied artifact DELETE", method: "DELETE", target: "/api/2.0/mlflow-artifacts/artifacts/1/" + runA + "/artifacts/model.pkl",
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "get-artifact", method: "GET", target: "/get-artifact?run_uuid=" + runA + "&path=model.pkl",
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},

		// Logged models (id in the path).
		{name: "logged-models get", method: "GET", target: "/api/2.0/mlflow/logged-models/" + lm1,
			allow: "bob", deny: "bob", denyTarget: "/api/2.0/mlflow/logged-models/" + lm3, status: 403, reason: "permission_denied"},
		{name: "logged-models delete", method: "DELETE", target: "/api/2.0/mlflow/logged-models/" + lm1,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},

		// Model registry (by name).
		{name: "registered-models/get", method: "GET", target: "/api/2.0/mlflow/registered-models/get?name=fraud-model",
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "registered-models/update", method: "PATCH", target: "/api/2.0/mlflow/registered-models/update", body: `{"name":"fraud-model","description":"d"}`,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},
		{name: "registered-models/delete", method: "DELETE", target: "/api/2.0/mlflow/registered-models/delete", body: `{"name":"fraud-model"}`,
			allow: "alice", deny: "alice", denyBody: `{"name":"secret-model"}`, status: 403, reason: "permission_denied"},

		// Traces.
		{name: "traces v3 get", method: "GET", target: "/api/3.0/mlflow/traces/" + trace1,
			allow: "bob", deny: "bob", denyTarget: "/api/3.0/mlflow/traces/" + trace3, status: 403, reason: "permission_denied"},
		{name: "traces v3 search", method: "POST", target: "/api/3.0/mlflow/traces/search", body: `{"locations":[{"mlflow_experiment":{"experiment_id":"1"}}]}`,
			allow: "bob", deny: "mallory", status: 403, reason: "permission_denied"},
		{name: "OTLP /v1/traces by header", method: "POST", target: "/v1/traces", body: "\x0a\x00",
			headers: map[string]string{"x-mlflow-experiment-id": "1", "content-type": "application/x-protobuf"},
			allow:   "alice", deny: "bob", status: 403, reason: "permission_denied"},

		// Gateway.
		{name: "gateway invocations", method: "POST", target: "/gateway/chat-ep/mlflow/invocations", body: `{"messages":[]}`,
			allow: "alice", deny: "alice", denyTarget: "/gateway/secret-ep/mlflow/invocations", status: 403, reason: "permission_denied"},
		{name: "gateway chat completions", method: "POST", target: "/gateway/mlflow/v1/chat/completions", body: `{"model":"chat-ep","messages":[]}`,
			allow: "alice", deny: "bob", status: 403, reason: "permission_denied"},

		// Admin only.
		{name: "webhooks admin only", method: "GET", target: "/api/2.0/mlflow/webhooks",
			allow: "carol", deny: "alice", status: 403, reason: "admin_required"},
		{name: "users/create admin only", method: "POST", target: "/api/2.0/mlflow/users/create", body: `{"username":"x","password":"y"}`,
			allow: "dave", deny: "alice", status: 403, reason: "admin_required"},

		// GraphQL, with the id in variables.
		{name: "graphql mlflowGetExperiment variables", method: "POST", target: "/graphql",
			body:  `{"query":"query Q($id: String!) { mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }","variables":{"id":"1"}}`,
			allow: "bob", deny: "bob", denyBody: `{"query":"query Q($id: String!) { mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }","variables":{"id":"3"}}`,
			status: 403, reason: "permission_denied"},

		// UI and probes.
		{name: "UI root", method: "GET", target: "/", allow: "mallory", deny: anonymous, status: 401, reason: "unauthenticated"},
		{name: "health", method: "GET", target: "/health", allow: anonymous},
		{name: "static files", method: "GET", target: "/static-files/x.js", allow: anonymous},
		{name: "unknown route", method: "GET", target: "/api/2.0/mlflow/no-such-endpoint", deny: "alice", status: 404, reason: "unknown_route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.allow != none {
				res := h.check(t, h.as(hostMLflow, tt.allow, tt.method, tt.target, tt.body, tt.headers))
				requireDecision(t, res, true, 0, "")
			}
			if tt.deny != none {
				target, body := tt.target, tt.body
				if tt.denyTarget != "" {
					target = tt.denyTarget
				}
				if tt.denyBody != "" {
					body = tt.denyBody
				}
				res := h.check(t, h.as(hostMLflow, tt.deny, tt.method, target, body, tt.headers))
				requireDecision(t, res, false, tt.status, tt.reason)
				if tt.status == http.StatusUnauthorized {
					assertChallenge(t, res)
				}
			}
		})
	}
}
