package mlflowdb

import (
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// AuthHead is the alembic revision of MLflow's auth schema that the
// backends' Migrate creates (3.10–3.11.x), stamped in alembic_version_auth
// when Migrate creates that table.
const AuthHead = "2ed73881770d"

// OlderAuthRevisions are MLflow auth revisions before AuthHead. On such a
// database MLflow's own alembic creates the newer tables; creating them
// here would make its upgrade fail, so Migrate leaves MLflow's tables alone.
var OlderAuthRevisions = map[string]bool{"8606fa83a998": true, "0965eb92f5f0": true, "a1b2c3d4e5f6": true}

// Table is one CREATE TABLE statement.
type Table struct{ Name, DDL string }

// authTables is MLflow's auth DDL at AuthHead, as alembic emits it for
// PostgreSQL (mlflow-permissions.md B§6), in creation order. The names of
// keys and constraints matter: MLflow's later migrations refer to them.
var authTables = []Table{
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
var groupTables = []Table{
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

// AuthTables returns MLflow's auth tables at AuthHead followed by
// mlflow-oidc-auth's group tables, in creation order, in d's flavour;
// GroupTables returns the group tables alone. For SQLite the DDL is what
// SQLAlchemy emits there: SERIAL is an INTEGER rowid key and TIMESTAMP is
// DATETIME; names of keys and constraints are the same.
func AuthTables(d store.Dialect) []Table {
	return flavour(append(authTables[:len(authTables):len(authTables)], groupTables...), d)
}

// GroupTables returns mlflow-oidc-auth's group tables; see AuthTables.
func GroupTables(d store.Dialect) []Table { return flavour(groupTables, d) }

func flavour(ts []Table, d store.Dialect) []Table {
	out := make([]Table, len(ts))
	for i, t := range ts {
		if d == store.SQLite {
			t.DDL = strings.NewReplacer("SERIAL NOT NULL", "INTEGER NOT NULL", "TIMESTAMP", "DATETIME").Replace(t.DDL)
		}
		out[i] = t
	}
	return out
}
