package extproc

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the filter's exchanges and times its body work. Labels
// come from bounded sets (application names, route names of the route
// table, outcomes, reason codes), never from paths or users.
type Metrics struct {
	exchanges *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	bodyTime  *prometheus.HistogramVec
	bodyBytes *prometheus.HistogramVec
}

// NewMetrics registers the filter's metrics on reg:
// mlflow_authz_filter_exchanges_total{app,route,outcome,reason},
// mlflow_authz_filter_duration_seconds{route,outcome} (the whole exchange,
// upstream time included), mlflow_authz_filter_body_seconds{route} and
// mlflow_authz_filter_body_bytes{route} (each filtered response body).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlflow_authz_filter_exchanges_total",
			Help: "ext_proc exchanges (one per HTTP request Envoy sends), by application, route, outcome (skipped, passed, filtered, denied) and reason code of a deny.",
		}, []string{"app", "route", "outcome", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mlflow_authz_filter_duration_seconds",
			Help:    "Time from the request headers to the end of one ext_proc exchange, MLflow's own time included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"route", "outcome"}),
		bodyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mlflow_authz_filter_body_seconds",
			Help:    "Time to filter one response body, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}, []string{"route"}),
		bodyBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mlflow_authz_filter_body_bytes",
			Help:    "Size of each response body the filter read, by route.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 9),
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.exchanges, m.duration, m.bodyTime, m.bodyBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("extproc: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe records one exchange. It is a no-op on a nil *Metrics.
func (m *Metrics) observe(app, route, outcome, reason string, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.exchanges.WithLabelValues(app, route, outcome, reason).Inc()
	m.duration.WithLabelValues(route, outcome).Observe(elapsed.Seconds())
}

// observeBody records one filtered body.
func (m *Metrics) observeBody(route string, size int, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.bodyTime.WithLabelValues(route).Observe(elapsed.Seconds())
	m.bodyBytes.WithLabelValues(route).Observe(float64(size))
}
