package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The health of what every check depends on, read when Prometheus scrapes:
// the permission cache, the store and its change feed, and each issuer's
// keys. The decision counters and latency live in package extauthz.
var (
	descCacheLookups = prometheus.NewDesc("mlflow_authz_cache_lookups_total",
		"Permission-cache lookups, by cache (grant, pattern, user, resolve) and result (hit, miss).",
		[]string{"cache", "result"}, nil)
	descCacheFlushes = prometheus.NewDesc("mlflow_authz_cache_flushes_total",
		"Flushes of the grant and user caches: one per announced grant change, and on every loss and re-establishment of the change feed.",
		nil, nil)
	descCacheRefreshes = prometheus.NewDesc("mlflow_authz_cache_refreshes_total",
		"Cache entries re-read in the background, ahead of their expiry, because a hit found them past half their life.",
		nil, nil)
	descStoreUp = prometheus.NewDesc("mlflow_authz_store_up",
		"1 if the permission store answered a ping during this scrape, else 0.",
		nil, nil)
	descWatchUp = prometheus.NewDesc("mlflow_authz_store_watch_up",
		"PostgreSQL only: 1 while the LISTEN connection that announces grant changes is established. While 0, a revoke reaches this replica only when store.cache.grant_ttl expires.",
		nil, nil)
	descWatchLosses = prometheus.NewDesc("mlflow_authz_store_watch_losses_total",
		"PostgreSQL only: established LISTEN connections lost.",
		nil, nil)
	descJWKSFailures = prometheus.NewDesc("mlflow_authz_jwks_fetch_failures_total",
		"Failed discovery or JWKS fetches, by issuer (issuers[].name). Counts from the last configuration load.",
		[]string{"issuer"}, nil)
	descJWKSLastSuccess = prometheus.NewDesc("mlflow_authz_jwks_last_success_timestamp_seconds",
		"When the issuer's keys were last fetched (Unix seconds); 0 if never since the last configuration load.",
		[]string{"issuer"}, nil)
)

// storePingTimeout bounds the store ping of one scrape.
const storePingTimeout = time.Second

// watchReporter is a store with a change feed that can say whether it is
// live (PostgreSQL's LISTEN connection; SQLite polls and has none).
type watchReporter interface {
	WatchStatus() (up bool, losses uint64, enabled bool)
}

// statusCollector exports the descs above for a running service.
type statusCollector struct{ r *Running }

// Describe implements prometheus.Collector.
func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheLookups, descCacheFlushes, descCacheRefreshes, descStoreUp,
		descWatchUp, descWatchLosses, descJWKSFailures, descJWKSLastSuccess} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if r.cache != nil {
		s := r.cache.Stats()
		counter(descCacheLookups, s.GrantHits, "grant", "hit")
		counter(descCacheLookups, s.GrantMisses, "grant", "miss")
		counter(descCacheLookups, s.PatternHits, "pattern", "hit")
		counter(descCacheLookups, s.PatternMisses, "pattern", "miss")
		counter(descCacheLookups, s.UserHits, "user", "hit")
		counter(descCacheLookups, s.UserMisses, "user", "miss")
		counter(descCacheLookups, s.ResolveHits, "resolve", "hit")
		counter(descCacheLookups, s.ResolveMisses, "resolve", "miss")
		counter(descCacheFlushes, s.Flushes)
		counter(descCacheRefreshes, s.Refreshes)
	}
	if r.be != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storePingTimeout)
		up := 0.0
		if r.be.Ping(ctx) == nil {
			up = 1
		}
		cancel()
		gauge(descStoreUp, up)
		if w, ok := r.be.(watchReporter); ok {
			// With store.postgres.notify off there is no connection to be
			// up: exporting a 0 would fire the alert forever.
			if live, losses, enabled := w.WatchStatus(); enabled {
				gauge(descWatchUp, boolValue(live))
				counter(descWatchLosses, losses)
			}
		}
	}
	r.mu.Lock()
	jwt := r.rt.JWT
	r.mu.Unlock()
	if jwt != nil {
		for _, s := range jwt.JWKSStatus() {
			counter(descJWKSFailures, s.Failures, s.Issuer)
			last := 0.0
			if !s.LastSuccess.IsZero() {
				last = float64(s.LastSuccess.UnixNano()) / 1e9
			}
			gauge(descJWKSLastSuccess, last, s.Issuer)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
