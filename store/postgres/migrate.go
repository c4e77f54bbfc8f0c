package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

// AuthHead is the alembic revision of MLflow's auth schema that Migrate
// creates (3.10–3.11.x), stamped in alembic_version_auth when Migrate
// creates that table.
const AuthHead = mlflowdb.AuthHead

// WatchedTables returns the auth tables whose changes notify
// NotifyChannel once Migrate has run: every table that mlflow-authz reads
// grants from (mlflowdb.NotifyTables), where it exists.
func WatchedTables() []string { return mlflowdb.NotifyTables() }

// triggerName names both the notify function and the trigger on every
// watched table.
const triggerName = "mlflow_authz_notify"

const notifyFunc = `CREATE OR REPLACE FUNCTION ` + triggerName + `() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('` + NotifyChannel + `', TG_TABLE_NAME);
	RETURN NULL;
END
$$`

// Migrate prepares the auth database at authURL: it creates the auth tables
// that are missing (never altering an existing one, never touching tracking
// tables), mlflow-oidc-auth's group tables, alembic_version_auth stamped
// AuthHead if that table is missing, and the NOTIFY triggers. It runs in one
// transaction under an advisory lock, so replicas may run it at once, and
// running it again is a no-op.
func Migrate(ctx context.Context, authURL string) error {
	conn, err := pgx.Connect(ctx, authURL)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w: %w", store.ErrUnavailable, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Arbitrary constant key: "mlflow-authz" migrations, serialized.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7283519004)`); err != nil {
			return err
		}
		if err := mlflowdb.Migrate(ctx, pgTx{tx}, store.PostgreSQL); err != nil {
			return err
		}
		return installTriggers(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// installTriggers (re)creates the notify function and a trigger on every
// watched table that exists. Run again after an MLflow upgrade that added
// a table, it covers that table too.
func installTriggers(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, notifyFunc); err != nil {
		return fmt.Errorf("create notify function: %w", err)
	}
	for _, t := range WatchedTables() {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			continue
		}
		// Statement-level, so a bulk revoke is one notification. DROP and
		// CREATE (not CREATE OR REPLACE TRIGGER) works on PostgreSQL < 14.
		ident := pgx.Identifier{t}.Sanitize()
		if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+triggerName+` ON `+ident); err != nil {
			return fmt.Errorf("trigger on %s: %w", t, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TRIGGER `+triggerName+`
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON `+ident+`
	FOR EACH STATEMENT EXECUTE FUNCTION `+triggerName+`()`); err != nil {
			return fmt.Errorf("trigger on %s: %w", t, err)
		}
	}
	return nil
}
