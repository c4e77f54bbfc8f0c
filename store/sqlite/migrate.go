package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

// AuthHead is the alembic revision of MLflow's auth schema that Migrate
// creates (3.10–3.11.x), stamped in alembic_version_auth when Migrate
// creates that table.
const AuthHead = mlflowdb.AuthHead

// Migrate creates the auth tables missing from the SQLite auth database
// (a path or DSN), mlflow-oidc-auth's group tables and
// alembic_version_auth stamped AuthHead if it is missing. It never alters
// an existing table and running it again is a no-op. SQLite needs no
// triggers: Watch polls PRAGMA data_version.
func Migrate(ctx context.Context, auth string) error {
	db, err := sql.Open(driverName, dsn(auth, 5000))
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w: %w", store.ErrUnavailable, err)
	}
	defer conn.Close()
	// IMMEDIATE takes the write lock up front, so two processes migrating
	// at once serialize instead of both seeing a table missing.
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if err := mlflowdb.Migrate(ctx, sqlTx{conn}, store.SQLite); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// CreateTrackingSchema creates, in the SQLite database at path (a path or
// DSN), the tables of MLflow's tracking schema that mlflow-authz reads, as
// MLflow's own migrations make them. It is for the demo, which runs
// without MLflow; in production MLflow owns those tables.
func CreateTrackingSchema(ctx context.Context, path string) error {
	db, err := sql.Open(driverName, dsn(path, 5000))
	if err != nil {
		return fmt.Errorf("sqlite: tracking schema: %w", err)
	}
	defer db.Close()
	for _, stmt := range mlflowdb.TrackingSchema(store.SQLite) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlite: tracking schema: %w", err)
		}
	}
	return nil
}
