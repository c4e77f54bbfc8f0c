package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCreatorGrantsEndToEnd: through gRPC Check on PostgreSQL and SQLite,
// with the server's own reconciler, the creator of a scorer and of a
// gateway secret, endpoint and model definition gets MANAGE once MLflow's
// tables show the create (MLflow's set_can_manage_*_permission), and a
// deleted scorer's rows go with it (delete_scorer_permissions_cascade), so
// a scorer registered again under the name inherits nothing.
func TestCreatorGrantsEndToEnd(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startOn(t, b)
			check := func(who, method, target, body string) result {
				return h.check(t, h.as(hostMLflow, who, method, target, body, nil))
			}
			eventually := func(what string, ok func() bool) {
				t.Helper()
				if _, done := waitFor(t, 10*time.Second, ok); !done {
					t.Fatalf("%s: not within 10s", what)
				}
			}
			now := func() int64 { return time.Now().UnixMilli() }
			denied := func(res result) bool {
				return !res.Allowed && res.Status == http.StatusForbidden && res.Reason == "permission_denied"
			}

			// Scorers: alice may EDIT experiment 1 (she MANAGEs it) but has
			// no row on the scorer, and scorers do not fall back to their
			// experiment (scorer_permissions only).
			scorerPerms := "/api/3.0/mlflow/scorers/permissions/get?experiment_id=1&scorer_name=relevance&username=alice"
			requireDecision(t, check("alice", "GET", scorerPerms, ""), false, http.StatusForbidden, "permission_denied")
			requireDecision(t, check("alice", "POST", "/api/3.0/mlflow/scorers/register",
				`{"experiment_id":"1","name":"relevance","serialized_scorer":"{}"}`), true, 0, "")
			storetestMust(t, h, `INSERT INTO scorers (experiment_id, scorer_name, scorer_id) VALUES (1, 'relevance', 'sc-1')`)
			storetestMust(t, h, fmt.Sprintf(`INSERT INTO scorer_versions (scorer_id, scorer_version, serialized_scorer, creation_time) VALUES ('sc-1', 1, '{}', %d)`, now()))
			eventually("alice manages her scorer", func() bool { return check("alice", "GET", scorerPerms, "").Allowed })

			// bob reads it through a row alice gave him; the delete takes it.
			storetestMust(t, h, `INSERT INTO scorer_permissions (experiment_id, scorer_name, user_id, permission) VALUES ('1', 'relevance', 2, 'READ')`)
			getScorer := "/api/3.0/mlflow/scorers/get?experiment_id=1&name=relevance"
			eventually("bob reads the scorer", func() bool { return check("bob", "GET", getScorer, "").Allowed })
			requireDecision(t, check("alice", "DELETE", "/api/3.0/mlflow/scorers/delete", `{"experiment_id":"1","name":"relevance"}`), true, 0, "")
			storetestMust(t, h, `DELETE FROM scorer_versions WHERE scorer_id = 'sc-1'`)
			storetestMust(t, h, `DELETE FROM scorers WHERE scorer_id = 'sc-1'`)
			eventually("the deleted scorer's rows are gone", func() bool {
				return denied(check("bob", "GET", getScorer, "")) && denied(check("alice", "GET", scorerPerms, ""))
			})

			// Gateway objects: mallory holds no grant at all.
			requireDecision(t, check("mallory", "POST", "/api/3.0/mlflow/gateway/secrets/create",
				`{"secret_name":"openai-key","secret_value":"x","provider":"openai"}`), true, 0, "")
			requireDecision(t, check("mallory", "POST", "/ajax-api/3.0/mlflow/gateway/model-definitions/create",
				`{"name":"gpt","provider":"openai","model_name":"gpt-4o"}`), true, 0, "")
			requireDecision(t, check("mallory", "POST", "/api/3.0/mlflow/gateway/endpoints/create", `{"name":"my-chat"}`), true, 0, "")
			storetestMust(t, h, fmt.Sprintf(`INSERT INTO secrets (secret_id, secret_name, created_at, last_updated_at) VALUES ('sec-new', 'openai-key', %d, %d)`, now(), now()))
			storetestMust(t, h, fmt.Sprintf(`INSERT INTO model_definitions (model_definition_id, name, created_at, last_updated_at) VALUES ('md-new', 'gpt', %d, %d)`, now(), now()))
			storetestMust(t, h, fmt.Sprintf(`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at) VALUES ('ep-new', 'my-chat', %d, %d)`, now(), now()))
			for _, target := range []string{
				"/api/3.0/mlflow/gateway/secrets/permissions/get?secret_id=sec-new&username=mallory",
				"/api/3.0/mlflow/gateway/model-definitions/permissions/get?model_definition_id=md-new&username=mallory",
				"/api/3.0/mlflow/gateway/endpoints/permissions/get?endpoint_id=ep-new&username=mallory",
			} {
				eventually("mallory manages "+target, func() bool { return check("mallory", "GET", target, "").Allowed })
				requireDecision(t, check("bob", "GET", target, ""), false, http.StatusForbidden, "permission_denied")
			}
			require.True(t, check("mallory", "POST", "/gateway/my-chat/mlflow/invocations", `{"messages":[]}`).Allowed,
				"MANAGE on the endpoint includes USE")
		})
	}
}
