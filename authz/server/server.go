// Package server runs mlflow-authz from a configuration: it opens the
// permission store behind its cache and change watch, builds the engine, and
// serves Envoy's Check and the ext_proc response filter (with gRPC health
// and reflection) on the gRPC address and metrics, health and readiness on
// the HTTP address.
//
// `mlflow-authz serve`, `mlflow-authz demo` and the end-to-end tests all start
// the service through Start, so the tests exercise exactly the wiring that
// runs in production.
//
//	run, err := server.Start(ctx, cfg, log)
//	if err != nil { return err }
//	defer run.Stop()
//	select { case <-ctx.Done(): case err := <-run.Done(): ... }
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/extproc"
	"github.com/mlflow-authz/mlflow-authz/authz/ops"
	"github.com/mlflow-authz/mlflow-authz/authz/ownership"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/backend"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
)

// Running is a started service. Its listeners are bound and its first
// configuration is live when Start returns.
type Running struct {
	// GRPCAddr and HTTPAddr are the bound addresses (the real port when the
	// configuration asked for port 0).
	GRPCAddr string
	HTTPAddr string

	cfg    *config.Config
	log    *slog.Logger
	engine *authz.Engine
	reader store.Reader // nil with store driver none
	cache  *cache.Cache // the reader's cache; nil with store driver none

	mu sync.Mutex
	rt *config.Runtime // the runtime whose engine config is live

	health     *ops.Health
	grpcHealth *extauthz.Health
	gs         *grpc.Server
	hs         *http.Server
	errc       chan error
	be         backend.Store
	stopBg     context.CancelFunc
	stopOnce   sync.Once

	owners     *ownership.Reconciler // nil unless the store can write
	ownersDone chan struct{}
	tracking   backend.Tracking
}

// Start opens the store, builds and starts the engine from cfg, binds both
// listeners and starts serving. ctx bounds the start-up only; the service runs
// until Stop. log receives the decision log and operational messages.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (run *Running, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Running{cfg: cfg, log: log, errc: make(chan error, 2)}
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	r.stopBg = stopBg
	var cleanup []func()
	defer func() {
		if err != nil {
			stopBg()
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	be, err := backend.Open(ctx, cfg.Store, log)
	if err != nil {
		return nil, fmt.Errorf("server: store: %w", err)
	}
	if be != nil {
		r.be = be
		cleanup = append(cleanup, be.Close)
		if n, ok := be.(notifyChecker); ok {
			// At start, and then on every LISTEN reconnect (Watch): a table
			// without its trigger would serve SQL grant changes stale with
			// nobody told. An error reading the catalog leaves readiness to
			// the store ping.
			if err := n.CheckNotify(ctx); err != nil {
				log.Warn("server: cannot check the change-notification triggers", "error", err)
			}
		}
		c := cache.New(be, cfg.Store.Cache)
		// The watch flushes the cache whenever a grant may have changed or a
		// notification may have been missed, so a revoke is never served
		// from the cache after it is announced.
		go func() { _ = be.Watch(bgCtx, func(string) { c.Invalidate() }, c.Flush) }()
		r.reader, r.cache = c, c
		if err := r.startOwnership(bgCtx, cfg.Store, be); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, r.stopOwnership)
	}

	rt, err := config.Build(ctx, r.withRecorder(cfg), r.reader, log)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	cleanup = append(cleanup, rt.Close)
	r.rt = rt
	if r.engine, err = authz.NewEngine(rt.Engine); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		statusCollector{r})
	r.health = &ops.Health{}
	if l, ok := r.be.(store.LayoutReporter); ok {
		info := l.Layout()
		log.Info("server: MLflow auth database", "layout", info.Layout, "alembic_revision", info.Revision, "forced", info.Forced)
		var warnings []string
		if w := info.Warning(); w != "" {
			log.Warn("server: "+w, "alembic_revision", info.Revision)
			warnings = append(warnings, w)
		}
		r.health.SetInfo(map[string]any{"mlflow_auth": map[string]any{"layout": info.Layout, "alembic_revision": info.Revision}}, warnings...)
	}
	r.health.SetChecks(
		ops.ReadyCheck{Name: "issuers", Check: func(context.Context) error { return r.ready() }},
		ops.ReadyCheck{Name: "store", Check: func(ctx context.Context) error {
			if r.be == nil {
				return nil
			}
			return r.be.Ping(ctx)
		}},
		ops.ReadyCheck{Name: "notify", Check: func(ctx context.Context) error {
			n, ok := r.be.(notifyChecker)
			if !ok {
				return nil
			}
			// Checked afresh, so a migrate shows at the next probe; if the
			// catalog cannot be read, the last answer stands (and the store
			// check reports the outage).
			_ = n.CheckNotify(ctx)
			return n.NotifyStatus()
		}},
	)
	metrics, err := extauthz.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	filterMetrics, err := extproc.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	filter := extproc.NewServer(r.engine, log, filterMetrics, extproc.Options{MaxBodyBytes: cfg.MaxBody(), Timeout: cfg.ExtProc.Timeout})
	r.grpcHealth = extauthz.NewHealth()
	r.grpcHealth.Track(extproc.ServiceName)
	r.gs = extauthz.NewGRPCServer(extauthz.GRPCOptions{
		Server:           extauthz.NewServer(r.engine, log, metrics, extauthz.WithTimeout(cfg.Server.CheckTimeout)),
		Health:           r.grpcHealth,
		MaxConnectionAge: cfg.Server.MaxConnectionAge,
		MaxRecvMsgSize:   cfg.Server.MaxRecvMsgSize,
		StreamWorkers:    streamWorkers(cfg.Server.StreamWorkers),
		Register:         filter.Register,
	})
	if err := r.registerAdmin(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	grpcLn, err := net.Listen("tcp", cfg.Server.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("server: server.grpc_addr: %w", err)
	}
	cleanup = append(cleanup, func() { grpcLn.Close() })
	httpLn, err := net.Listen("tcp", cfg.Server.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("server: server.http_addr: %w", err)
	}
	r.hs = &http.Server{
		Handler:           r.health.Handler(ops.Options{Gatherer: reg, Pprof: cfg.Server.Pprof}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	r.GRPCAddr, r.HTTPAddr = grpcLn.Addr().String(), httpLn.Addr().String()
	go func() { r.errc <- r.gs.Serve(grpcLn) }()
	go func() { r.errc <- r.hs.Serve(httpLn) }()
	// Only now, with the configuration live, may Envoy and Kubernetes send
	// traffic.
	r.grpcHealth.SetServing(true)
	return r, nil
}

// notifyChecker is a store whose change notifications rest on triggers
// that may be missing (PostgreSQL; see postgres.Store.NotifyStatus).
type notifyChecker interface {
	CheckNotify(ctx context.Context) error
	NotifyStatus() error
}

// Engine returns the live engine.
func (r *Running) Engine() *authz.Engine { return r.engine }

// Done delivers an error if a listener stops serving before Stop.
func (r *Running) Done() <-chan error { return r.errc }

func (r *Running) ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rt.Ready()
}

// Reload builds next and swaps it in whole, or leaves the live configuration
// in place and returns why. Settings that need a restart (listeners, store,
// log) are refused rather than half-applied: check them with
// config.RestartRequired first.
func (r *Running) Reload(ctx context.Context, next *config.Config) error {
	if err := config.RestartRequired(r.cfg, next); err != nil {
		return err
	}
	// The new runtime's JWKS refresh must outlive ctx, which may be a
	// request's; Build detaches its own background work from ctx.
	nrt, err := config.Build(ctx, r.withRecorder(next), r.reader, r.log)
	if err != nil {
		return err
	}
	if err := r.engine.Swap(nrt.Engine); err != nil {
		nrt.Close()
		return fmt.Errorf("server: %w", err)
	}
	r.mu.Lock()
	old := r.rt
	r.rt, r.cfg = nrt, next
	r.mu.Unlock()
	old.Close()
	return nil
}

// Stop drains and stops the service: readiness and gRPC health fail first,
// in-flight checks get up to server.shutdown_grace to finish, then the
// listeners, the store watch and the store close. It is safe to call more
// than once.
func (r *Running) Stop() {
	r.stopOnce.Do(func() {
		r.health.Drain()
		r.grpcHealth.SetServing(false)
		done := make(chan struct{})
		go func() { r.gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(r.cfg.Server.ShutdownGrace):
			r.gs.Stop()
		}
		shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := r.hs.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Warn("server: HTTP shutdown", "error", err)
		}
		r.stopBg()
		r.stopOwnership()
		r.mu.Lock()
		r.rt.Close()
		r.mu.Unlock()
		if r.be != nil {
			r.be.Close()
		}
	})
}

// startOwnership starts the creator-grant reconciler when the store can
// write MLflow's permission tables (authz/ownership). It reads the tracking
// tables on connections of its own and idles while nothing is pending.
func (r *Running) startOwnership(ctx context.Context, cfg backend.Config, be backend.Store) error {
	admin, ok := be.(store.Admin)
	if !ok {
		r.log.Warn("server: the store cannot write permission rows: creators get no MANAGE grant and registered-model renames and deletes leave their rows")
		return nil
	}
	tracking, err := backend.OpenTracking(cfg)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if tracking == nil {
		return nil
	}
	r.tracking = tracking
	r.owners = ownership.New(admin, r.tracking, ownership.Options{Logger: r.log})
	r.ownersDone = make(chan struct{})
	go func() {
		defer close(r.ownersDone)
		r.owners.Run(ctx)
	}()
	return nil
}

// stopOwnership waits for the reconciler (stopped by the background
// context) before the store it writes to closes.
func (r *Running) stopOwnership() {
	if r.ownersDone != nil {
		r.stopBg()
		<-r.ownersDone
		r.ownersDone = nil
	}
	if r.tracking != nil {
		_ = r.tracking.Close()
		r.tracking = nil
	}
}

// withRecorder returns cfg with the reconciler as every MLflow app's
// recorder. The caller's cfg is not modified.
func (r *Running) withRecorder(cfg *config.Config) *config.Config {
	if r.owners == nil {
		return cfg
	}
	c := *cfg
	c.Apps = slices.Clone(cfg.Apps)
	for i := range c.Apps {
		if c.Apps[i].Type == "mlflow" {
			c.Apps[i].MLflow.Recorder = r.owners
		}
	}
	return &c
}

// Ownership returns the creator-grant reconciler, nil when the store cannot
// write permission rows.
func (r *Running) Ownership() *ownership.Reconciler { return r.owners }

// streamWorkers turns server.stream_workers into GRPCOptions.StreamWorkers:
// in the file 0 turns the workers off, in GRPCOptions 0 takes the default.
func streamWorkers(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
