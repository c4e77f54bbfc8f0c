// Package backend opens the permission store that a configuration names
// (store.driver: postgres, sqlite or none). The server, the admin commands
// and migrate all open their store here, so the choice of backend is made in
// one place and every caller gets the same one for the same configuration.
//
//	st, err := backend.Open(ctx, cfg.Store, log)
//	if err != nil { return err }
//	if st == nil { /* store.driver none: rule applications only */ }
//	defer st.Close()
package backend

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
)

// None is the store.driver that runs without a store: only rule
// applications may then be configured. The other drivers are the SQL
// dialects, store.PostgreSQL and store.SQLite.
const None store.Dialect = "none"

// Config selects and configures the permission store (the configuration
// file's store section).
type Config struct {
	// Driver is sqlite (the embedded default), postgres, or none (no
	// MLflow application may then be configured).
	Driver   store.Dialect   `yaml:"driver"`
	Postgres postgres.Config `yaml:"postgres"`
	SQLite   sqlite.Config   `yaml:"sqlite"`
	Cache    cache.Options   `yaml:"cache"`
}

// Store is an open backend as the server runs it: the reads of the decision
// pipeline and of Basic authentication, readiness, and the change watch that
// keeps a cache honest.
type Store interface {
	store.Reader
	store.Credentials
	Ping(ctx context.Context) error
	Watch(ctx context.Context, invalidate func(table string), flush func()) error
	Close()
}

// Open opens cfg's backend. It returns nil and no error for driver none.
// log receives the backend's reconnect and watch messages; nil discards them.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (Store, error) {
	b, err := open(ctx, cfg, log)
	if b == nil {
		return nil, err
	}
	return b, nil
}

// Admin is a backend that the admin commands write.
type Admin interface {
	store.Admin
	Close()
}

// OpenAdmin opens cfg's backend for writing MLflow's permission tables.
func OpenAdmin(ctx context.Context, cfg Config) (Admin, error) {
	b, err := open(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("backend: store.driver %q has no tables to administer", cfg.Driver)
	}
	return b, nil
}

// readWriter is what every backend is: both a Store and an Admin.
type readWriter interface {
	Store
	store.Admin
}

// open returns a nil interface (never a typed nil) for driver none and on
// error.
func open(ctx context.Context, cfg Config, log *slog.Logger) (readWriter, error) {
	switch cfg.Driver {
	case store.PostgreSQL:
		c := cfg.Postgres
		c.Logger = log
		s, err := postgres.Open(ctx, c)
		if err != nil {
			return nil, err
		}
		return s, nil
	case store.SQLite:
		c := cfg.SQLite
		c.Logger = log
		s, err := sqlite.Open(ctx, c)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, nil
}

// Migrate creates the auth tables missing from cfg's auth database (and, on
// PostgreSQL, the change-notification triggers); see postgres.Migrate and
// sqlite.Migrate.
func Migrate(ctx context.Context, cfg Config) error {
	switch cfg.Driver {
	case store.PostgreSQL:
		url := cfg.Postgres.AuthURL
		if url == "" {
			url = cfg.Postgres.TrackingURL
		}
		return postgres.Migrate(ctx, url)
	case store.SQLite:
		p := cfg.SQLite.AuthPath
		if p == "" {
			p = cfg.SQLite.TrackingPath
		}
		return sqlite.Migrate(ctx, p)
	}
	return fmt.Errorf("backend: store.driver %q has nothing to migrate", cfg.Driver)
}

// Tracking reads MLflow's tracking tables for the creator-grant reconciler
// (authz/ownership), on connections of its own.
type Tracking interface {
	Lookup(ctx context.Context, n store.TrackedName) (store.TrackedObject, error)
	Close() error
}

// OpenTracking opens cfg's tracking database for the creator-grant
// reconciler. It returns nil and no error for driver none.
func OpenTracking(cfg Config) (Tracking, error) {
	switch cfg.Driver {
	case store.PostgreSQL:
		t, err := postgres.OpenTracking(cfg.Postgres.TrackingURL, cfg.Postgres.StatementTimeout)
		if err != nil {
			return nil, err
		}
		return t, nil
	case store.SQLite:
		t, err := sqlite.OpenTracking(cfg.SQLite.TrackingPath, cfg.SQLite.QueryTimeout)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, nil
}
