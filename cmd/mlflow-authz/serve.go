package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/ops"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
)

func newServeCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve Envoy's Check on the gRPC port and metrics/health on the HTTP port",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError{errors.New("--config is required")}
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, serveOptions{configPath: path})
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "path to the YAML configuration file")
	return cmd
}

// backend is a permission store as the server runs it.
type backend interface {
	store.Reader
	Ping(ctx context.Context) error
	Watch(ctx context.Context, invalidate func(table string), flush func()) error
	Close()
}

func openBackend(ctx context.Context, cfg config.StoreConfig, log *slog.Logger) (backend, error) {
	switch cfg.Driver {
	case "postgres":
		c := cfg.Postgres
		c.Logger = log
		return postgres.Open(ctx, c)
	case "sqlite":
		c := cfg.SQLite
		c.Logger = log
		return sqlite.Open(ctx, c)
	default:
		return nil, nil
	}
}

func newLogger(cfg config.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// serveOptions are what differs between `serve` and `demo`.
type serveOptions struct {
	configPath string // reloadable file; empty for the demo
	log        *slog.Logger
	// ready is called once both ports listen and the first config is live.
	ready func(grpcAddr, httpAddr string)
}

// serve runs the service until ctx ends (SIGINT/SIGTERM), then drains.
func serve(ctx context.Context, cfg *config.Config, opts serveOptions) error {
	log := opts.log
	if log == nil {
		log = newLogger(cfg.Log)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()

	be, err := openBackend(ctx, cfg.Store, log)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var reader store.Reader
	if be != nil {
		defer be.Close()
		c := cache.New(be, cfg.Store.Cache)
		go func() { _ = be.Watch(bgCtx, func(string) { c.Invalidate() }, c.Flush) }()
		reader = c
	}

	rt, err := config.Build(ctx, cfg, reader, log)
	if err != nil {
		return err
	}
	engine, err := authz.NewEngine(rt.Engine)
	if err != nil {
		rt.Close()
		return err
	}
	live := &liveRuntime{rt: rt}
	defer live.close()

	health := &ops.Health{}
	health.SetChecks(
		ops.ReadyCheck{Name: "issuers", Check: func(context.Context) error { return live.ready() }},
		ops.ReadyCheck{Name: "store", Check: func(ctx context.Context) error {
			if be == nil {
				return nil
			}
			return be.Ping(ctx)
		}},
	)

	metrics, err := extauthz.NewMetrics(reg)
	if err != nil {
		return err
	}
	grpcHealth := extauthz.NewHealth()
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{
		Server:           extauthz.NewServer(engine, log, metrics, extauthz.WithTimeout(cfg.Server.CheckTimeout)),
		Health:           grpcHealth,
		MaxConnectionAge: cfg.Server.MaxConnectionAge,
		MaxRecvMsgSize:   cfg.Server.MaxRecvMsgSize,
	})
	grpcLn, err := net.Listen("tcp", cfg.Server.GRPCAddr)
	if err != nil {
		return fmt.Errorf("server.grpc_addr: %w", err)
	}
	httpLn, err := net.Listen("tcp", cfg.Server.HTTPAddr)
	if err != nil {
		grpcLn.Close()
		return fmt.Errorf("server.http_addr: %w", err)
	}
	hs := &http.Server{
		Handler:           health.Handler(ops.Options{Gatherer: reg, Pprof: cfg.Server.Pprof}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(grpcLn) }()
	go func() { errc <- hs.Serve(httpLn) }()
	grpcHealth.SetServing(true)
	log.Info("serving", "grpc_addr", grpcLn.Addr().String(), "http_addr", httpLn.Addr().String(),
		"apps", len(cfg.Apps), "store", cfg.Store.Driver, "version", version)
	if opts.ready != nil {
		opts.ready(grpcLn.Addr().String(), httpLn.Addr().String())
	}

	if opts.configPath != "" {
		go watchReloads(bgCtx, opts.configPath, cfg, log, func(next *config.Config) error {
			nrt, err := config.Build(bgCtx, next, reader, log)
			if err != nil {
				return err
			}
			if err := engine.Swap(nrt.Engine); err != nil {
				nrt.Close()
				return err
			}
			live.replace(nrt)
			return nil
		})
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		log.Error("server stopped", "error", err)
	}
	// Drain: fail readiness and gRPC health first, let in-flight checks
	// finish, then exit.
	log.Info("shutting down: draining in-flight checks", "grace", cfg.Server.ShutdownGrace.String())
	health.Drain()
	grpcHealth.SetServing(false)
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.Server.ShutdownGrace):
		gs.Stop()
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutCtx)
	return nil
}

// liveRuntime holds the runtime whose engine config is live, so the
// previous one is closed (JWKS refresh stopped) only after a swap.
type liveRuntime struct {
	mu sync.Mutex
	rt *config.Runtime
}

func (l *liveRuntime) ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rt.Ready()
}

func (l *liveRuntime) replace(rt *config.Runtime) {
	l.mu.Lock()
	old := l.rt
	l.rt = rt
	l.mu.Unlock()
	old.Close()
}

func (l *liveRuntime) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rt.Close()
}

// watchReloads reloads on SIGHUP and, when enabled, when the file changes.
// A new configuration is swapped in whole, or the old one stays live and the
// reason is logged. Settings that need a restart (listeners, store) are
// refused on reload rather than half-applied.
func watchReloads(ctx context.Context, path string, current *config.Config, log *slog.Logger, apply func(*config.Config) error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var changes <-chan fsnotify.Event
	if current.Server.WatchConfig {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			defer w.Close()
			// Watch the directory: Kubernetes swaps ConfigMap files by
			// renaming a symlink, which a file watch would miss.
			if err := w.Add(filepath.Dir(path)); err == nil {
				changes = w.Events
			}
		}
		if changes == nil {
			log.Warn("config file watch unavailable; reload with SIGHUP", "error", err)
		}
	}
	reload := func(trigger string) {
		next, err := config.Load(path)
		if err == nil {
			err = config.RestartRequired(current, next)
		}
		if err == nil {
			err = apply(next)
		}
		if err != nil {
			log.Error("config reload refused; the previous configuration stays live", "trigger", trigger, "error", err)
			return
		}
		current = next
		log.Info("config reloaded", "trigger", trigger, "apps", len(next.Apps))
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload("SIGHUP")
		case <-changes:
			debounce = time.After(200 * time.Millisecond)
		case <-debounce:
			debounce = nil
			reload("file change")
		}
	}
}
