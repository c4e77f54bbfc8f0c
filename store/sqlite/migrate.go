package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

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
	if err := migrate(ctx, conn); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

func migrate(ctx context.Context, conn *sql.Conn) error {
	exists := func(table string) (bool, error) {
		var n int
		err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n)
		return n > 0, err
	}
	versioned, err := exists("alembic_version_auth")
	if err != nil {
		return err
	}
	createMLflow := true
	if versioned {
		var v string
		err := conn.QueryRowContext(ctx, `SELECT version_num FROM alembic_version_auth LIMIT 1`).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		createMLflow = !mlflowdb.OlderAuthRevisions[v]
	}
	tables := mlflowdb.GroupTables(true)
	if createMLflow {
		tables = mlflowdb.AuthTables(true)
	}
	for _, t := range tables {
		ok, err := exists(t.Name)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		for _, stmt := range strings.Split(t.DDL, ";") {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("create %s: %w", t.Name, err)
			}
		}
	}
	if !versioned {
		if _, err := conn.ExecContext(ctx, `CREATE TABLE alembic_version_auth (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_auth_pkc PRIMARY KEY (version_num))`); err != nil {
			return fmt.Errorf("create alembic_version_auth: %w", err)
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO alembic_version_auth (version_num) VALUES (?)`, AuthHead); err != nil {
			return fmt.Errorf("stamp alembic_version_auth: %w", err)
		}
	}
	return nil
}
