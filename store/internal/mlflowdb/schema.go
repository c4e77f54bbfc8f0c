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
// PostgreSQL (mlflow/server/auth/db/migrations), in creation order. The names of
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

// trackingTables is MLflow's tracking DDL (3.10+, workspaces column
// present) for the tables mlflow-authz reads, as SQLAlchemy and alembic emit
// it for PostgreSQL (mlflow/store/tracking/dbmodels/models.py). Only the columns we read or
// that are NOT NULL are kept; names of keys and constraints are MLflow's.
var trackingTables = []string{
	`CREATE TABLE experiments (
		experiment_id SERIAL NOT NULL,
		name VARCHAR(256) NOT NULL,
		artifact_location VARCHAR(256),
		lifecycle_stage VARCHAR(32),
		creation_time BIGINT,
		last_update_time BIGINT,
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT experiment_pk PRIMARY KEY (experiment_id),
		CONSTRAINT uq_experiments_workspace_name UNIQUE (workspace, name),
		CONSTRAINT experiments_lifecycle_stage CHECK (lifecycle_stage IN ('active', 'deleted')))`,
	`CREATE TABLE runs (
		run_uuid VARCHAR(32) NOT NULL,
		name VARCHAR(250),
		source_type VARCHAR(20),
		user_id VARCHAR(256),
		status VARCHAR(20),
		start_time BIGINT,
		end_time BIGINT,
		lifecycle_stage VARCHAR(20),
		artifact_uri VARCHAR(200),
		experiment_id INTEGER,
		deleted_time BIGINT,
		CONSTRAINT run_pk PRIMARY KEY (run_uuid),
		FOREIGN KEY (experiment_id) REFERENCES experiments (experiment_id),
		CONSTRAINT runs_lifecycle_stage CHECK (lifecycle_stage IN ('active', 'deleted')))`,
	`CREATE TABLE trace_info (
		request_id VARCHAR(50) NOT NULL,
		experiment_id INTEGER NOT NULL,
		timestamp_ms BIGINT NOT NULL,
		execution_time_ms BIGINT,
		status VARCHAR(50) NOT NULL,
		client_request_id VARCHAR(50),
		request_preview VARCHAR(1000),
		response_preview VARCHAR(1000),
		CONSTRAINT trace_info_pk PRIMARY KEY (request_id),
		CONSTRAINT fk_trace_info_experiment_id FOREIGN KEY (experiment_id) REFERENCES experiments (experiment_id))`,
	`CREATE INDEX index_trace_info_experiment_id_timestamp_ms ON trace_info (experiment_id, timestamp_ms)`,
	`CREATE TABLE assessments (
		assessment_id VARCHAR(50) NOT NULL,
		trace_id VARCHAR(50) NOT NULL,
		name VARCHAR(250) NOT NULL,
		assessment_type VARCHAR(50) NOT NULL,
		value TEXT NOT NULL,
		created_timestamp BIGINT NOT NULL,
		last_updated_timestamp BIGINT NOT NULL,
		source_type VARCHAR(50) NOT NULL,
		valid BOOLEAN NOT NULL,
		CONSTRAINT assessments_pkey PRIMARY KEY (assessment_id),
		FOREIGN KEY (trace_id) REFERENCES trace_info (request_id) ON DELETE CASCADE)`,
	`CREATE TABLE logged_models (
		model_id VARCHAR(36) NOT NULL,
		experiment_id INTEGER NOT NULL,
		name VARCHAR(500) NOT NULL,
		artifact_location VARCHAR(1000) NOT NULL,
		creation_timestamp_ms BIGINT NOT NULL,
		last_updated_timestamp_ms BIGINT NOT NULL,
		status INTEGER NOT NULL,
		lifecycle_stage VARCHAR(32),
		model_type VARCHAR(500),
		source_run_id VARCHAR(32),
		status_message VARCHAR(1000),
		CONSTRAINT logged_models_pk PRIMARY KEY (model_id),
		CONSTRAINT fk_logged_models_experiment_id FOREIGN KEY (experiment_id) REFERENCES experiments (experiment_id) ON DELETE CASCADE,
		CONSTRAINT logged_models_lifecycle_stage_check CHECK (lifecycle_stage IN ('active', 'deleted')))`,
	`CREATE TABLE registered_models (
		name VARCHAR(256) NOT NULL,
		creation_time BIGINT,
		last_updated_time BIGINT,
		description VARCHAR(5000),
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT registered_model_pk PRIMARY KEY (workspace, name))`,
	`CREATE TABLE registered_model_tags (
		key VARCHAR(250) NOT NULL,
		value VARCHAR(5000),
		name VARCHAR(256) NOT NULL,
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT registered_model_tag_pk PRIMARY KEY (workspace, key, name),
		FOREIGN KEY (workspace, name) REFERENCES registered_models (workspace, name) ON UPDATE CASCADE)`,
	`CREATE TABLE model_versions (
		name VARCHAR(256) NOT NULL,
		version INTEGER NOT NULL,
		creation_time BIGINT,
		last_updated_time BIGINT,
		description VARCHAR(5000),
		user_id VARCHAR(256),
		current_stage VARCHAR(20),
		source VARCHAR(500),
		run_id VARCHAR(32),
		status VARCHAR(20),
		status_message VARCHAR(500),
		run_link VARCHAR(500),
		storage_location VARCHAR(500),
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT model_version_pk PRIMARY KEY (workspace, name, version),
		FOREIGN KEY (workspace, name) REFERENCES registered_models (workspace, name) ON UPDATE CASCADE)`,
	`CREATE TABLE jobs (
		id VARCHAR(36) NOT NULL,
		creation_time BIGINT NOT NULL,
		job_name VARCHAR(500) NOT NULL,
		params TEXT NOT NULL,
		timeout DOUBLE PRECISION,
		status INTEGER NOT NULL,
		result TEXT,
		retry_count INTEGER NOT NULL DEFAULT 0,
		last_update_time BIGINT NOT NULL,
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT jobs_pk PRIMARY KEY (id))`,
	`CREATE TABLE issues (
		issue_id VARCHAR(36) NOT NULL,
		experiment_id INTEGER NOT NULL,
		name VARCHAR(250),
		CONSTRAINT issues_pk PRIMARY KEY (issue_id),
		FOREIGN KEY (experiment_id) REFERENCES experiments (experiment_id) ON DELETE CASCADE)`,
	`CREATE TABLE endpoints (
		endpoint_id VARCHAR(36) NOT NULL,
		name VARCHAR(255),
		created_at BIGINT NOT NULL,
		last_updated_at BIGINT NOT NULL,
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT endpoints_pk PRIMARY KEY (endpoint_id),
		CONSTRAINT uq_endpoints_workspace_name UNIQUE (workspace, name))`,
	`CREATE TABLE secrets (
		secret_id VARCHAR(36) NOT NULL,
		secret_name VARCHAR(255) NOT NULL,
		created_at BIGINT NOT NULL,
		last_updated_at BIGINT NOT NULL,
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT secrets_pk PRIMARY KEY (secret_id),
		CONSTRAINT uq_secrets_workspace_secret_name UNIQUE (workspace, secret_name))`,
	`CREATE TABLE model_definitions (
		model_definition_id VARCHAR(36) NOT NULL,
		name VARCHAR(255) NOT NULL,
		created_at BIGINT NOT NULL,
		last_updated_at BIGINT NOT NULL,
		secret_id VARCHAR(36),
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT model_definitions_pk PRIMARY KEY (model_definition_id),
		FOREIGN KEY (secret_id) REFERENCES secrets (secret_id),
		CONSTRAINT uq_model_definitions_workspace_name UNIQUE (workspace, name))`,
	`CREATE TABLE scorers (
		experiment_id INTEGER NOT NULL,
		scorer_name VARCHAR(256) NOT NULL,
		scorer_id VARCHAR(36) NOT NULL,
		CONSTRAINT scorer_pk PRIMARY KEY (scorer_id),
		FOREIGN KEY (experiment_id) REFERENCES experiments (experiment_id) ON DELETE CASCADE)`,
	`CREATE INDEX index_scorers_experiment_id_scorer_name ON scorers (experiment_id, scorer_name)`,
	`CREATE TABLE scorer_versions (
		scorer_id VARCHAR(36) NOT NULL,
		scorer_version INTEGER NOT NULL,
		serialized_scorer TEXT NOT NULL,
		creation_time BIGINT,
		CONSTRAINT scorer_version_pk PRIMARY KEY (scorer_id, scorer_version),
		FOREIGN KEY (scorer_id) REFERENCES scorers (scorer_id) ON DELETE CASCADE)`,
	`CREATE TABLE online_scoring_configs (
		online_scoring_config_id VARCHAR(36) NOT NULL,
		scorer_id VARCHAR(36) NOT NULL,
		sample_rate DOUBLE PRECISION NOT NULL,
		experiment_id INTEGER NOT NULL,
		filter_string TEXT,
		CONSTRAINT online_scoring_config_pk PRIMARY KEY (online_scoring_config_id),
		FOREIGN KEY (scorer_id) REFERENCES scorers (scorer_id) ON DELETE CASCADE,
		FOREIGN KEY (experiment_id) REFERENCES experiments (experiment_id))`,
	`CREATE TABLE evaluation_datasets (
		dataset_id VARCHAR(36) NOT NULL,
		name VARCHAR(255) NOT NULL,
		workspace VARCHAR(63) NOT NULL DEFAULT 'default',
		CONSTRAINT evaluation_datasets_pk PRIMARY KEY (dataset_id))`,
	// Dataset ↔ experiment links (mlflow/store/tracking/dbmodels/models.py
	// SqlEntityAssociation): source EVALUATION_DATASET → destination EXPERIMENT.
	`CREATE TABLE entity_associations (
		association_id VARCHAR(36) NOT NULL,
		source_type VARCHAR(36) NOT NULL,
		source_id VARCHAR(36) NOT NULL,
		destination_type VARCHAR(36) NOT NULL,
		destination_id VARCHAR(36) NOT NULL,
		created_time BIGINT,
		CONSTRAINT entity_associations_pk PRIMARY KEY (source_type, source_id, destination_type, destination_id))`,
}

// TrackingSchema returns the statements that create MLflow's tracking
// tables that mlflow-authz reads, in d's flavour. MLflow's own migrations
// make them in production; the demo and the tests make them with these.
func TrackingSchema(d store.Dialect) []string {
	out := make([]string, len(trackingTables))
	for i, stmt := range trackingTables {
		out[i] = flavour(stmt, d)
	}
	return out
}

// AuthTables returns MLflow's auth tables at AuthHead followed by
// mlflow-oidc-auth's group tables, in creation order, in d's flavour;
// GroupTables returns the group tables alone.
func AuthTables(d store.Dialect) []Table {
	return flavourTables(append(authTables[:len(authTables):len(authTables)], groupTables...), d)
}

// GroupTables returns mlflow-oidc-auth's group tables; see AuthTables.
func GroupTables(d store.Dialect) []Table { return flavourTables(groupTables, d) }

func flavourTables(ts []Table, d store.Dialect) []Table {
	out := make([]Table, len(ts))
	for i, t := range ts {
		t.DDL = flavour(t.DDL, d)
		out[i] = t
	}
	return out
}

// sqliteTypes turns the PostgreSQL DDL above into what SQLAlchemy emits
// for SQLite: SERIAL is an INTEGER rowid key, TIMESTAMP is DATETIME and
// DOUBLE PRECISION is FLOAT; names of keys and constraints are the same.
var sqliteTypes = strings.NewReplacer("SERIAL NOT NULL", "INTEGER NOT NULL", "TIMESTAMP", "DATETIME", "DOUBLE PRECISION", "FLOAT")

func flavour(ddl string, d store.Dialect) string {
	if d == store.SQLite {
		return sqliteTypes.Replace(ddl)
	}
	return ddl
}
