package postgres

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

// Tracking reads the experiments and registered models of MLflow's
// tracking tables for the creator-grant reconciler (authz/ownership), on
// connections of its own (at most two), so it never competes with the
// checks for the Store's pool.
type Tracking struct{ *mlflowdb.Tracking }

// OpenTracking opens MLflow's PostgreSQL tracking database at url.
// timeout bounds each query (0 means 2s).
func OpenTracking(url string, timeout time.Duration) (*Tracking, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open tracking database: %w", err)
	}
	return &Tracking{mlflowdb.NewTracking(db, store.PostgreSQL, timeout, undefinedTable)}, nil
}

// undefinedTable reports SQLSTATE 42P01: MLflow has not created the table yet.
func undefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}
