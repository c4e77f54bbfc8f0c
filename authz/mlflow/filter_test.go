package mlflow_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// TestExtProcFilterSetting pins what the check leaves to the ext_proc
// filter, and only when apps[].mlflow.ext_proc_filter says it is deployed:
// the experiment ids of runs/search and logged-models/search and of
// GraphQL mlflowSearchRuns, and a ListScorers across experiments. Every
// other need stays.
func TestExtProcFilterSetting(t *testing.T) {
	st := newStore(t)
	filter := mlflow.Config{ExtProcFilter: true}
	const runsSearch = "/api/2.0/mlflow/runs/search"
	gqlRuns := `{"query":"mutation { mlflowSearchRuns(input: {experimentIds: [\"1\", \"3\"]}) { runs { info { runId } } } }"}`
	gqlMixed := `{"query":"mutation { mlflowSearchRuns(input: {experimentIds: [\"1\", \"3\"]}) { runs { info { runId } } } } query { mlflowGetRun(input: {runId: \"r3\"}) { run { info { runId } } } }"}`
	runDecide(t, st, []decideCase{
		{name: "runs/search over an unreadable id, no filter: all or nothing", id: user("alice"), method: "POST", target: runsSearch, body: `{"experiment_ids":["1","3"]}`, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "runs/search over an unreadable id, filter deployed", cfg: filter, id: user("alice"), method: "POST", target: runsSearch, body: `{"experiment_ids":["1","3"]}`},
		{name: "runs/search camel spelling, filter deployed", cfg: filter, id: user("alice"), method: "POST", target: runsSearch, body: `{"experimentIds":["3"]}`},
		{name: "runs/search still needs an authenticated caller", cfg: filter, id: authz.Anonymous, method: "POST", target: runsSearch, body: `{"experiment_ids":["1"]}`, status: 401, reason: authz.ReasonUnauthenticated},
		{name: "runs/search body still read strictly", cfg: filter, id: user("alice"), method: "POST", target: runsSearch, body: `{"experiment_ids":["1"],"experiment_ids":["3"]}`, status: 400, reason: mlflow.ReasonDuplicateParameter},
		{name: "logged-models/search, filter deployed", cfg: filter, id: user("alice"), method: "POST", target: "/api/2.0/mlflow/logged-models/search", body: `{"experiment_ids":["3"]}`},
		{name: "logged-models/search, no filter", id: user("alice"), method: "POST", target: "/api/2.0/mlflow/logged-models/search", body: `{"experiment_ids":["3"]}`, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "GraphQL mlflowSearchRuns, filter deployed", cfg: filter, id: user("alice"), method: "POST", target: "/graphql", body: gqlRuns},
		{name: "GraphQL mlflowSearchRuns, no filter", id: user("alice"), method: "POST", target: "/graphql", body: gqlRuns, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "GraphQL: the other fields keep their needs", cfg: filter, id: user("alice"), method: "POST", target: "/graphql", body: gqlMixed, status: 403, reason: authz.ReasonPermissionDenied},
		{name: "ListScorers across experiments, filter deployed", cfg: filter, id: user("alice"), method: "GET", target: "/api/3.0/mlflow/scorers/list"},
		{name: "ListScorers across experiments, no filter", id: user("alice"), method: "GET", target: "/api/3.0/mlflow/scorers/list", status: 400, reason: mlflow.ReasonMissingParameter, message: "ext_proc filter"},
		{name: "ListScorers of one experiment still needs READ", cfg: filter, id: user("alice"), method: "GET", target: "/api/3.0/mlflow/scorers/list?experiment_id=3", status: 403, reason: authz.ReasonPermissionDenied},
		{name: "other routes keep their rule", cfg: filter, id: user("alice"), method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=3", status: 403, reason: authz.ReasonPermissionDenied},
	})
}

// TestRows pins the row predicate to the check's own answer: every
// resource a point route allows is a readable row, and no other.
func TestRows(t *testing.T) {
	st := newStore(t)
	p, err := mlflow.New(st, mlflow.Config{}, nil)
	require.NoError(t, err)
	tests := []struct {
		name string
		id   *authz.Identity
		res  store.Resource
		want bool
	}{
		{"own READ row", user("alice"), store.Resource{Kind: store.Experiment, ID: "1"}, true},
		{"own NO_PERMISSIONS row outranks the group", user("alice", "team"), store.Resource{Kind: store.Experiment, ID: "3"}, false},
		{"NULL row denies", user("alice"), store.Resource{Kind: store.Experiment, ID: "4"}, false},
		{"group grant", user("bob", "team"), store.Resource{Kind: store.Experiment, ID: "7"}, true},
		{"group grant with Keycloak's leading slash", user("bob", "/ops"), store.Resource{Kind: store.Experiment, ID: "6"}, true},
		{"no row: default NO_PERMISSIONS", user("bob"), store.Resource{Kind: store.Experiment, ID: "1"}, false},
		{"registered model by name", user("alice"), store.Resource{Kind: store.RegisteredModel, ID: "m1"}, true},
		{"USE on an endpoint reads it", user("alice"), store.Resource{Kind: store.GatewayEndpoint, ID: "ep-1"}, true},
		{"admin by users.is_admin", user("root"), store.Resource{Kind: store.Experiment, ID: "1"}, true},
		{"admin by token", &authz.Identity{Kind: authz.KindUser, Username: "nobody", Admin: true}, store.Resource{Kind: store.Experiment, ID: "9"}, true},
		{"anonymous", authz.Anonymous, store.Resource{Kind: store.Experiment, ID: "1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := p.Rows(t.Context(), tt.id, &authz.Request{})
			require.NoError(t, err)
			got, err := rows.CanRead(t.Context(), tt.res)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			if tt.res.Kind == store.Experiment && tt.id.Authenticated() {
				d := p.Decide(t.Context(), req(t, "GET", "/api/2.0/mlflow/experiments/get?experiment_id="+tt.res.ID, "", nil), tt.id)
				if d.Status != http.StatusNotFound {
					assert.Equal(t, tt.want, d.Allowed, "the row and the point route disagree")
				}
			}
		})
	}
	rows, err := p.Rows(t.Context(), user("root"), &authz.Request{})
	require.NoError(t, err)
	assert.True(t, rows.All(), "an admin pays no lookups")
	assert.Equal(t, "SearchExperiments", p.Route("POST", "/ajax-api/2.0/mlflow/experiments/search").Name)
	assert.Nil(t, p.Route("DELETE", "/ajax-api/2.0/mlflow/experiments/search"))
}
