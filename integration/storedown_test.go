package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// storeRecoveryLimit is how soon checks must answer again once PostgreSQL
// is back.
const storeRecoveryLimit = 5 * time.Second

// TestStoreDown stops PostgreSQL under the running service. A check that
// needs the store (a run no cache has seen) must be a 503 unavailable, never
// an allow; once the server is back the same check must be answered
// correctly within storeRecoveryLimit.
//
// It stops the PostgreSQL server that every test of this binary shares and
// restarts it before returning, so no test of this package may run in
// parallel (none calls t.Parallel).
func TestStoreDown(t *testing.T) {
	h := start(t)
	warm := h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/runs/get?run_id="+runA, "")
	cold := h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/runs/get?run_id="+runCold, "")
	requireDecision(t, h.check(t, warm), true, 0, "")
	require.Equal(t, http.StatusOK, h.readyz(t), "/readyz with everything up")
	// The loss counter counts a LISTEN connection that was up and went
	// away: wait for it to be up before taking the store down.
	_, ok := waitFor(t, 5*time.Second, func() bool {
		v, _ := value(h.scrape(t), "mlflow_authz_store_watch_up", nil)
		return v == 1
	})
	require.True(t, ok, "the LISTEN connection never came up")

	storetest.RestartPostgres(t, func() {
		// Kubernetes takes a replica that cannot read the store out of
		// rotation.
		require.Equal(t, http.StatusServiceUnavailable, h.readyz(t), "/readyz with the store down")
		for i := range 3 {
			began := time.Now()
			res := h.check(t, cold)
			requireDecision(t, res, false, 503, "unavailable")
			t.Logf("store down, check %d: %s after %s", i, res, time.Since(began).Round(time.Microsecond))
		}
		// Whatever the cache held is flushed when the LISTEN connection
		// drops, so a check that needs grants is refused too.
		_, ok := waitFor(t, time.Second, func() bool { return !h.check(t, warm).Allowed })
		require.True(t, ok, "cached allow still served a second after the store went down")
		requireDecision(t, h.check(t, warm), false, 503, "unavailable")
		// What the alerts read: the store is down, the change feed is
		// lost, and the denies are 503s.
		fams := h.scrape(t)
		for name, want := range map[string]float64{"mlflow_authz_store_up": 0, "mlflow_authz_store_watch_up": 0} {
			v, ok := value(fams, name, nil)
			require.True(t, ok, name)
			require.Equal(t, want, v, name)
		}
		losses, _ := value(fams, "mlflow_authz_store_watch_losses_total", nil)
		require.GreaterOrEqual(t, losses, 1.0)
		n, _ := value(fams, "mlflow_authz_decisions_total", map[string]string{"decision": "deny", "reason": "unavailable"})
		require.GreaterOrEqual(t, n, 4.0)
	})

	took, ok := waitFor(t, storeRecoveryLimit, func() bool { return h.check(t, cold).Allowed })
	require.True(t, ok, "checks did not recover within %s of the restart", took)
	t.Logf("store back: checks answered again after %s", took.Round(time.Millisecond))
	require.Equal(t, http.StatusOK, h.readyz(t), "/readyz after the restart")
	requireDecision(t, h.check(t, h.call(hostMLflow, "bob", "POST", "/api/2.0/mlflow/runs/update", `{"run_id":"`+runCold+`"}`)),
		false, 403, "permission_denied")
}
