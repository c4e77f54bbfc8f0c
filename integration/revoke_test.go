package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store/postgres"
)

// revokeLimit is how soon a revoke made with plain SQL must take effect.
const revokeLimit = time.Second

// TestRevokeBySQL revokes a grant the way an operator does, with SQL from
// another connection, after the service has cached the allow, and requires
// the deny within revokeLimit. It does it again across a lost LISTEN
// connection (killed with pg_terminate_backend): a missed notification must
// never leave a stale allow in the cache.
func TestRevokeBySQL(t *testing.T) {
	h := start(t)
	ctx := t.Context()
	frankRunC := h.call(hostMLflow, "frank", "GET", "/api/2.0/mlflow/runs/get?run_id="+runC, "")
	allowed := func() bool { return h.check(t, frankRunC).Allowed }
	grant := func() {
		t.Helper()
		require.NoError(t, h.exec(ctx, `INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('3', 7, 'READ')`))
		took, ok := waitFor(t, revokeLimit, allowed)
		require.True(t, ok, "grant not visible after %s", took)
		// Warm the cache: these are served from it.
		for range 5 {
			require.True(t, allowed())
		}
	}
	// revoke deletes the grant and returns how long until the first deny.
	revoke := func(step string) {
		t.Helper()
		require.NoError(t, h.exec(ctx, `DELETE FROM experiment_permissions WHERE experiment_id = '3' AND user_id = 7`))
		took, ok := waitFor(t, revokeLimit, func() bool { return !allowed() })
		require.True(t, ok, "%s: still allowed %s after the revoke", step, took)
		t.Logf("%s: revoke took effect after %s", step, took.Round(time.Microsecond))
		requireDecision(t, h.check(t, frankRunC), false, 403, "permission_denied")
	}

	t.Run("notify", func(t *testing.T) {
		grant()
		revoke("with LISTEN")
	})

	t.Run("listen connection killed", func(t *testing.T) {
		grant()
		before := listenPIDs(t, h)
		require.Len(t, before, 1, "one LISTEN connection per service")
		require.NoError(t, h.exec(ctx, `SELECT pg_terminate_backend($1)`, before[0]))
		// Revoke at once, while the service may still be reconnecting.
		revoke("LISTEN killed")
		// Denied throughout the reconnection: nothing stale comes back.
		var after []int32
		_, ok := waitFor(t, 5*time.Second, func() bool {
			requireDecision(t, h.check(t, frankRunC), false, 403, "permission_denied")
			after = listenPIDs(t, h)
			return len(after) == 1 && after[0] != before[0]
		})
		require.True(t, ok, "the LISTEN connection did not come back (pids %v)", after)
		// Notifications flow on the new connection.
		grant()
		revoke("after LISTEN reconnect")
	})
}

// listenPIDs returns the backend pids of the service's LISTEN connections
// to the harness's database.
func listenPIDs(t *testing.T, h *harness) []int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, postgres.ListenApplicationName)
	require.NoError(t, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	return pids
}
