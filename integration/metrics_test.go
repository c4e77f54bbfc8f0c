package integration

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape reads the service's /metrics as Prometheus does.
func (h *harness) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+h.run.HTTPAddr+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value returns the value of the series of family name whose labels
// include want; ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// startWatching starts the service on PostgreSQL and waits until it is ready
// and its LISTEN connection, which comes up in the background, is live.
func startWatching(t *testing.T) *harness {
	t.Helper()
	h := start(t)
	require.Eventually(t, func() bool { return h.readyz(t) == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		v, ok := value(h.scrape(t), "mlflow_authz_store_watch_up", nil)
		return ok && v == 1
	}, 10*time.Second, 50*time.Millisecond)
	return h
}

// The operations dashboard and alerts read these series: decisions, the
// cache, the store and its LISTEN feed, and each issuer's keys.
func TestMetricsReportWhatChecksDependOn(t *testing.T) {
	h := startWatching(t)

	get := h.call(hostMLflow, "alice", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")
	requireDecision(t, h.check(t, get), true, 200, "allowed")
	requireDecision(t, h.check(t, get), true, 200, "allowed")
	requireDecision(t, h.check(t, h.call(hostMLflow, "mallory", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")),
		false, 403, "permission_denied")

	fams := h.scrape(t)
	expect := func(name string, labels map[string]string, check func(float64) bool) {
		t.Helper()
		v, ok := value(fams, name, labels)
		require.True(t, ok, "%s%v missing", name, labels)
		assert.True(t, check(v), "%s%v = %v", name, labels, v)
	}
	positive := func(v float64) bool { return v > 0 }
	expect("mlflow_authz_decisions_total", map[string]string{"app": "mlflow", "decision": "allow", "reason": "allowed"}, func(v float64) bool { return v == 2 })
	expect("mlflow_authz_decisions_total", map[string]string{"app": "mlflow", "decision": "deny", "reason": "permission_denied"}, func(v float64) bool { return v == 1 })
	expect("mlflow_authz_check_duration_seconds", map[string]string{"app": "mlflow", "decision": "allow"}, func(v float64) bool { return v == 2 })
	expect("mlflow_authz_cache_lookups_total", map[string]string{"cache": "grant", "result": "hit"}, positive)
	expect("mlflow_authz_cache_lookups_total", map[string]string{"cache": "grant", "result": "miss"}, positive)
	expect("mlflow_authz_cache_flushes_total", nil, positive)
	expect("mlflow_authz_store_up", nil, func(v float64) bool { return v == 1 })
	expect("mlflow_authz_store_watch_losses_total", nil, func(v float64) bool { return v == 0 })
	expect("mlflow_authz_jwks_fetch_failures_total", map[string]string{"issuer": "dev"}, func(v float64) bool { return v == 0 })
	expect("mlflow_authz_jwks_last_success_timestamp_seconds", map[string]string{"issuer": "dev"}, func(v float64) bool {
		return time.Since(time.Unix(int64(v), 0)) < time.Minute
	})
}
