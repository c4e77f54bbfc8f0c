package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// AuthHead is the alembic revision of MLflow's auth schema that Migrate
// creates (3.10–3.11.x), stamped in alembic_version_auth when Migrate
// creates that table.
const AuthHead = "2ed73881770d"

// authTables is MLflow's auth DDL at AuthHead, as alembic emits it for
// PostgreSQL (mlflow-permissions.md B§6), in creation order. The names of
// keys and constraints matter: MLflow's later migrations refer to them.
var authTables = []struct{ name, ddl string }{
	{"users", `CREATE TABLE users (
	id SERIAL NOT NULL,
	username VARCHAR(255),
	password_hash VARCHAR(255),
	is_admin BOOLEAN,
	PRIMARY KEY (id),
	UNIQUE (username))`},
	{"experiment_permissions", `CREATE TABLE experiment_permissions (
	id SERIAL NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_experiment_user UNIQUE (experiment_id, user_id))`},
	{"registered_model_permissions", `CREATE TABLE registered_model_permissions (
	id SERIAL NOT NULL,
	name VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	workspace VARCHAR(63) NOT NULL DEFAULT 'default',
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_workspace_name_user UNIQUE (workspace, name, user_id))`},
	{"scorer_permissions", `CREATE TABLE scorer_permissions (
	id SERIAL NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	scorer_name VARCHAR(256) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_scorer_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_scorer_user UNIQUE (experiment_id, scorer_name, user_id))`},
	{"gateway_secret_permissions", `CREATE TABLE gateway_secret_permissions (
	id SERIAL NOT NULL,
	secret_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_gateway_secret_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_secret_user UNIQUE (secret_id, user_id))`},
	{"gateway_endpoint_permissions", `CREATE TABLE gateway_endpoint_permissions (
	id SERIAL NOT NULL,
	endpoint_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_gateway_endpoint_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_endpoint_user UNIQUE (endpoint_id, user_id))`},
	{"gateway_model_definition_permissions", `CREATE TABLE gateway_model_definition_permissions (
	id SERIAL NOT NULL,
	model_definition_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_gateway_model_def_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_model_def_user UNIQUE (model_definition_id, user_id))`},
	{"workspace_permissions", `CREATE TABLE workspace_permissions (
	workspace VARCHAR(63) NOT NULL,
	user_id INTEGER NOT NULL REFERENCES users (id),
	permission VARCHAR(32) NOT NULL,
	CONSTRAINT workspace_permissions_pk PRIMARY KEY (workspace, user_id));
CREATE INDEX idx_workspace_permissions_user_id ON workspace_permissions (user_id);
CREATE INDEX idx_workspace_permissions_workspace ON workspace_permissions (workspace)`},
}

// groupTables is mlflow-oidc-auth's layout of group grants (the columns
// we read, plus the ones its ORM declares). They are not MLflow's, so they
// are created whenever missing.
var groupTables = []struct{ name, ddl string }{
	{"groups", `CREATE TABLE groups (
	id SERIAL NOT NULL,
	group_name VARCHAR(255) NOT NULL,
	external_id VARCHAR(255),
	created_at TIMESTAMP,
	updated_at TIMESTAMP,
	PRIMARY KEY (id),
	UNIQUE (group_name),
	UNIQUE (external_id))`},
	{"experiment_group_permissions", `CREATE TABLE experiment_group_permissions (
	id SERIAL NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	FOREIGN KEY (group_id) REFERENCES groups (id),
	UNIQUE (experiment_id, group_id))`},
	{"registered_model_group_permissions", `CREATE TABLE registered_model_group_permissions (
	id SERIAL NOT NULL,
	name VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	prompt BOOLEAN NOT NULL DEFAULT false,
	PRIMARY KEY (id),
	FOREIGN KEY (group_id) REFERENCES groups (id))`},
}

// WatchedTables are the auth tables whose changes notify NotifyChannel.
var WatchedTables = []string{
	"users", "experiment_permissions", "registered_model_permissions", "scorer_permissions",
	"gateway_secret_permissions", "gateway_endpoint_permissions", "gateway_model_definition_permissions",
	"groups", "experiment_group_permissions", "registered_model_group_permissions",
}

// olderAuthRevisions are MLflow auth revisions before AuthHead. On such a
// database MLflow's own alembic creates the newer tables; creating them
// here would make its upgrade fail, so Migrate leaves MLflow's tables alone.
var olderAuthRevisions = map[string]bool{"8606fa83a998": true, "0965eb92f5f0": true, "a1b2c3d4e5f6": true}

const notifyFunc = `CREATE OR REPLACE FUNCTION mlflow_authz_notify() RETURNS trigger
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
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return migrate(ctx, tx) })
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

func migrate(ctx context.Context, tx pgx.Tx) error {
	// Arbitrary constant key: "mlflow-authz" migrations, serialized.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7283519004)`); err != nil {
		return err
	}
	exists := func(table string) (bool, error) {
		var ok bool
		err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok)
		return ok, err
	}
	versioned, err := exists("alembic_version_auth")
	if err != nil {
		return err
	}
	createMLflow := true
	if versioned {
		var v string
		err := tx.QueryRow(ctx, `SELECT version_num FROM alembic_version_auth LIMIT 1`).Scan(&v)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		createMLflow = !olderAuthRevisions[v]
	}
	tables := groupTables
	if createMLflow {
		tables = append(authTables[:len(authTables):len(authTables)], groupTables...)
	} else if ok, err := exists("users"); err != nil {
		return err
	} else if !ok {
		return errors.New("alembic_version_auth is at an older revision but users is missing")
	}
	for _, t := range tables {
		ok, err := exists(t.name)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if _, err := tx.Exec(ctx, t.ddl); err != nil {
			return fmt.Errorf("create %s: %w", t.name, err)
		}
	}
	if !versioned {
		if _, err := tx.Exec(ctx, `CREATE TABLE alembic_version_auth (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_auth_pkc PRIMARY KEY (version_num))`); err != nil {
			return fmt.Errorf("create alembic_version_auth: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO alembic_version_auth (version_num) VALUES ($1)`, AuthHead); err != nil {
			return fmt.Errorf("stamp alembic_version_auth: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, notifyFunc); err != nil {
		return fmt.Errorf("create notify function: %w", err)
	}
	for _, t := range WatchedTables {
		ok, err := exists(t)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		// Statement-level, so a bulk revoke is one notification. DROP and
		// CREATE (not CREATE OR REPLACE TRIGGER) works on PostgreSQL < 14.
		ident := pgx.Identifier{t}.Sanitize()
		if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS mlflow_authz_notify ON `+ident); err != nil {
			return fmt.Errorf("trigger on %s: %w", t, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TRIGGER mlflow_authz_notify
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON `+ident+`
	FOR EACH STATEMENT EXECUTE FUNCTION mlflow_authz_notify()`); err != nil {
			return fmt.Errorf("trigger on %s: %w", t, err)
		}
	}
	return nil
}
