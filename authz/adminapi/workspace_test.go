package adminapi_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// startWorkspaces serves the admin API of a server whose MLflow application
// has workspaces on, over real gRPC with real JWTs, on SQLite in the legacy
// layout or, migrated as MLflow's e5f6a7b8c9d0 migrates it, the roles one.
// wanda administers team-b (workspace_permissions MANAGE), bob reads it,
// carol is an admin; experiment 10 lives in team-b, 11 in team-c, 1 in
// default. In the roles layout the role team-b-admins of team-b holds
// (workspace, *, MANAGE), and gwen's token group names it.
func startWorkspaces(t *testing.T, roles bool) *env {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "mlflow.db")
	require.NoError(t, sqlite.Migrate(ctx, path))
	exec := storetest.SQLiteExec(t, path)
	require.NoError(t, storetest.CreateTrackingSchema(ctx, store.SQLite, exec))
	storetest.Must(t, exec,
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) VALUES
			(1, 'fraud-detection', 'active', 'default'), (10, 'fraud-detection', 'active', 'team-b'), (11, 'other', 'active', 'team-c')`,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'carol', 1), (2, 'bob', 0), (3, 'wanda', 0)`,
		`INSERT INTO workspace_permissions (workspace, user_id, permission) VALUES ('team-b', 3, 'MANAGE'), ('team-b', 2, 'READ')`)
	if roles {
		require.NoError(t, storetest.MigrateToRoles(ctx, store.SQLite, exec, storetest.SQLiteQuery(t, path)))
		require.NoError(t, sqlite.Migrate(ctx, path))
		storetest.Must(t, exec,
			`INSERT INTO roles (name, workspace) VALUES ('team-b-admins', 'team-b')`,
			`INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission)
				SELECT id, 'workspace', '*', 'MANAGE' FROM roles WHERE name = 'team-b-admins'`)
	}
	st, err := sqlite.Open(ctx, sqlite.Config{TrackingPath: path})
	require.NoError(t, err)
	t.Cleanup(st.Close)

	rs, err := mlflow.NewResolution("", nil, store.NoPermissions, nil)
	require.NoError(t, err)
	rs, err = rs.WithWorkspaces(true, false).WithGroupRoles(mlflow.GroupRoles{})
	require.NoError(t, err)
	return serveAdmin(t, st, mlflow.Config{Workspaces: true}, rs)
}

// wsCase is one admin call as one caller, and the status it must get.
type wsCase struct {
	name    string
	as      devissuer.User
	call    func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error
	code    codes.Code
	message string
}

func onExperiment(id string) *v1.Target {
	return &v1.Target{Target: &v1.Target_ExperimentId{ExperimentId: id}}
}

func onModel(name string) *v1.Target {
	return &v1.Target{Target: &v1.Target_RegisteredModel{RegisteredModel: name}}
}

var wholeWorkspace = &v1.Target{Target: &v1.Target_WholeWorkspace{WholeWorkspace: true}}

func toUser(u string) *v1.Grantee { return &v1.Grantee{Grantee: &v1.Grantee_User{User: u}} }

// TestWorkspaceAdmins: a workspace's admin manages grants and roles in its
// workspace, and nowhere else; nothing global.
func TestWorkspaceAdmins(t *testing.T) {
	for _, layout := range []string{"legacy", "roles"} {
		t.Run(layout, func(t *testing.T) {
			roles := layout == "roles"
			e := startWorkspaces(t, roles)
			wanda, bob, carol := devissuer.User{Username: "wanda"}, devissuer.User{Username: "bob"}, devissuer.User{Username: "carol"}
			grant := func(target *v1.Target, ws string) *v1.GrantRequest {
				return &v1.GrantRequest{Target: target, Grantee: toUser("alice"), Permission: "READ", Workspace: ws}
			}
			notAdmin := "is not an admin"
			tests := []wsCase{
				{"grant on an experiment of its workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					resp, err := cl.Grant(e.as(t, as), grant(onExperiment("10"), "team-b"))
					if err == nil {
						assert.Equal(t, "team-b", resp.Change.Workspace)
						assert.True(t, resp.Change.Changed)
					}
					return err
				}, codes.OK, ""},
				{"grant on a registered model of its workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onModel("churn"), "team-b"))
					return err
				}, codes.OK, ""},
				{"experiment of another workspace, named as its own", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onExperiment("1"), "team-b"))
					return err
				}, codes.FailedPrecondition, `experiment 1 lives in workspace "default", not "team-b"`},
				{"experiment of another workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onExperiment("11"), "team-c"))
					return err
				}, codes.PermissionDenied, notAdmin},
				{"registered model of another workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onModel("churn"), "team-c"))
					return err
				}, codes.PermissionDenied, notAdmin},
				{"the default workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Revoke(e.as(t, as), &v1.RevokeRequest{Target: onExperiment("1"), Grantee: toUser("bob")})
					return err
				}, codes.PermissionDenied, notAdmin},
				{"roles of another workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.CreateRole(e.as(t, as), &v1.CreateRoleRequest{Name: "reviewers", Workspace: "team-c"})
					return err
				}, codes.PermissionDenied, notAdmin},
				{"users are global", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.SetAdmin(e.as(t, as), &v1.SetAdminRequest{Username: "wanda", Admin: true})
					return err
				}, codes.PermissionDenied, notAdmin},
				{"explain is for admins", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Explain(e.as(t, as), &v1.ExplainRequest{Method: "GET", Target: "/health", Host: "mlflow.localhost", User: "alice"})
					return err
				}, codes.PermissionDenied, notAdmin},
				{"a reader of the workspace is no admin", bob, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onExperiment("10"), "team-b"))
					return err
				}, codes.PermissionDenied, "or for this call a workspace-wide MANAGE in the workspace it names"},
				{"an invalid workspace name", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onExperiment("10"), "Team_B"))
					return err
				}, codes.InvalidArgument, "workspace: workspace name"},
				{"a workspace-wide grant elsewhere", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), &v1.GrantRequest{Target: wholeWorkspace, Grantee: toUser("zoe"), Permission: "MANAGE", Workspace: "team-c"})
					return err
				}, codes.PermissionDenied, notAdmin},
				{"an admin grants in any workspace", carol, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onExperiment("11"), "team-c"))
					return err
				}, codes.OK, ""},
				{"an admin too names the experiment's own workspace", carol, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.Grant(e.as(t, as), grant(onExperiment("11"), "team-b"))
					return err
				}, codes.FailedPrecondition, `experiment 11 lives in workspace "team-c", not "team-b"`},
			}
			if roles {
				tests = append(tests,
					wsCase{"the member tier of its workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
						_, err := cl.Grant(e.as(t, as), &v1.GrantRequest{Target: wholeWorkspace, Grantee: toUser("zoe"), Permission: "USE", Workspace: "team-b"})
						return err
					}, codes.OK, ""},
					wsCase{"READ is no workspace-wide grant of the roles layout", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
						_, err := cl.Grant(e.as(t, as), &v1.GrantRequest{Target: wholeWorkspace, Grantee: toUser("zoe"), Permission: "READ", Workspace: "team-b"})
						return err
					}, codes.InvalidArgument, "is USE (a member, who may create) or MANAGE"},
					wsCase{"roles of its workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
						ctx := e.as(t, as)
						if _, err := cl.CreateRole(ctx, &v1.CreateRoleRequest{Name: "reviewers", Workspace: "team-b"}); err != nil {
							return err
						}
						if _, err := cl.AssignRole(ctx, &v1.AssignRoleRequest{Role: "reviewers", Username: "alice", Workspace: "team-b"}); err != nil {
							return err
						}
						r, err := cl.GetRole(ctx, &v1.GetRoleRequest{Name: "reviewers", Workspace: "team-b"})
						if err == nil {
							assert.Equal(t, []string{"alice"}, r.Role.Users)
						}
						return err
					}, codes.OK, ""},
					wsCase{"admin through a token group naming the workspace's admin role", devissuer.User{Username: "gwen", Groups: []string{"/team-b-admins"}}, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
						_, err := cl.Grant(e.as(t, as), grant(onExperiment("10"), "team-b"))
						return err
					}, codes.OK, ""})
			} else {
				tests = append(tests, wsCase{"a workspace-wide grant in its workspace", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					resp, err := cl.Grant(e.as(t, as), &v1.GrantRequest{Target: wholeWorkspace, Grantee: toUser("zoe"), Permission: "READ", Workspace: "team-b"})
					if err == nil {
						assert.Equal(t, "workspace", resp.Change.ResourceKind)
					}
					return err
				}, codes.OK, ""}, wsCase{"a listing that would show every workspace's experiment rows", wanda, func(t *testing.T, cl v1.AdminServiceClient, as devissuer.User) error {
					_, err := cl.ListPermissions(e.as(t, as), &v1.ListPermissionsRequest{Workspace: "team-b"})
					return err
				}, codes.PermissionDenied, "lists the rows of one resource of its workspace"})
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					err := tc.call(t, e.client, tc.as)
					require.Equal(t, tc.code, status.Code(err), "%v", err)
					if tc.message != "" {
						assert.Contains(t, status.Convert(err).Message(), tc.message)
					}
				})
			}

			// wanda's grant decides Check in team-b, and the audit line
			// names the workspace.
			r, deny := authz.NewRequest(authz.RequestInput{ID: "c", Method: "GET", Host: "mlflow.localhost",
				Target:  "/api/2.0/mlflow/experiments/get?experiment_id=10",
				Headers: map[string]string{"authorization": "Bearer " + token(t, e, "alice"), mlflow.WorkspaceHeader: "team-b"}})
			require.Nil(t, deny)
			d := e.engine.Check(t.Context(), r)
			assert.True(t, d.Allowed, "%s: %s", d.Reason, d.Message)
			// zoe's workspace-wide grant: READ on team-b's experiments
			// (legacy), or the member tier that may create there (roles).
			zoe := devissuer.User{Username: "zoe"}
			method, target, body := "GET", "/api/2.0/mlflow/experiments/get?experiment_id=10", ""
			if roles {
				method, target, body = "POST", "/api/2.0/mlflow/experiments/create", `{"name":"zoe's"}`
			}
			headers := map[string]string{"authorization": "Bearer " + token(t, e, zoe.Username), mlflow.WorkspaceHeader: "team-b"}
			if body != "" {
				headers["content-type"] = "application/json"
			}
			r, deny = authz.NewRequest(authz.RequestInput{ID: "z", Method: method, Host: "mlflow.localhost", Target: target, Headers: headers, Body: []byte(body)})
			require.Nil(t, deny)
			d = e.engine.Check(t.Context(), r)
			assert.True(t, d.Allowed, "zoe: %s: %s", d.Reason, d.Message)

			assert.Contains(t, e.audit.String(), `"actor":"wanda"`)
			assert.Contains(t, e.audit.String(), `in workspace team-b`)
		})
	}
}

func token(t *testing.T, e *env, user string) string {
	t.Helper()
	tok, err := e.iss.Token(devissuer.User{Username: user})
	require.NoError(t, err)
	return tok
}
