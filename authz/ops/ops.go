// Package ops serves the operator's HTTP port: Prometheus metrics, liveness,
// readiness and (only when enabled) pprof.
package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyCheck is one condition for readiness, such as "every issuer's JWKS
// has been fetched" or "the store answers".
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Health tracks liveness and readiness. It is ready only when every check
// passes and the process is not draining.
type Health struct {
	draining atomic.Bool
	mu       sync.RWMutex
	checks   []ReadyCheck
	info     map[string]any
	warnings []string
}

// SetInfo sets what /readyz reports beside its status, whatever that is
// (the auth database's layout), and the warnings it lists without failing
// (an auth revision newer than this build knows).
func (h *Health) SetInfo(info map[string]any, warnings ...string) {
	h.mu.Lock()
	h.info, h.warnings = info, warnings
	h.mu.Unlock()
}

// SetChecks replaces the readiness checks (on start and on reload).
func (h *Health) SetChecks(checks ...ReadyCheck) {
	h.mu.Lock()
	h.checks = checks
	h.mu.Unlock()
}

// Drain marks the process as shutting down: readiness fails from now on so
// that Kubernetes stops sending traffic while in-flight checks finish.
func (h *Health) Drain() { h.draining.Store(true) }

// Ready runs every check and returns the names of the failing ones, each with
// its error text. An empty map means ready.
func (h *Health) Ready(ctx context.Context) map[string]string {
	failed := map[string]string{}
	if h.draining.Load() {
		failed["shutdown"] = "the server is shutting down"
	}
	h.mu.RLock()
	checks := h.checks
	h.mu.RUnlock()
	for _, c := range checks {
		if err := c.Check(ctx); err != nil {
			failed[c.Name] = err.Error()
		}
	}
	return failed
}

// Options configure the operator's HTTP handler.
type Options struct {
	Gatherer prometheus.Gatherer
	// Pprof mounts /debug/pprof/. Off by default: profiles reveal internals.
	Pprof bool
	// ReadyTimeout bounds one /readyz evaluation.
	ReadyTimeout time.Duration
}

// Handler returns the mux for /metrics, /healthz, /readyz and optionally
// /debug/pprof/.
func (h *Health) Handler(opts Options) http.Handler {
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), opts.ReadyTimeout)
		defer cancel()
		body := map[string]any{"status": "ready"}
		h.mu.RLock()
		for k, v := range h.info {
			body[k] = v
		}
		if len(h.warnings) > 0 {
			body["warnings"] = h.warnings
		}
		h.mu.RUnlock()
		if failed := h.Ready(ctx); len(failed) > 0 {
			body["status"], body["failing"] = "not ready", failed
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
