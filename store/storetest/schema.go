package storetest

import (
	"context"
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// ExecFunc runs one SQL statement; each backend's test adapts its driver.
type ExecFunc func(ctx context.Context, sql string, args ...any) error

// trackingPostgres is MLflow's tracking DDL (3.10+, workspaces column
// present) for the tables mlflow-authz reads, as SQLAlchemy and alembic emit
// it for PostgreSQL (mlflow-permissions.md B§8). Only the columns we read or
// that are NOT NULL are kept; names of keys and constraints are MLflow's.
var trackingPostgres = []string{
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

// CreateTrackingSchema creates MLflow's tracking tables that mlflow-authz
// reads, in d's flavour, through exec.
func CreateTrackingSchema(ctx context.Context, d store.Dialect, exec ExecFunc) error {
	for _, stmt := range trackingPostgres {
		if d == store.SQLite {
			stmt = sqliteFlavour(stmt)
		}
		if err := exec(ctx, stmt); err != nil {
			return fmt.Errorf("storetest: tracking schema: %w\n%s", err, stmt)
		}
	}
	return nil
}

// sqliteFlavour turns the PostgreSQL DDL above into what SQLAlchemy emits
// for SQLite: SERIAL becomes an INTEGER rowid key.
func sqliteFlavour(stmt string) string {
	r := []struct{ from, to string }{
		{"experiment_id SERIAL NOT NULL", "experiment_id INTEGER NOT NULL"},
		{"DOUBLE PRECISION", "FLOAT"},
	}
	for _, x := range r {
		stmt = strings.ReplaceAll(stmt, x.from, x.to)
	}
	return stmt
}
