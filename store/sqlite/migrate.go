package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// AuthHead is the alembic revision of MLflow's auth schema that Migrate
// creates (3.10–3.11.x), stamped in alembic_version_auth when Migrate
// creates that table.
const AuthHead = "2ed73881770d"

var authTables = []struct{ name, ddl string }{
	{"users", `CREATE TABLE users (
	id INTEGER NOT NULL,
	username VARCHAR(255),
	password_hash VARCHAR(255),
	is_admin BOOLEAN,
	PRIMARY KEY (id),
	UNIQUE (username))`},
	{"experiment_permissions", `CREATE TABLE experiment_permissions (
	id INTEGER NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_experiment_user UNIQUE (experiment_id, user_id))`},
	{"registered_model_permissions", `CREATE TABLE registered_model_permissions (
	id INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	workspace VARCHAR(63) NOT NULL DEFAULT 'default',
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_workspace_name_user UNIQUE (workspace, name, user_id))`},
	{"scorer_permissions", `CREATE TABLE scorer_permissions (
	id INTEGER NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	scorer_name VARCHAR(256) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_scorer_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_scorer_user UNIQUE (experiment_id, scorer_name, user_id))`},
	{"gateway_secret_permissions", `CREATE TABLE gateway_secret_permissions (
	id INTEGER NOT NULL,
	secret_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_gateway_secret_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_secret_user UNIQUE (secret_id, user_id))`},
	{"gateway_endpoint_permissions", `CREATE TABLE gateway_endpoint_permissions (
	id INTEGER NOT NULL,
	endpoint_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_gateway_endpoint_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_endpoint_user UNIQUE (endpoint_id, user_id))`},
	{"gateway_model_definition_permissions", `CREATE TABLE gateway_model_definition_permissions (
	id INTEGER NOT NULL,
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
	id INTEGER NOT NULL,
	group_name VARCHAR(255) NOT NULL,
	external_id VARCHAR(255),
	created_at DATETIME,
	updated_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (group_name),
	UNIQUE (external_id))`},
	{"experiment_group_permissions", `CREATE TABLE experiment_group_permissions (
	id INTEGER NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	FOREIGN KEY (group_id) REFERENCES groups (id),
	UNIQUE (experiment_id, group_id))`},
	{"registered_model_group_permissions", `CREATE TABLE registered_model_group_permissions (
	id INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	prompt BOOLEAN NOT NULL DEFAULT false,
	PRIMARY KEY (id),
	FOREIGN KEY (group_id) REFERENCES groups (id))`},
}

// olderAuthRevisions are MLflow auth revisions before AuthHead; on them
// MLflow's own alembic creates the newer tables, so Migrate leaves them.
var olderAuthRevisions = map[string]bool{"8606fa83a998": true, "0965eb92f5f0": true, "a1b2c3d4e5f6": true}

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
		createMLflow = !olderAuthRevisions[v]
	}
	tables := groupTables
	if createMLflow {
		tables = append(authTables[:len(authTables):len(authTables)], groupTables...)
	}
	for _, t := range tables {
		ok, err := exists(t.name)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		for _, stmt := range strings.Split(t.ddl, ";") {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("create %s: %w", t.name, err)
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
