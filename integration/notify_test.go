package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// TestNotifyTriggersChecked serves on a PostgreSQL whose auth tables MLflow
// made but on which `mlflow-authz migrate` never ran: a revoke with SQL
// would go unannounced for the whole grant TTL, so the service must not be
// ready and must say why, until migrate runs; and again when a trigger is
// dropped while it runs.
func TestNotifyTriggersChecked(t *testing.T) {
	h := startWith(t, backendPostgres, startOptions{authSchema: storetest.CreateAuthSchema, noMigrate: true})
	status, failing := h.readiness(t)
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Contains(t, failing, "notify")
	assert.Contains(t, failing["notify"], "mlflow-authz migrate")
	assert.Contains(t, failing["notify"], "experiment_permissions")
	assert.Len(t, failing, 1, "only the triggers are wrong: %v", failing)
	// Decisions are still made (Envoy may still call a replica that
	// Kubernetes has not yet taken out).
	requireDecision(t, h.check(t, h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")), true, 200, "allowed")

	require.NoError(t, postgres.Migrate(t.Context(), h.dbURL))
	status, failing = h.readiness(t)
	require.Equal(t, http.StatusOK, status, "ready after migrate: %v", failing)

	// A revoke with SQL is now seen at once.
	frank := h.call(hostMLflow, "frank", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=3", "")
	require.NoError(t, h.exec(t.Context(), `INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('3', 7, 'READ')`))
	_, ok := waitFor(t, revokeLimit, func() bool { return h.check(t, frank).Allowed })
	require.True(t, ok)
	require.NoError(t, h.exec(t.Context(), `DELETE FROM experiment_permissions WHERE experiment_id = '3' AND user_id = 7`))
	took, ok := waitFor(t, revokeLimit, func() bool { return !h.check(t, frank).Allowed })
	require.True(t, ok, "revoke not seen after %s", took)
	requireDecision(t, h.check(t, frank), false, 403, "permission_denied")

	// A trigger dropped while the service runs is reported once the LISTEN
	// connection comes back, before any probe asks.
	require.NoError(t, h.exec(t.Context(), `DROP TRIGGER mlflow_authz_notify ON experiment_group_permissions`))
	before := listenPIDs(t, h)
	require.Len(t, before, 1)
	require.NoError(t, h.exec(t.Context(), `SELECT pg_terminate_backend($1)`, before[0]))
	_, ok = waitFor(t, 10*time.Second, func() bool {
		return strings.Contains(h.logs.String(), `"tables":["experiment_group_permissions"]`)
	})
	require.True(t, ok, "the reconnect did not report the dropped trigger; log:\n%s", h.logs)
	status, failing = h.readiness(t)
	require.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, failing["notify"], "experiment_group_permissions")
	assert.Contains(t, failing["notify"], "mlflow-authz migrate")
}

// TestNotifyOff: with store.postgres.notify off the service is ready without
// triggers, warns once that the TTL alone bounds staleness, and exports no
// LISTEN gauge to alert on.
func TestNotifyOff(t *testing.T) {
	h := startWith(t, backendPostgres, startOptions{
		authSchema: storetest.CreateAuthSchema,
		noMigrate:  true,
		config: func(doc string) string {
			return strings.Replace(doc, "    connect_timeout: 1s\n", "    connect_timeout: 1s\n    notify: off\n", 1)
		},
	})
	status, failing := h.readiness(t)
	require.Equal(t, http.StatusOK, status, "%v", failing)
	requireDecision(t, h.check(t, h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")), true, 200, "allowed")
	_, ok := waitFor(t, 5*time.Second, func() bool { return strings.Contains(h.logs.String(), "notify is off") })
	require.True(t, ok)
	assert.Equal(t, 1, strings.Count(h.logs.String(), "notify is off"), "one warning")
	assert.Empty(t, listenPIDs(t, h), "nothing listens")
	_, exported := value(h.scrape(t), "mlflow_authz_store_watch_up", nil)
	assert.False(t, exported)
}
