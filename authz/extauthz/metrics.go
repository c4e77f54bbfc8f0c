package extauthz

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// durationBuckets span a cached check (tens of µs) up to a slow store round
// trip; anything past a second is already an Envoy timeout.
var durationBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

// Metrics counts decisions and times checks. Its label values come only from
// bounded sets (application names, decision kinds, reason codes), never from
// paths or users, so series cannot grow with traffic.
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec

	// children caches the labelled series so the hot path does a lock-free
	// map read instead of WithLabelValues' hashing and locking. The map is
	// copied on write: new label combinations are rare and bounded.
	mu       sync.Mutex
	children atomic.Pointer[map[metricKey]series]
}

type metricKey struct{ app, decision, reason string }

type series struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// NewMetrics creates the decision metrics and registers them on reg:
// mlflow_authz_decisions_total{app,decision,reason} and
// mlflow_authz_check_duration_seconds{app,decision}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlflow_authz_decisions_total",
			Help: "Authorization decisions, by application, decision (allow, deny, dry_run_deny) and reason code.",
		}, []string{"app", "decision", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mlflow_authz_check_duration_seconds",
			Help:    "Time to answer one ext_authz Check, by application and decision.",
			Buckets: durationBuckets,
		}, []string{"app", "decision"}),
	}
	empty := map[metricKey]series{}
	m.children.Store(&empty)
	for _, c := range []prometheus.Collector{m.decisions, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("extauthz: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe records one decision. It is a no-op on a nil *Metrics.
func (m *Metrics) observe(app, decision, reason string, elapsed time.Duration) {
	if m == nil {
		return
	}
	k := metricKey{app, decision, reason}
	s, ok := (*m.children.Load())[k]
	if !ok {
		s = m.add(k)
	}
	s.count.Inc()
	s.duration.Observe(elapsed.Seconds())
}

func (m *Metrics) add(k metricKey) series {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.children.Load()
	if s, ok := old[k]; ok {
		return s
	}
	s := series{
		count:    m.decisions.WithLabelValues(k.app, k.decision, k.reason),
		duration: m.duration.WithLabelValues(k.app, k.decision),
	}
	next := make(map[metricKey]series, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = s
	m.children.Store(&next)
	return s
}
