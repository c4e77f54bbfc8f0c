package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// upgradeToRoles is MLflow 3.12+'s upgrade of the auth database, run on
// the seeded legacy rows (its e5f6a7b8c9d0 copies them to synthetic
// roles), then `mlflow-authz migrate` again, as the upgrade notes say, for
// the role tables' triggers. extra rows are written first.
func upgradeToRoles(extra ...string) func(t *testing.T, h *harness, d store.Dialect, query storetest.QueryFunc, migrate func() error) {
	return func(t *testing.T, h *harness, d store.Dialect, query storetest.QueryFunc, migrate func() error) {
		for _, s := range extra {
			require.NoError(t, h.exec(t.Context(), s), s)
		}
		require.NoError(t, storetest.MigrateToRoles(t.Context(), d, h.exec, query))
		require.NoError(t, migrate())
	}
}

// TestAllMLflowRoutesRolesLayout runs TestAllMLflowRoutes' sweep on the
// same database after MLflow's upgrade to the roles layout: every route
// row decides as before the migration, for every level, on both backends.
// The documented differences do not show here: the dropped NO_PERMISSIONS
// rows meet a default of NO_PERMISSIONS, and no caller of the sweep holds
// both its own row and a group's.
func TestAllMLflowRoutesRolesLayout(t *testing.T) {
	cases := routeCases(t)
	if t.Failed() {
		return
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startWith(t, b, startOptions{beforeStart: upgradeToRoles(allRoutesSeed()...)})
			h.mintLevelTokens(t)
			require.NoError(t, h.exec(t.Context(), `UPDATE experiment_permissions SET permission = 'MANAGE'`), "the snapshot is never read")
			sweep(t, h, cases)
			t.Logf("%d route cases decided alike after the upgrade", len(cases))
		})
	}
}

// TestRolesLayoutEndToEnd: on MLflow 3.12+'s database the service reads
// role_permissions, never the stale snapshot. A revoke there is seen
// within revokeLimit although the legacy row still grants; a group of the
// token names its role; readiness reports the layout.
func TestRolesLayoutEndToEnd(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startWith(t, b, startOptions{beforeStart: upgradeToRoles()})
			ctx := t.Context()

			status, body := h.readyBody(t)
			require.Equal(t, http.StatusOK, status)
			assert.Equal(t, map[string]any{"layout": "roles", "alembic_revision": storetest.RolesHead}, body["mlflow_auth"])
			assert.Nil(t, body["warnings"])

			bob := h.call(hostMLflow, "bob", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")
			requireDecision(t, h.check(t, bob), true, 200, "allowed")
			require.NoError(t, h.exec(ctx, `DELETE FROM role_permissions WHERE resource_type = 'experiment' AND resource_pattern = '1'
				AND role_id = (SELECT id FROM roles WHERE name = '__user_2__')`))
			took, ok := waitFor(t, revokeLimit, func() bool { return !h.check(t, bob).Allowed })
			require.True(t, ok, "revoke in role_permissions not seen after %s", took)
			t.Logf("revoke seen after %s", took)
			requireDecision(t, h.check(t, bob), false, http.StatusForbidden, string(authz.ReasonPermissionDenied))
			n, err := storetestQuery(t, h, b, `SELECT permission FROM experiment_permissions WHERE experiment_id = '1' AND user_id = 2`)
			require.NoError(t, err)
			assert.Equal(t, []string{"READ"}, n, "the legacy snapshot still grants, and is not read")

			// gina has no users row; her token group /team-a names role
			// team-a, which the legacy group rows never became.
			gina := h.call(hostMLflow, "gina", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=2", "")
			requireDecision(t, h.check(t, gina), false, http.StatusForbidden, string(authz.ReasonPermissionDenied))
			require.NoError(t, h.exec(ctx, `INSERT INTO roles (name, workspace) VALUES ('team-a', 'default')`))
			require.NoError(t, h.exec(ctx, `INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission)
				SELECT id, 'experiment', '*', 'READ' FROM roles WHERE name = 'team-a'`))
			took, ok = waitFor(t, revokeLimit, func() bool { return h.check(t, gina).Allowed })
			require.True(t, ok, "group role grant not seen after %s", took)

			// erin's legacy NO_PERMISSIONS on experiment 2 was dropped by the
			// migration; her group's role now grants READ there (a documented
			// difference of the layouts).
			erin := h.call(hostMLflow, "erin", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=2", "")
			requireDecision(t, h.check(t, erin), true, 200, "allowed")

			// DENY in any of her roles denies, whatever else grants.
			require.NoError(t, h.exec(ctx, `INSERT INTO roles (name, workspace) VALUES ('blocked', 'default')`))
			require.NoError(t, h.exec(ctx, `INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission)
				SELECT id, 'experiment', '2', 'DENY' FROM roles WHERE name = 'blocked'`))
			require.NoError(t, h.exec(ctx, `INSERT INTO user_role_assignments (user_id, role_id) SELECT 5, id FROM roles WHERE name = 'blocked'`))
			took, ok = waitFor(t, revokeLimit, func() bool { return !h.check(t, erin).Allowed })
			require.True(t, ok, "DENY not seen after %s", took)
			res := h.check(t, erin)
			requireDecision(t, res, false, http.StatusForbidden, string(authz.ReasonPermissionDenied))
			assert.Contains(t, res.Message, "DENY")
		})
	}
}

// TestRolesUnknownRevision: an auth revision newer than this build knows
// is read by its tables; the service is ready, and says so.
func TestRolesUnknownRevision(t *testing.T) {
	h := startWith(t, backendSQLite, startOptions{beforeStart: func(t *testing.T, h *harness, d store.Dialect, query storetest.QueryFunc, migrate func() error) {
		upgradeToRoles()(t, h, d, query, migrate)
		require.NoError(t, h.exec(t.Context(), `UPDATE alembic_version_auth SET version_num = 'abcdef012345'`))
	}})
	status, body := h.readyBody(t)
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, map[string]any{"layout": "roles", "alembic_revision": "abcdef012345"}, body["mlflow_auth"])
	require.Len(t, body["warnings"], 1)
	assert.Contains(t, body["warnings"].([]any)[0], "abcdef012345")
	assert.Contains(t, h.logs.String(), "abcdef012345")
	requireDecision(t, h.check(t, h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")), true, 200, "allowed")
}

func storetestQuery(t *testing.T, h *harness, b backend, q string) ([]string, error) {
	if b == backendPostgres {
		return storetest.PostgresQuery(t, h.dbURL)(t.Context(), q)
	}
	return storetest.SQLiteQuery(t, h.env["SQLITE_PATH"])(t.Context(), strings.TrimSpace(q))
}
