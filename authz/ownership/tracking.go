package ownership

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Object is a row of MLflow's tracking tables that a pending record waits on.
type Object struct {
	// ID is the experiment id, or the registered model's name.
	ID string
	// Created is creation_time (milliseconds since the epoch, MLflow's
	// server clock). HasCreated is false when the column is NULL: such a row
	// proves nothing about when it was made, so it never earns a grant.
	Created    time.Time
	HasCreated bool
	// Updated is last_update_time (experiments) or last_updated_time
	// (registered models); MLflow stamps it on a rename.
	Updated    time.Time
	HasUpdated bool
}

// Tracking reads MLflow's tracking tables: the proof that MLflow carried out
// a create, rename or delete that we allowed.
type Tracking interface {
	// Lookup returns the experiment or registered model named name in
	// workspace default, or store.ErrNotFound.
	Lookup(ctx context.Context, kind store.ResourceKind, name string) (Object, error)
}

type dialect uint8

const (
	dialectPostgres dialect = iota + 1
	dialectSQLite
)

// SQLTracking reads the tracking tables over database/sql, on connections of
// its own (at most two), so the reconciler never competes with the checks
// for the store's pool.
type SQLTracking struct {
	db      *sql.DB
	dialect dialect
	timeout time.Duration

	mu sync.Mutex
	ws map[string]bool // table → has MLflow 3.10's workspace column (once the table exists)
}

// OpenPostgresTracking opens MLflow's PostgreSQL tracking database at url.
// timeout bounds each query (0 means 2s).
func OpenPostgresTracking(url string, timeout time.Duration) (*SQLTracking, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("ownership: open tracking database: %w", err)
	}
	return newSQLTracking(db, dialectPostgres, timeout), nil
}

// OpenSQLiteTracking opens MLflow's SQLite tracking database: a file path or
// a DSN starting with "file:". timeout bounds each query (0 means 2s) and is
// also the busy timeout, so MLflow's writes delay a read instead of failing it.
func OpenSQLiteTracking(pathOrDSN string, timeout time.Duration) (*SQLTracking, error) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	pragma := "_pragma=" + url.QueryEscape("busy_timeout("+strconv.FormatInt(timeout.Milliseconds(), 10)+")")
	dsn := "file:" + pathOrDSN + "?" + pragma
	if strings.HasPrefix(pathOrDSN, "file:") {
		sep := "?"
		if strings.Contains(pathOrDSN, "?") {
			sep = "&"
		}
		dsn = pathOrDSN + sep + pragma
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("ownership: open tracking database: %w", err)
	}
	return newSQLTracking(db, dialectSQLite, timeout), nil
}

func newSQLTracking(db *sql.DB, d dialect, timeout time.Duration) *SQLTracking {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	return &SQLTracking{db: db, dialect: d, timeout: timeout, ws: map[string]bool{}}
}

// Close releases the connections.
func (t *SQLTracking) Close() error { return t.db.Close() }

// Lookup implements Tracking.
func (t *SQLTracking) Lookup(ctx context.Context, kind store.ResourceKind, name string) (Object, error) {
	var table, q string
	switch kind {
	case store.Experiment:
		table, q = "experiments", `SELECT CAST(experiment_id AS TEXT), creation_time, last_update_time FROM experiments WHERE name = `
	case store.RegisteredModel:
		table, q = "registered_models", `SELECT name, creation_time, last_updated_time FROM registered_models WHERE name = `
	default:
		return Object{}, fmt.Errorf("ownership: lookup: unsupported resource kind %q", kind)
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if t.dialect == dialectPostgres {
		q += "$1"
	} else {
		q += "?"
	}
	ws, err := t.hasWorkspace(ctx, table)
	if err != nil {
		return Object{}, t.err(table, err)
	}
	if ws {
		// Only workspace default: mlflow-authz removes X-MLFLOW-WORKSPACE,
		// so that is where MLflow acted.
		q += ` AND workspace = 'default'`
	}
	var (
		o                Object
		created, updated sql.NullInt64
	)
	if err := t.db.QueryRowContext(ctx, q, name).Scan(&o.ID, &created, &updated); err != nil {
		return Object{}, t.err(table, err)
	}
	if created.Valid {
		o.Created, o.HasCreated = time.UnixMilli(created.Int64), true
	}
	if updated.Valid {
		o.Updated, o.HasUpdated = time.UnixMilli(updated.Int64), true
	}
	return o, nil
}

func (t *SQLTracking) hasWorkspace(ctx context.Context, table string) (bool, error) {
	t.mu.Lock()
	ws, known := t.ws[table]
	t.mu.Unlock()
	if known {
		return ws, nil
	}
	var exists bool
	var err error
	if t.dialect == dialectPostgres {
		err = t.db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL,
			EXISTS (SELECT 1 FROM information_schema.columns
				WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'workspace')`,
			table).Scan(&exists, &ws)
	} else {
		err = t.db.QueryRowContext(ctx, `SELECT
			EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1),
			EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = 'workspace')`,
			table).Scan(&exists, &ws)
	}
	if err != nil {
		return false, err
	}
	if exists { // remember only once MLflow has created the table
		t.mu.Lock()
		t.ws[table] = ws
		t.mu.Unlock()
	}
	return ws, nil
}

func (t *SQLTracking) err(table string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return store.ErrNotFound // MLflow has not created the table yet
	}
	if t.dialect == dialectSQLite && strings.Contains(err.Error(), "no such table") {
		return store.ErrNotFound
	}
	return fmt.Errorf("ownership: lookup %s: %w: %w", table, store.ErrUnavailable, err)
}
