package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/logsink"
	"github.com/mlflow-authz/mlflow-authz/authz/server"
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

// newLogger returns the service's logger on stderr and the buffer behind
// it, which the caller closes after the last line.
func newLogger(cfg config.LogConfig) (*slog.Logger, *logsink.Writer) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	return logsink.New(os.Stderr, logsink.Options{Level: level, Text: cfg.Format == "text", FlushInterval: cfg.FlushInterval})
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
		var sink *logsink.Writer
		log, sink = newLogger(cfg.Log)
		// Deferred first, so it runs last: after Stop has drained every
		// check, the buffered lines are written before the process exits.
		defer sink.Close()
	}
	if soft := server.SetMemoryLimit(); soft > 0 {
		log.Info("memory limit set from the container's", "gomemlimit_bytes", soft)
	}
	if pct := server.SetGCPercent(); pct > 0 {
		log.Info("collector target set (GOGC unset; set it to override)", "gogc", pct)
	}
	run, err := server.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer run.Stop()
	log.Info("serving", "grpc_addr", run.GRPCAddr, "http_addr", run.HTTPAddr,
		"apps", len(cfg.Apps), "store", cfg.Store.Driver, "version", currentBuild().Version)
	if opts.ready != nil {
		opts.ready(run.GRPCAddr, run.HTTPAddr)
	}

	bgCtx, stopReloads := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReloads()
	if opts.configPath != "" {
		go watchReloads(bgCtx, opts.configPath, cfg, log, func(next *config.Config) error {
			return run.Reload(bgCtx, next)
		})
	}

	select {
	case <-ctx.Done():
	case err := <-run.Done():
		log.Error("server stopped", "error", err)
	}
	log.Info("shutting down: draining in-flight checks", "grace", cfg.Server.ShutdownGrace.String())
	return nil
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
