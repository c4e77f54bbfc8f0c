package storetest

import (
	"context"
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// OIDCAuthHead is the newest alembic revision of mlflow-oidc-auth's users
// database that OIDCAuthMigrations transcribes.
const OIDCAuthHead = "9c0d1e2f3456"

// OIDCAuthMigration is one alembic revision of mlflow-oidc-auth's users
// database, as the DDL SQLAlchemy emits for PostgreSQL.
type OIDCAuthMigration struct {
	Revision, DownRevision string
	Statements             []string
}

// OIDCAuthMigrations transcribes mlflow-oidc-auth's alembic migrations
// (mlflow_oidc_auth/db/migrations/versions/*.py, commit 56afd90b, tag
// v7.18.0) in revision order: the tables, columns, keys and constraint
// names its upgrade() functions create, including its backfills. Unnamed
// keys take PostgreSQL's default names, as SQLAlchemy leaves them.
var OIDCAuthMigrations = []OIDCAuthMigration{
	{"8606fa83a998", "", []string{
		`CREATE TABLE users (
	id SERIAL NOT NULL,
	username VARCHAR(255),
	display_name VARCHAR(255),
	password_hash VARCHAR(255),
	is_admin BOOLEAN,
	PRIMARY KEY (id),
	UNIQUE (username))`,
		`CREATE TABLE experiment_permissions (
	id SERIAL NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id_experiment_permissions FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_experiment_user UNIQUE (experiment_id, user_id))`,
		`CREATE TABLE registered_model_permissions (
	id SERIAL NOT NULL,
	name VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id_registered_model_permissions FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_name_user UNIQUE (name, user_id))`,
	}},
	{"2d5d40dd803f", "8606fa83a998", []string{
		`CREATE TABLE groups (
	id SERIAL NOT NULL,
	group_name VARCHAR(255) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (group_name))`,
		`CREATE TABLE user_groups (
	id SERIAL NOT NULL,
	user_id INTEGER NOT NULL,
	group_id INTEGER NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id_user_groups FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT fk_group_id_user_groups FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT unique_user_group UNIQUE (user_id, group_id))`,
	}},
	{"4ab210836965", "2d5d40dd803f", []string{
		`CREATE TABLE registered_model_group_permissions (
	id SERIAL NOT NULL,
	name VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_group_id_registered_model_group_permissions FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT unique_name_group UNIQUE (name, group_id))`,
		`CREATE TABLE experiment_group_permissions (
	id SERIAL NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_group_id_experiment_group_permissions FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT unique_experiment_group UNIQUE (experiment_id, group_id))`,
	}},
	{"913635c83867", "4ab210836965", []string{
		`ALTER TABLE registered_model_group_permissions ADD COLUMN prompt BOOLEAN`,
	}},
	{"8c1cf75c5314", "913635c83867", []string{
		`ALTER TABLE users ADD COLUMN is_service_account BOOLEAN`,
		`UPDATE users SET is_service_account = FALSE`,
	}},
	{"1ddf23934b63", "8c1cf75c5314", []string{
		`CREATE TABLE registered_model_group_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	prompt BOOLEAN,
	PRIMARY KEY (id),
	CONSTRAINT fk_group_id_registered_model_group_regex_permissions FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT unique_name_group_regex UNIQUE (regex, group_id, prompt))`,
		`CREATE TABLE experiment_group_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_group_id_experiment_group_regex_permissions FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT unique_experiment_group_regex UNIQUE (regex, group_id))`,
		`CREATE TABLE registered_model_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	prompt BOOLEAN,
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id_registered_model_regex_permissions FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_name_user_regex UNIQUE (regex, user_id, prompt))`,
		`CREATE TABLE experiment_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_user_id_experiment_regex_permissions FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_experiment_user_regex UNIQUE (regex, user_id))`,
	}},
	{"0565cf04c12e", "1ddf23934b63", []string{
		`ALTER TABLE users ADD COLUMN password_expiration TIMESTAMP WITHOUT TIME ZONE`,
	}},
	{"3c3272527ade", "0565cf04c12e", append([]string{
		`CREATE TABLE scorer_permissions (
	id SERIAL NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	scorer_name VARCHAR(256) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_scorer_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_scorer_user UNIQUE (experiment_id, scorer_name, user_id))`,
		`CREATE TABLE scorer_group_permissions (
	id SERIAL NOT NULL,
	experiment_id VARCHAR(255) NOT NULL,
	scorer_name VARCHAR(256) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_scorer_group_perm_group_id FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT unique_scorer_group UNIQUE (experiment_id, scorer_name, group_id))`},
		regexTables("scorer", "scorer", "unique_scorer_user_regex", "unique_scorer_group_regex")...)},
	{"6a7b8c9def01", "3c3272527ade", gatewayTables()},
	{"7b8c9d0ef123", "6a7b8c9def01", []string{
		`CREATE TABLE workspace_permissions (
	workspace VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255) NOT NULL,
	CONSTRAINT pk_workspace_permissions PRIMARY KEY (workspace, user_id),
	CONSTRAINT fk_workspace_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id))`,
		`CREATE TABLE workspace_group_permissions (
	workspace VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255) NOT NULL,
	CONSTRAINT pk_workspace_group_permissions PRIMARY KEY (workspace, group_id),
	CONSTRAINT fk_workspace_group_perm_group_id FOREIGN KEY (group_id) REFERENCES groups (id))`,
	}},
	{"8a9b0c1de234", "7b8c9d0ef123", []string{
		`CREATE TABLE workspace_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255) NOT NULL,
	CONSTRAINT fk_workspace_regex_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	PRIMARY KEY (id),
	CONSTRAINT uq_workspace_regex_user UNIQUE (regex, user_id))`,
		`CREATE TABLE workspace_group_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255) NOT NULL,
	CONSTRAINT fk_workspace_group_regex_perm_group_id FOREIGN KEY (group_id) REFERENCES groups (id),
	PRIMARY KEY (id),
	CONSTRAINT uq_workspace_regex_group UNIQUE (regex, group_id))`,
	}},
	{OIDCAuthHead, "8a9b0c1de234", []string{
		`CREATE TABLE user_identities (
	id SERIAL NOT NULL,
	provider_id VARCHAR(255) NOT NULL,
	subject VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT now() NOT NULL,
	last_login_at TIMESTAMP WITHOUT TIME ZONE,
	CONSTRAINT fk_user_identities_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	PRIMARY KEY (id),
	CONSTRAINT uq_user_identities_provider_subject UNIQUE (provider_id, subject))`,
		`CREATE INDEX ix_user_identities_user_id ON user_identities (user_id)`,
		`CREATE TABLE auth_sessions (
	id SERIAL NOT NULL,
	session_id VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	provider_id VARCHAR(255),
	created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT now() NOT NULL,
	last_seen_at TIMESTAMP WITHOUT TIME ZONE,
	expires_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	revoked_at TIMESTAMP WITHOUT TIME ZONE,
	encrypted_tokens TEXT,
	CONSTRAINT fk_auth_sessions_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	PRIMARY KEY (id))`,
		`CREATE UNIQUE INDEX ix_auth_sessions_session_id ON auth_sessions (session_id)`,
		`CREATE INDEX ix_auth_sessions_user_id ON auth_sessions (user_id)`,
		`CREATE INDEX ix_auth_sessions_expires_at ON auth_sessions (expires_at)`,
		`CREATE TABLE auth_state (
	id SERIAL NOT NULL,
	state VARCHAR(255) NOT NULL,
	nonce VARCHAR(255),
	code_verifier VARCHAR(255),
	provider_id VARCHAR(255),
	relay_state TEXT,
	created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT now() NOT NULL,
	expires_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (id))`,
		`CREATE UNIQUE INDEX ix_auth_state_state ON auth_state (state)`,
		`CREATE INDEX ix_auth_state_expires_at ON auth_state (expires_at)`,
		`ALTER TABLE users ADD COLUMN active BOOLEAN DEFAULT true NOT NULL`,
		`ALTER TABLE users ADD COLUMN managed_by VARCHAR(255) DEFAULT 'manual' NOT NULL`,
		`ALTER TABLE users ADD COLUMN external_id VARCHAR(255)`,
		`ALTER TABLE users ADD COLUMN created_at TIMESTAMP WITHOUT TIME ZONE`,
		`ALTER TABLE users ADD COLUMN updated_at TIMESTAMP WITHOUT TIME ZONE`,
		`CREATE UNIQUE INDEX ix_users_external_id ON users (external_id)`,
		`ALTER TABLE user_groups ADD COLUMN managed_by VARCHAR(255) DEFAULT 'manual' NOT NULL`,
		`ALTER TABLE groups ADD COLUMN external_id VARCHAR(255)`,
		`ALTER TABLE groups ADD COLUMN created_at TIMESTAMP WITHOUT TIME ZONE`,
		`ALTER TABLE groups ADD COLUMN updated_at TIMESTAMP WITHOUT TIME ZONE`,
		`CREATE UNIQUE INDEX ix_groups_external_id ON groups (external_id)`,
		`UPDATE users SET created_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP`,
		`UPDATE groups SET created_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP`,
		`INSERT INTO user_identities (provider_id, subject, user_id) SELECT 'default', users.username, users.id FROM users`,
	}},
}

// regexTables is the user and group regex tables of one resource kind
// (prefix) as mlflow-oidc-auth's migrations create them, with the
// constraint names of revision 3c3272527ade and 6a7b8c9def01 (short names
// such as fk_scorer_regex_perm_user_id).
func regexTables(prefix, short, userUnique, groupUnique string) []string {
	return []string{
		`CREATE TABLE ` + prefix + `_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_` + short + `_regex_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT ` + userUnique + ` UNIQUE (regex, user_id))`,
		`CREATE TABLE ` + prefix + `_group_regex_permissions (
	id SERIAL NOT NULL,
	regex VARCHAR(255) NOT NULL,
	priority INTEGER NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_` + short + `_group_regex_perm_group_id FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT ` + groupUnique + ` UNIQUE (regex, group_id))`,
	}
}

// gatewayTables is revision 6a7b8c9def01: four tables for each gateway
// kind. Their "id" columns hold the resource's name
// (after_request._set_can_manage_gateway_*_permission).
func gatewayTables() []string {
	var out []string
	for _, k := range []struct{ prefix, short, idCol, unique string }{
		{"gateway_secret", "gateway_secret", "secret_id", "secret"},
		{"gateway_endpoint", "gateway_endpoint", "endpoint_id", "endpoint"},
		{"gateway_model_definition", "gateway_model_def", "model_definition_id", "model_def"},
	} {
		out = append(out,
			`CREATE TABLE `+k.prefix+`_permissions (
	id SERIAL NOT NULL,
	`+k.idCol+` VARCHAR(255) NOT NULL,
	user_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_`+k.short+`_perm_user_id FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT unique_`+k.unique+`_user UNIQUE (`+k.idCol+`, user_id))`,
			`CREATE TABLE `+k.prefix+`_group_permissions (
	id SERIAL NOT NULL,
	`+k.idCol+` VARCHAR(255) NOT NULL,
	group_id INTEGER NOT NULL,
	permission VARCHAR(255),
	PRIMARY KEY (id),
	CONSTRAINT fk_`+k.short+`_group_perm_group_id FOREIGN KEY (group_id) REFERENCES groups (id),
	CONSTRAINT unique_`+k.unique+`_group UNIQUE (`+k.idCol+`, group_id))`)
		out = append(out, regexTables(k.prefix, k.short, "unique_"+k.unique+"_user_regex", "unique_"+k.unique+"_group_regex")...)
	}
	return out
}

// sqliteFlavour turns the PostgreSQL DDL above into what SQLAlchemy emits
// for SQLite.
var sqliteFlavour = strings.NewReplacer(
	"SERIAL NOT NULL", "INTEGER NOT NULL",
	"TIMESTAMP WITHOUT TIME ZONE", "DATETIME",
	"DEFAULT now()", "DEFAULT (CURRENT_TIMESTAMP)",
	"DEFAULT true", "DEFAULT 1",
)

// CreateOIDCAuthSchema runs mlflow-oidc-auth's migrations through exec, in
// d's flavour, and stamps its version table (alembic_version, its default
// OIDC_ALEMBIC_VERSION_TABLE) at OIDCAuthHead: the users database of a
// deployment that runs mlflow-oidc-auth today.
func CreateOIDCAuthSchema(ctx context.Context, d store.Dialect, exec ExecFunc) error {
	for _, m := range OIDCAuthMigrations {
		for _, stmt := range m.Statements {
			if d == store.SQLite {
				stmt = sqliteFlavour.Replace(stmt)
			}
			if err := exec(ctx, stmt); err != nil {
				return fmt.Errorf("storetest: mlflow-oidc-auth revision %s: %w\n%s", m.Revision, err, stmt)
			}
		}
	}
	for _, stmt := range []string{
		`CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))`,
		`INSERT INTO alembic_version (version_num) VALUES ('` + OIDCAuthHead + `')`,
	} {
		if err := exec(ctx, stmt); err != nil {
			return fmt.Errorf("storetest: mlflow-oidc-auth version table: %w", err)
		}
	}
	return nil
}
