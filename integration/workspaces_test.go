package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// workspaceSeed adds workspace team-b to the harness's seed: experiment 10
// (with a run) and experiment 11, named like default's experiment 1, and
// a registered model fraud-model of its own. bob holds EDIT on the whole
// workspace (workspace_permissions, which MLflow's e5f6a7b8c9d0 turns into
// (workspace, *, USE) plus EDIT on every resource type), mallory READ on
// team-b's fraud-model, frank MANAGE on the workspace.
var workspaceSeed = []string{
	`INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) VALUES
		(10, 'team-b-exp', 'active', 'team-b'), (11, 'fraud-detection', 'active', 'team-b')`,
	`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status, user_id) VALUES
		('` + runWS + `', 10, 'active', 'RUNNING', 'bob')`,
	`INSERT INTO registered_models (name, workspace) VALUES ('fraud-model', 'team-b')`,
	`INSERT INTO workspace_permissions (workspace, user_id, permission) VALUES ('team-b', 2, 'EDIT'), ('team-b', 7, 'MANAGE')`,
	`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) VALUES ('fraud-model', 6, 'READ', 'team-b')`,
}

const runWS = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0b1"

// withWorkspaces turns workspaces on for the first MLflow application.
func withWorkspaces(doc string) string {
	return strings.Replace(doc, "      default_permission: NO_PERMISSIONS\n", "      default_permission: NO_PERMISSIONS\n      workspaces: true\n", 1)
}

// inWorkspace is c with X-MLFLOW-WORKSPACE set.
func inWorkspace(c extauthz.Call, ws string) extauthz.Call {
	c.Headers[mlflow.WorkspaceHeader] = ws
	return c
}

// TestWorkspaces decides requests in the workspace they name, on both
// backends and in both layouts of the auth database.
func TestWorkspaces(t *testing.T) {
	layouts := []struct {
		name   string
		before func(t *testing.T, h *harness, d store.Dialect, query storetest.QueryFunc, migrate func() error)
		// createNeeds is what creating in a workspace needs there.
		bobCreates bool
	}{
		{name: "legacy", before: func(t *testing.T, h *harness, d store.Dialect, query storetest.QueryFunc, migrate func() error) {
			for _, s := range workspaceSeed {
				require.NoError(t, h.exec(t.Context(), s), s)
			}
		}},
		{name: "roles", before: func(t *testing.T, h *harness, d store.Dialect, query storetest.QueryFunc, migrate func() error) {
			upgradeToRoles(workspaceSeed...)(t, h, d, query, migrate)
			// A role named like bob's token group, in a workspace where
			// nobody is assigned anything.
			require.NoError(t, h.exec(t.Context(), `INSERT INTO roles (name, workspace) VALUES ('team-a', 'team-c')`))
		}, bobCreates: true},
	}
	for _, b := range backends {
		for _, l := range layouts {
			t.Run(string(b)+"/"+l.name, func(t *testing.T) {
				h := startWith(t, b, startOptions{config: withWorkspaces, beforeStart: l.before})
				expGet := func(user, id string) extauthz.Call {
					return h.call(hostMLflow, user, "GET", "/api/2.0/mlflow/experiments/get?experiment_id="+id, "")
				}
				tests := []struct {
					name   string
					call   extauthz.Call
					allow  bool
					status int
					reason string
				}{
					{"own workspace, workspace grant", inWorkspace(expGet("bob", "10"), "team-b"), true, 200, ""},
					{"resource of another workspace", expGet("bob", "10"), false, http.StatusForbidden, string(mlflow.ReasonWorkspaceMismatch)},
					{"grant in default, request names team-b", inWorkspace(expGet("alice", "1"), "team-b"), false, http.StatusForbidden, string(mlflow.ReasonWorkspaceMismatch)},
					{"default workspace as before", expGet("alice", "1"), true, 200, ""},
					{"explicit default", inWorkspace(expGet("alice", "1"), " default "), true, 200, ""},
					{"run of another workspace", h.call(hostMLflow, "bob", "GET", "/api/2.0/mlflow/runs/get?run_id="+runWS, ""), false, http.StatusForbidden, string(mlflow.ReasonWorkspaceMismatch)},
					{"run in its workspace", inWorkspace(h.call(hostMLflow, "bob", "GET", "/api/2.0/mlflow/runs/get?run_id="+runWS, ""), "team-b"), true, 200, ""},
					{"no grant in the workspace", inWorkspace(expGet("mallory", "10"), "team-b"), false, http.StatusForbidden, string(authz.ReasonPermissionDenied)},
					{"invalid workspace name", inWorkspace(expGet("bob", "10"), "Team_B"), false, http.StatusBadRequest, string(mlflow.ReasonInvalidWorkspace)},
					{"reserved workspace name", inWorkspace(expGet("bob", "10"), "api"), false, http.StatusBadRequest, string(mlflow.ReasonInvalidWorkspace)},
					// Names resolve in the workspace named: team-b's
					// fraud-detection is experiment 11, not alice's 1.
					{"name in the workspace named", inWorkspace(h.call(hostMLflow, "bob", "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-detection", ""), "team-b"), true, 200, ""},
					{"same name, other workspace's experiment", inWorkspace(h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-detection", ""), "team-b"), false, http.StatusForbidden, string(authz.ReasonPermissionDenied)},
					// Registered models are per workspace: alice's MANAGE is
					// on default's fraud-model, mallory's READ on team-b's.
					{"model grant of the workspace", inWorkspace(h.call(hostMLflow, "mallory", "GET", "/api/2.0/mlflow/registered-models/get?name=fraud-model", ""), "team-b"), true, 200, ""},
					{"model grant of another workspace", inWorkspace(h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/registered-models/get?name=fraud-model", ""), "team-b"), false, http.StatusForbidden, string(authz.ReasonPermissionDenied)},
					{"model grant of default", h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/registered-models/get?name=fraud-model", ""), true, 200, ""},
					{"team-b grant, default model", h.call(hostMLflow, "mallory", "GET", "/api/2.0/mlflow/registered-models/get?name=fraud-model", ""), false, http.StatusForbidden, string(authz.ReasonPermissionDenied)},
					// Creating needs a workspace-wide grant there.
					{"create without a workspace grant", inWorkspace(h.call(hostMLflow, "mallory", "POST", "/api/2.0/mlflow/experiments/create", `{"name":"x"}`), "team-b"), false, http.StatusForbidden, string(authz.ReasonPermissionDenied)},
					{"create as workspace MANAGE", inWorkspace(h.call(hostMLflow, "frank", "POST", "/api/2.0/mlflow/experiments/create", `{"name":"x"}`), "team-b"), true, 200, ""},
					{"admin in any workspace", inWorkspace(expGet("carol", "10"), "team-b"), true, 200, ""},
					// MLflow lets an admin through and then finds no such
					// experiment in team-b: a 404 there, a deny here.
					{"admin, resource of another workspace", inWorkspace(expGet("carol", "1"), "team-b"), false, http.StatusForbidden, string(mlflow.ReasonWorkspaceMismatch)},
				}
				bobCreate := struct {
					name   string
					call   extauthz.Call
					allow  bool
					status int
					reason string
				}{"create as workspace member (USE in roles, MANAGE in legacy)", inWorkspace(h.call(hostMLflow, "bob", "POST", "/api/2.0/mlflow/experiments/create", `{"name":"y"}`), "team-b"), l.bobCreates, http.StatusForbidden, string(authz.ReasonPermissionDenied)}
				if l.bobCreates {
					bobCreate.status = 200
				}
				tests = append(tests, bobCreate)
				for _, tc := range tests {
					t.Run(tc.name, func(t *testing.T) {
						res := h.check(t, tc.call)
						requireDecision(t, res, tc.allow, tc.status, tc.reason)
						if tc.allow {
							assert.NotContains(t, res.Removed, mlflow.WorkspaceHeader, "with workspaces on the header reaches MLflow")
						}
					})
				}

				// Reading a workspace's record needs to see it
				// (validate_can_view_workspace): a READ workspace row in the
				// legacy layout, any role there in the roles layout.
				views := []struct {
					user, ws      string
					legacy, roles bool
				}{
					{"bob", "team-b", true, true},
					{"frank", "team-b", true, true},
					// The roles migration turns her grant on team-b's model
					// into a role assignment in team-b.
					{"mallory", "team-b", false, true},
					{"alice", "team-b", false, false},
					// bob's token group team-a names team-c's role team-a.
					{"bob", "team-c", false, true},
					{"carol", "team-c", true, true},
					{"dave", "team-c", true, true},
				}
				for _, v := range views {
					t.Run("view "+v.ws+" as "+v.user, func(t *testing.T) {
						allow := v.legacy
						if l.name == "roles" {
							allow = v.roles
						}
						res := h.check(t, h.call(hostMLflow, v.user, "GET", "/api/3.0/mlflow/workspaces/"+v.ws, ""))
						if allow {
							requireDecision(t, res, true, 200, "")
						} else {
							requireDecision(t, res, false, http.StatusForbidden, string(authz.ReasonPermissionDenied))
							assert.Contains(t, res.Body, "is not visible to the caller")
						}
					})
				}

				// The same request on the application with workspaces off is
				// decided in default and the header is removed.
				res := h.check(t, inWorkspace(h.call(hostOpen, "alice", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", ""), "team-b"))
				requireDecision(t, res, true, 200, "")
				assert.Contains(t, res.Removed, mlflow.WorkspaceHeader)
			})
		}
	}
}
