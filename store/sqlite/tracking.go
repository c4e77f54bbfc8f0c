package sqlite

import (
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

// Tracking reads the experiments and registered models of MLflow's
// tracking tables for the creator-grant reconciler (authz/ownership), on
// connections of its own (at most two), so it never competes with the
// checks for the Store's handles.
type Tracking struct{ *mlflowdb.Tracking }

// OpenTracking opens MLflow's SQLite tracking database: a file path or a
// DSN starting with "file:". timeout bounds each query (0 means 2s) and is
// also the busy timeout, so MLflow's writes delay a read instead of
// failing it.
func OpenTracking(pathOrDSN string, timeout time.Duration) (*Tracking, error) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	db, err := sql.Open(driverName, withPragmas(pathOrDSN, busyTimeout(timeout.Milliseconds())))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open tracking database: %w", err)
	}
	return &Tracking{mlflowdb.NewTracking(db, store.SQLite, timeout, noSuchTable)}, nil
}

// noSuchTable reports whether err says a table is missing: MLflow has not
// created it yet.
func noSuchTable(err error) bool { return strings.Contains(err.Error(), "no such table") }
