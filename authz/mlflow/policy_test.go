package mlflow_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// newStore builds real MLflow SQLite databases (auth tables by the sqlite
// store's migration, tracking tables by storetest) and seeds them:
//
//	users: alice, root (is_admin), bob, eve
//	alice: exp 1 READ, exp 2 EDIT, exp 3 NO_PERMISSIONS, exp 4 NULL, exp 5 MANAGE,
//	       model m1 READ, endpoint ep-1 USE
//	group team: exp 3 MANAGE, exp 6 EDIT, exp 7 READ; group ops: exp 6 READ, exp 7 MANAGE
//	runs r1→1 r2→2 r3→3 r6→6; trace tr-1→1; logged model m-1→2; endpoint "chat"→ep-1;
//	dataset d1→{1,2}, d-none→{}
func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	dir := t.TempDir()
	tp, ap := filepath.Join(dir, "mlflow.db"), filepath.Join(dir, "basic_auth.db")
	require.NoError(t, sqlite.Migrate(t.Context(), ap))
	execAuth, execTracking := storetest.SQLiteExec(t, ap), storetest.SQLiteExec(t, tp)
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.SQLite, execTracking))
	storetest.Must(t, execAuth,
		`INSERT INTO users (id, username, password_hash, is_admin) VALUES
			(1, 'alice', 'x', false), (2, 'root', 'x', true), (3, 'bob', 'x', false), (4, 'eve', 'x', NULL)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES
			('1', 1, 'READ'), ('2', 1, 'EDIT'), ('3', 1, 'NO_PERMISSIONS'), ('4', 1, NULL), ('5', 1, 'MANAGE')`,
		`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) VALUES ('m1', 1, 'READ', 'default')`,
		`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('ep-1', 1, 'USE')`,
		`INSERT INTO groups (id, group_name) VALUES (1, 'team'), (2, '/ops')`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES
			('3', 1, 'MANAGE'), ('6', 1, 'EDIT'), ('7', 1, 'READ'), ('6', 2, 'READ'), ('7', 2, 'MANAGE')`,
	)
	storetest.Must(t, execTracking,
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) VALUES
			(0, 'Default', 'active', 'default'), (1, 'one', 'active', 'default'), (2, 'two', 'active', 'default'),
			(3, 'three', 'active', 'default'), (4, 'four', 'active', 'default'), (5, 'five', 'active', 'default'),
			(6, 'six', 'active', 'default'), (7, 'seven', 'active', 'default')`,
		`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage) VALUES
			('r1', 1, 'active'), ('r2', 2, 'active'), ('r3', 3, 'active'), ('r6', 6, 'active')`,
		`INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status) VALUES ('tr-1', 1, 0, 'OK')`,
		`INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms,
			last_updated_timestamp_ms, status, lifecycle_stage) VALUES ('m-1', 2, 'a', 'x', 0, 0, 1, 'active')`,
		`INSERT INTO evaluation_datasets (dataset_id, name) VALUES ('d1', 'ds'), ('d-none', 'empty')`,
		`INSERT INTO entity_associations (association_id, source_type, source_id, destination_type, destination_id) VALUES
			('a1', 'EVALUATION_DATASET', 'd1', 'EXPERIMENT', '1'), ('a2', 'EVALUATION_DATASET', 'd1', 'EXPERIMENT', '2')`,
		`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at, workspace) VALUES ('ep-1', 'chat', 0, 0, 'default')`,
	)
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: tp, AuthPath: ap})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

// OTLP exports: spans of a trace that does not exist, and spans whose
// mlflow.traceRequestId names tr-1 (experiment 1).
var (
	otlpNew     = string(authztest.OTLPExport(authztest.OTLPSpan{TraceID: []byte("0123456789abcdef")}))
	otlpIntoTr1 = string(authztest.OTLPExport(authztest.OTLPSpan{TraceID: []byte("0123456789abcdef")}, authztest.OTLPSpan{TraceID: []byte("0123456789abcdef"), RequestID: "tr-1"}))
)

func otlpInto(exp string) map[string]string {
	return map[string]string{"content-type": "application/x-protobuf", "x-mlflow-experiment-id": exp}
}

func req(t *testing.T, method, target, body string, headers map[string]string) *authz.Request {
	t.Helper()
	h := map[string]string{}
	for k, v := range headers {
		h[k] = v
	}
	if body != "" && h["content-type"] == "" {
		h["content-type"] = "application/json"
	}
	r, d := authz.NewRequest(authz.RequestInput{Method: method, Host: "mlflow", Target: target, Headers: h, Body: []byte(body)})
	require.Nil(t, d)
	return r
}

func user(name string, groups ...string) *authz.Identity {
	return &authz.Identity{Kind: authz.KindUser, Username: name, Groups: groups, Method: "jwt"}
}

type decideCase struct {
	name   string
	cfg    mlflow.Config
	id     *authz.Identity
	method string
	target string
	body   string
	header map[string]string
	// allowed, or status + reason (+ a message fragment) of the deny
	status  int
	reason  authz.Reason
	message string
}

func runDecide(t *testing.T, r *sqlite.Store, tests []decideCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := mlflow.New(r, tt.cfg, nil)
			require.NoError(t, err)
			d := p.Decide(t.Context(), req(t, tt.method, tt.target, tt.body, tt.header), tt.id)
			if tt.status == 0 {
				assert.True(t, d.Allowed, "denied: %d %s %s", d.Status, d.Reason, d.Message)
				assert.Equal(t, authz.ReasonAllowed, d.Reason)
				return
			}
			assert.False(t, d.Allowed)
			assert.Equal(t, tt.status, d.Status, d.Message)
			assert.Equal(t, tt.reason, d.Reason, d.Message)
			if tt.message != "" {
				assert.Contains(t, d.Message, tt.message)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	st := newStore(t)
	alice, bob, root := user("alice"), user("bob"), user("root")
	tokenAdmin := &authz.Identity{Kind: authz.KindUser, Username: "nobody", Admin: true}
	workload := &authz.Identity{Kind: authz.KindWorkload, Username: "alice", SPIFFEID: "spiffe://cluster.local/ns/ml/sa/trainer", Method: "spiffe"}
	readDefault := mlflow.Config{DefaultPermission: "READ"}
	runDecide(t, st, []decideCase{
		// The user's own row.
		{name: "READ row reads the run", id: alice, method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=r1"},
		{name: "READ row cannot update", id: alice, method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"r1"}`, status: 403, reason: authz.ReasonPermissionDenied, message: "EDIT on experiment 1 required"},
		{name: "EDIT row updates", id: alice, method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"r2"}`},
		{name: "EDIT row cannot delete", id: alice, method: "POST", target: "/api/2.0/mlflow/runs/delete", body: `{"run_id":"r2"}`, status: 403, reason: authz.ReasonPermissionDenied, message: "MANAGE on experiment 2 required"},
		{name: "MANAGE row deletes", id: alice, method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"5"}`},
		{name: "explicit NO_PERMISSIONS beats a group MANAGE", id: user("alice", "team"), method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=3", status: 403, reason: authz.ReasonPermissionDenied},
		{name: "explicit NO_PERMISSIONS beats default READ", cfg: readDefault, id: alice, method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=3", status: 403, reason: authz.ReasonPermissionDenied},
		{name: "NULL row is a deny", cfg: readDefault, id: alice, method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=4", status: 403, reason: authz.ReasonPermissionDenied},
		{name: "workload mapped to alice gets her grants", id: workload, method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=r1"},

		// Groups, then the default.
		{name: "group grant", id: user("bob", "team"), method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"r6"}`},
		{name: "group grant with leading slash", id: user("bob", "/team"), method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"r6"}`},
		{name: "highest of the groups", id: user("bob", "team", "ops"), method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"7"}`},
		{name: "group grant too low", id: user("bob", "ops"), method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"r6"}`, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "groups not in the token do not count", id: bob, method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=r6", status: 403, reason: authz.ReasonPermissionDenied},
		{name: "default NO_PERMISSIONS", id: bob, method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=1", status: 403, reason: authz.ReasonPermissionDenied, message: "READ on experiment 1 required"},
		{name: "default READ", cfg: readDefault, id: bob, method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=1"},
		{name: "default READ does not write", cfg: readDefault, id: bob, method: "POST", target: "/api/2.0/mlflow/experiments/update", body: `{"experiment_id":"1"}`, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "user without a users row still has groups", id: user("carol", "team"), method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=r6"},

		// Admins.
		{name: "users.is_admin", id: root, method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"3"}`},
		{name: "token admin", id: tokenAdmin, method: "DELETE", target: "/api/2.0/mlflow/webhooks/w1"},
		{name: "admin-only route for users.is_admin", id: root, method: "GET", target: "/api/2.0/mlflow/webhooks"},
		{name: "admin-only route for a user", id: alice, method: "GET", target: "/api/2.0/mlflow/webhooks", status: 403, reason: authz.ReasonAdminRequired},
		{name: "is_admin NULL is not admin", id: user("eve"), method: "GET", target: "/api/2.0/mlflow/webhooks", status: 403, reason: authz.ReasonAdminRequired},
		{name: "guardrails admin only", id: alice, method: "POST", target: "/api/3.0/mlflow/gateway/guardrails/create", body: `{}`, status: 403, reason: authz.ReasonAdminRequired},
		{name: "artifact outside the layout: user", id: alice, method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts/test-location/f", status: 403, reason: authz.ReasonAdminRequired},
		{name: "artifact outside the layout: admin", id: root, method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts/test-location/f"},
		{name: "unknown route even for admins", id: tokenAdmin, method: "GET", target: "/api/2.0/mlflow/nope", status: 404, reason: authz.ReasonUnknownRoute},
		{name: "bad parameters even for admins", id: tokenAdmin, method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a&run_id=b", status: 400, reason: mlflow.ReasonDuplicateParameter},

		// Anonymous callers.
		{name: "anonymous health", id: authz.Anonymous, method: "GET", target: "/health"},
		{name: "anonymous static", id: authz.Anonymous, method: "GET", target: "/static-files/app.js"},
		{name: "anonymous UI", id: authz.Anonymous, method: "GET", target: "/", status: 401, reason: authz.ReasonUnauthenticated},
		{name: "anonymous version", id: authz.Anonymous, method: "GET", target: "/version", status: 401, reason: authz.ReasonUnauthenticated},
		{name: "anonymous API", id: authz.Anonymous, method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=r1", status: 401, reason: authz.ReasonUnauthenticated},
		{name: "anonymous bad params still 401", id: authz.Anonymous, method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a&run_id=b", status: 401, reason: authz.ReasonUnauthenticated},
		{name: "anonymous unknown route", id: authz.Anonymous, method: "GET", target: "/nope", status: 404, reason: authz.ReasonUnknownRoute},
		{name: "authenticated UI", id: bob, method: "GET", target: "/"},
		{name: "search is authenticated", id: bob, method: "GET", target: "/api/2.0/mlflow/registered-models/search"},

		// Lookups.
		{name: "unknown run", id: alice, method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=nope", status: 404, reason: authz.ReasonResourceNotFound},
		{name: "unknown experiment", cfg: readDefault, id: bob, method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=99", status: 404, reason: authz.ReasonResourceNotFound},
		{name: "experiment by name", id: alice, method: "GET", target: "/api/2.0/mlflow/experiments/get-by-name?experiment_name=one"},
		{name: "trace by path", id: alice, method: "GET", target: "/api/3.0/mlflow/traces/tr-1"},
		{name: "trace tag write", id: alice, method: "PATCH", target: "/api/3.0/mlflow/traces/tr-1/tags", body: `{"key":"k","value":"v"}`, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "logged model", id: alice, method: "PATCH", target: "/api/2.0/mlflow/logged-models/m-1", body: `{}`},
		{name: "dataset on two experiments needs both", id: alice, method: "PATCH", target: "/api/3.0/mlflow/datasets/d1/tags", body: `{}`, status: 403, reason: authz.ReasonPermissionDenied, message: "on experiment 1"},
		{name: "dataset read", id: alice, method: "GET", target: "/api/3.0/mlflow/datasets/d1"},
		// The sqlite store reports a dataset linked to no experiment as not found;
		// an empty list from another backend is a 403 (checkNeeds). Never the default.
		{name: "dataset with no experiment", cfg: readDefault, id: alice, method: "GET", target: "/api/3.0/mlflow/datasets/d-none", status: 404, reason: authz.ReasonResourceNotFound},
		{name: "every named experiment", id: alice, method: "POST", target: "/api/2.0/mlflow/runs/search", body: `{"experiment_ids":["1","2","3"]}`, status: 403, reason: authz.ReasonPermissionDenied, message: "experiment 3"},
		{name: "registered model", id: alice, method: "GET", target: "/api/2.0/mlflow/registered-models/get?name=m1"},
		{name: "registered model write", id: alice, method: "POST", target: "/api/2.0/mlflow/registered-models/set-tag", body: `{"name":"m1"}`, status: 403, reason: authz.ReasonPermissionDenied, message: `EDIT on registered model "m1" required`},
		{name: "gateway by name", id: alice, method: "POST", target: "/gateway/chat/mlflow/invocations", body: `{}`},
		{name: "gateway by body model", id: alice, method: "POST", target: "/gateway/openai/v1/chat/completions", body: `{"model":"chat"}`},
		{name: "gateway needs USE", cfg: readDefault, id: bob, method: "POST", target: "/gateway/chat/mlflow/invocations", body: `{}`, status: 403, reason: authz.ReasonPermissionDenied, message: "USE on gateway_endpoint ep-1"},
		{name: "gateway unknown endpoint", id: alice, method: "POST", target: "/gateway/nope/mlflow/invocations", body: `{}`, status: 404, reason: authz.ReasonResourceNotFound},
		{name: "OTLP needs EDIT", id: alice, method: "POST", target: "/v1/traces", body: otlpNew, header: otlpInto("1"), status: 403, reason: authz.ReasonPermissionDenied},
		{name: "OTLP with EDIT", id: alice, method: "POST", target: "/v1/traces", body: otlpNew, header: otlpInto("2")},
		{name: "OTLP spans into an existing trace need EDIT where it is", id: alice, method: "POST", target: "/v1/traces", body: otlpIntoTr1, header: otlpInto("2"), status: 403, reason: authz.ReasonPermissionDenied, message: "EDIT on experiment 1"},
		{name: "proxied artifact read", id: alice, method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/x"},
		{name: "proxied artifact delete needs MANAGE", id: alice, method: "DELETE", target: "/api/2.0/mlflow-artifacts/artifacts/2/r2/artifacts/x", status: 403, reason: authz.ReasonPermissionDenied},
		{name: "graphql get run", id: alice, method: "POST", target: "/graphql", body: `{"query":"{ mlflowGetRun(input: {runId: \"r1\"}) { run { info { runId } } } }"}`},
		{name: "graphql alias to a denied run", id: alice, method: "POST", target: "/graphql", body: `{"query":"{ a: mlflowGetRun(input: {runId: \"r1\"}) { run { info { runId } } } b: mlflowGetRun(input: {runId: \"r3\"}) { run { info { runId } } } }"}`, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "graphql introspection", id: alice, method: "POST", target: "/graphql", body: `{"query":"{ __schema { types { name } } }"}`, status: 403, reason: authz.ReasonAdminRequired},

		// Self, create.
		{name: "self read", id: alice, method: "GET", target: "/api/2.0/mlflow/users/get?username=alice"},
		{name: "other user read", id: alice, method: "GET", target: "/api/2.0/mlflow/users/get?username=bob", status: 403, reason: authz.ReasonAdminRequired},
		{name: "admin reads other users", id: root, method: "GET", target: "/api/2.0/mlflow/users/get?username=bob"},
		{name: "self password", id: alice, method: "PATCH", target: "/api/2.0/mlflow/users/update-password", body: `{"username":"alice","password":"pw"}`},
		{name: "other password", id: alice, method: "PATCH", target: "/api/2.0/mlflow/users/update-password", body: `{"username":"root","password":"pw"}`, status: 403, reason: authz.ReasonAdminRequired},
		{name: "create for anyone", id: bob, method: "POST", target: "/api/2.0/mlflow/experiments/create", body: `{"name":"x"}`},
		{name: "create limited to groups", cfg: mlflow.Config{CreateGroups: []string{"/creators"}}, id: bob, method: "POST", target: "/api/2.0/mlflow/experiments/create", body: `{"name":"x"}`, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "create by group member", cfg: mlflow.Config{CreateGroups: []string{"/creators"}}, id: user("bob", "creators"), method: "POST", target: "/api/2.0/mlflow/registered-models/create", body: `{"name":"x"}`},
		{name: "create by admin", cfg: mlflow.Config{CreateGroups: []string{"creators"}}, id: root, method: "POST", target: "/api/2.0/mlflow/experiments/create", body: `{"name":"x"}`},

		// Identity integrity.
		{name: "warn allows another user_id", id: alice, method: "POST", target: "/api/2.0/mlflow/runs/create", body: `{"experiment_id":"2","user_id":"bob"}`},
		{name: "enforce denies another user_id", cfg: mlflow.Config{IdentityIntegrity: "enforce"}, id: alice, method: "POST", target: "/api/2.0/mlflow/runs/create", body: `{"experiment_id":"2","user_id":"bob"}`, status: 403, reason: authz.ReasonIdentityMismatch},
		{name: "enforce denies an mlflow.user tag", cfg: mlflow.Config{IdentityIntegrity: "enforce"}, id: alice, method: "POST", target: "/api/2.0/mlflow/runs/set-tag", body: `{"run_id":"r2","key":"mlflow.user","value":"bob"}`, status: 403, reason: authz.ReasonIdentityMismatch},
		{name: "enforce allows the caller's own name", cfg: mlflow.Config{IdentityIntegrity: "enforce"}, id: alice, method: "POST", target: "/api/2.0/mlflow/runs/create", body: `{"experiment_id":"2","user_id":"alice","tags":[{"key":"mlflow.user","value":"alice"}]}`},
		{name: "off ignores", cfg: mlflow.Config{IdentityIntegrity: "off"}, id: alice, method: "POST", target: "/api/2.0/mlflow/runs/log-batch", body: `{"run_id":"r2","tags":[{"key":"mlflow.user","value":"bob"}]}`},
		{name: "permission checked before integrity", cfg: mlflow.Config{IdentityIntegrity: "enforce"}, id: alice, method: "POST", target: "/api/2.0/mlflow/runs/create", body: `{"experiment_id":"1","user_id":"bob"}`, status: 403, reason: authz.ReasonPermissionDenied},
	})
}

func TestDecideAnonymousChallenge(t *testing.T) {
	p, err := mlflow.New(newStore(t), mlflow.Config{}, nil)
	require.NoError(t, err)
	d := p.Decide(t.Context(), req(t, "GET", "/api/2.0/mlflow/experiments/search", "", nil), authz.Anonymous)
	assert.Equal(t, http.StatusUnauthorized, d.Status)
	assert.Equal(t, authz.ReasonUnauthenticated, d.Reason)
	assert.Equal(t, []authz.Header{{Name: "www-authenticate", Value: "Bearer"}}, d.ResponseHeaders)
}

func TestDecideNilIdentity(t *testing.T) {
	p, err := mlflow.New(newStore(t), mlflow.Config{}, nil)
	require.NoError(t, err)
	d := p.Decide(t.Context(), req(t, "GET", "/health", "", nil), nil)
	assert.True(t, d.Allowed)
	d = p.Decide(t.Context(), req(t, "GET", "/", "", nil), nil)
	assert.Equal(t, http.StatusUnauthorized, d.Status)
	assert.Equal(t, authz.ReasonUnauthenticated, d.Reason)
}

func TestDecideStoreDown(t *testing.T) {
	st := newStore(t)
	p, err := mlflow.New(st, mlflow.Config{}, nil)
	require.NoError(t, err)
	st.Close()
	tests := []struct{ name, method, target, body string }{
		{"lookup", "GET", "/api/2.0/mlflow/runs/get?run_id=r1", ""},
		{"grants", "GET", "/api/2.0/mlflow/registered-models/get?name=m1", ""},
		{"admin check", "GET", "/api/2.0/mlflow/webhooks", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(t.Context(), req(t, tt.method, tt.target, tt.body, nil), user("alice"))
			assert.False(t, d.Allowed)
			assert.Equal(t, http.StatusServiceUnavailable, d.Status)
			assert.Equal(t, authz.ReasonUnavailable, d.Reason)
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		p2, err := mlflow.New(newStore(t), mlflow.Config{}, nil)
		require.NoError(t, err)
		d := p2.Decide(ctx, req(t, "GET", "/api/2.0/mlflow/runs/get?run_id=r1", "", nil), user("alice"))
		assert.False(t, d.Allowed)
		assert.Equal(t, http.StatusServiceUnavailable, d.Status)
		assert.Equal(t, authz.ReasonUnavailable, d.Reason)
	})
}

func TestDecideWarnLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	p, err := mlflow.New(newStore(t), mlflow.Config{}, log)
	require.NoError(t, err)
	d := p.Decide(t.Context(), req(t, "POST", "/api/2.0/mlflow/runs/create", `{"experiment_id":"2","user_id":"bob"}`, nil), user("alice"))
	assert.True(t, d.Allowed)
	assert.Contains(t, buf.String(), `"claimed_user":"bob"`)
	assert.Contains(t, buf.String(), `"caller":"alice"`)
}

func TestDecideExplainTrace(t *testing.T) {
	p, err := mlflow.New(newStore(t), mlflow.Config{}, nil)
	require.NoError(t, err)
	tr := &authz.Trace{}
	ctx := authz.WithTrace(t.Context(), tr)
	d := p.Decide(ctx, req(t, "GET", "/api/2.0/mlflow/runs/get?run_id=r6", "", nil), user("bob", "team"))
	require.True(t, d.Allowed)
	var all []string
	for _, s := range tr.Steps {
		all = append(all, s.Stage+": "+s.Detail)
	}
	text := strings.Join(all, "\n")
	assert.Contains(t, text, "route: GetRun")
	assert.Contains(t, text, `params: run_id="r6" from query`)
	assert.Contains(t, text, "resource: run \"r6\" → experiment [6]")
	assert.Contains(t, text, `permission: group "team" row on experiment 6: EDIT`)
}

func TestNewValidates(t *testing.T) {
	st := newStore(t)
	tests := []struct {
		name string
		cfg  mlflow.Config
		ok   bool
	}{
		{"defaults", mlflow.Config{}, true},
		{"all set", mlflow.Config{DefaultPermission: "USE", IdentityIntegrity: "enforce", CreateGroups: []string{"a"}, StaticPrefix: "/mlflow"}, true},
		{"bad permission", mlflow.Config{DefaultPermission: "read"}, false},
		{"bad integrity", mlflow.Config{IdentityIntegrity: "strict"}, false},
		{"slash prefix", mlflow.Config{StaticPrefix: "/"}, false},
		{"trailing slash prefix", mlflow.Config{StaticPrefix: "/mlflow/"}, false},
		{"relative prefix", mlflow.Config{StaticPrefix: "mlflow"}, false},
		{"dot prefix", mlflow.Config{StaticPrefix: "/a/../b"}, false},
		{"empty group", mlflow.Config{CreateGroups: []string{"/"}}, false},
		{"prefix mode api", mlflow.Config{StaticPrefix: "/mlflow", StaticPrefixMode: "api"}, true},
		{"prefix mode ajax", mlflow.Config{StaticPrefix: "/mlflow", StaticPrefixMode: "ajax"}, true},
		{"unknown prefix mode", mlflow.Config{StaticPrefix: "/mlflow", StaticPrefixMode: "3.11"}, false},
		{"upper-case prefix mode", mlflow.Config{StaticPrefixMode: "API"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mlflow.New(st, tt.cfg, nil)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
	_, err := mlflow.New(nil, mlflow.Config{}, nil)
	assert.Error(t, err)
}

// TestStaticPrefixEraNote: with a static prefix, the start says which
// MLflow era decides its routes when the mode is defaulted, and warns when
// "ajax" (before 3.12) meets an auth database that MLflow 3.12 or later
// wrote (the roles layout). Without a prefix nothing is said.
func TestStaticPrefixEraNote(t *testing.T) {
	legacy := newStore(t)
	dir := t.TempDir()
	ap := filepath.Join(dir, "basic_auth.db")
	require.NoError(t, sqlite.Migrate(t.Context(), ap))
	require.NoError(t, storetest.MigrateToRoles(t.Context(), store.SQLite, storetest.SQLiteExec(t, ap), storetest.SQLiteQuery(t, ap)))
	roles, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: filepath.Join(dir, "mlflow.db"), AuthPath: ap})
	require.NoError(t, err)
	t.Cleanup(roles.Close)
	require.Equal(t, store.LayoutRoles, roles.Layout().Layout)

	tests := []struct {
		name   string
		st     store.Reader
		cfg    mlflow.Config
		level  string
		phrase string
	}{
		{"defaulted mode, legacy layout", legacy, mlflow.Config{StaticPrefix: "/mlflow"}, "INFO", "for an older MLflow set static_prefix_mode: ajax"},
		{"defaulted mode, roles layout", roles, mlflow.Config{StaticPrefix: "/mlflow"}, "INFO", "for an older MLflow set static_prefix_mode: ajax"},
		{"ajax beside the roles layout", roles, mlflow.Config{StaticPrefix: "/mlflow", StaticPrefixMode: "ajax"}, "WARN", "if MLflow is 3.12 or later, set static_prefix_mode: api"},
		{"ajax beside the legacy layout", legacy, mlflow.Config{StaticPrefix: "/mlflow", StaticPrefixMode: "ajax"}, "", ""},
		{"api named", roles, mlflow.Config{StaticPrefix: "/mlflow", StaticPrefixMode: "api"}, "", ""},
		{"no prefix", roles, mlflow.Config{StaticPrefixMode: "ajax"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs storetest.LogBuffer
			_, err := mlflow.New(tt.st, tt.cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
			require.NoError(t, err)
			var said []map[string]any
			for _, l := range logs.Lines(t) {
				if strings.Contains(fmt.Sprint(l["msg"]), "static_prefix") {
					said = append(said, l)
				}
			}
			if tt.level == "" {
				assert.Empty(t, said)
				return
			}
			require.Len(t, said, 1)
			assert.Equal(t, tt.level, said[0]["level"])
			assert.Contains(t, said[0]["msg"], tt.phrase)
			assert.Equal(t, "/mlflow", said[0]["static_prefix"])
		})
	}
}
