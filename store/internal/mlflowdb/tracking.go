package mlflowdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Tracking reads the experiments and registered models of MLflow's tracking
// tables over database/sql, on connections of its own (at most two), so the
// creator-grant reconciler never competes with the checks for a store's
// pool. The backends open it with their driver.
type Tracking struct {
	db      *sql.DB
	dialect store.Dialect
	timeout time.Duration
	missing func(error) bool
	ws      Workspaces
}

// NewTracking reads through db, whose SQL is d's. timeout bounds each query
// (0 means 2s). missing reports whether an error says that a table does not
// exist: MLflow has not created it yet, so nothing is in it.
func NewTracking(db *sql.DB, d store.Dialect, timeout time.Duration, missing func(error) bool) *Tracking {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	return &Tracking{db: db, dialect: d, timeout: timeout, missing: missing}
}

// Close releases the connections.
func (t *Tracking) Close() error { return t.db.Close() }

// trackedQueries read, per kind, a tracked object by its name: its id, when
// it was made and last changed. Gateway tables and registered models and
// experiments have MLflow 3.10's workspace column; scorers belong to their
// experiment. A scorer was made when its first version was.
var trackedQueries = map[store.ResourceKind]struct{ table, sql string }{
	store.Experiment: {"experiments",
		`SELECT CAST(experiment_id AS TEXT), creation_time, last_update_time FROM experiments WHERE name = $1`},
	store.RegisteredModel: {"registered_models",
		`SELECT name, creation_time, last_updated_time FROM registered_models WHERE name = $1`},
	store.Scorer: {"scorers",
		`SELECT CAST(s.experiment_id AS TEXT), MIN(v.creation_time), MAX(v.creation_time) FROM scorers s
		LEFT JOIN scorer_versions v ON v.scorer_id = s.scorer_id
		WHERE s.scorer_name = $1 AND CAST(s.experiment_id AS TEXT) = $2 GROUP BY s.experiment_id`},
	store.GatewaySecret: {"secrets",
		`SELECT secret_id, created_at, last_updated_at FROM secrets WHERE secret_name = $1`},
	store.GatewayEndpoint: {"endpoints",
		`SELECT endpoint_id, created_at, last_updated_at FROM endpoints WHERE name = $1`},
	store.GatewayModelDefinition: {"model_definitions",
		`SELECT model_definition_id, created_at, last_updated_at FROM model_definitions WHERE name = $1`},
}

// Lookup returns the object n names, in n's workspace, or
// store.ErrNotFound.
func (t *Tracking) Lookup(ctx context.Context, n store.TrackedName) (store.TrackedObject, error) {
	qs, ok := trackedQueries[n.Kind]
	if !ok {
		return store.TrackedObject{}, fmt.Errorf("%s: lookup: unsupported resource kind %q", t.dialect, n.Kind)
	}
	table, q, args := qs.table, qs.sql, []any{n.Name}
	if n.Kind == store.Scorer {
		args = append(args, n.Experiment)
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if n.Kind != store.Scorer {
		ws, err := t.hasWorkspace(ctx, table)
		if err != nil {
			return store.TrackedObject{}, t.err(table, err)
		}
		if ws {
			// Names are unique per workspace: look in the one the request
			// acted in (default while workspaces are off, where
			// mlflow-authz removes X-MLFLOW-WORKSPACE).
			args = append(args, store.Resource{Workspace: n.Workspace}.WorkspaceOf())
			q += fmt.Sprintf(` AND workspace = $%d`, len(args))
		}
	}
	var (
		o                store.TrackedObject
		created, updated sql.NullInt64
	)
	if err := t.db.QueryRowContext(ctx, q, args...).Scan(&o.ID, &created, &updated); err != nil {
		return store.TrackedObject{}, t.err(table, err)
	}
	if created.Valid {
		o.Created, o.HasCreated = time.UnixMilli(created.Int64), true
	}
	if updated.Valid {
		o.Updated, o.HasUpdated = time.UnixMilli(updated.Int64), true
	}
	return o, nil
}

func (t *Tracking) hasWorkspace(ctx context.Context, table string) (bool, error) {
	return t.ws.Has(ctx, table, func(ctx context.Context, table string) (exists, ws bool, err error) {
		err = t.db.QueryRowContext(ctx, WorkspaceSQL[t.dialect], table).Scan(&exists, &ws)
		return exists, ws, err
	})
}

func (t *Tracking) err(table string, err error) error {
	if errors.Is(err, sql.ErrNoRows) || t.missing(err) {
		return store.ErrNotFound
	}
	return fmt.Errorf("%s: lookup %s: %w: %w", t.dialect, table, store.ErrUnavailable, err)
}

// NameSQL reads the name of an object by its id from MLflow's tracking
// tables, for the lookups whose answer is a name. An experiment id is
// bound as its canonical integer (CanonicalExperimentID).
var NameSQL = map[store.Lookup]string{
	store.NameOfExperiment:             `SELECT name FROM experiments WHERE experiment_id = $1`,
	store.NameOfGatewaySecret:          `SELECT secret_name FROM secrets WHERE secret_id = $1`,
	store.NameOfGatewayEndpoint:        `SELECT name FROM endpoints WHERE endpoint_id = $1`,
	store.NameOfGatewayModelDefinition: `SELECT name FROM model_definitions WHERE model_definition_id = $1`,
}

// NameKey returns the argument NameSQL binds for key, and false when key
// cannot name such an object (a non-canonical experiment id).
func NameKey(l store.Lookup, key string) (any, bool) {
	if l == store.NameOfExperiment {
		id, ok := CanonicalExperimentID(key)
		return int64(id), ok
	}
	return key, true
}

// workspaceTables are the tracking tables of the workspace-dependent
// lookups, with the column the key is matched against. Their workspace
// column (MLflow 3.10, migration 1b5f0d9ad7c1) is where a resource lives;
// names are unique per workspace.
var workspaceTables = map[store.Lookup]struct{ table, col, result string }{
	store.ExperimentByNameIn:                {"experiments", "name", "CAST(experiment_id AS TEXT)"},
	store.GatewayEndpointByNameIn:           {"endpoints", "name", "endpoint_id"},
	store.WorkspaceOfExperiment:             {"experiments", "experiment_id", "workspace"},
	store.WorkspaceOfGatewaySecret:          {"secrets", "secret_id", "workspace"},
	store.WorkspaceOfGatewayEndpoint:        {"endpoints", "endpoint_id", "workspace"},
	store.WorkspaceOfGatewayModelDefinition: {"model_definitions", "model_definition_id", "workspace"},
}

// WorkspaceTable returns the table a workspace-dependent lookup reads,
// whose workspace column the backend checks (WorkspaceSQL); ok is false
// for other lookups.
func WorkspaceTable(l store.Lookup) (table string, ok bool) {
	t, ok := workspaceTables[l]
	return t.table, ok
}

// WorkspaceQuery returns the query and arguments of a workspace-dependent
// lookup of key, given whether its table has the workspace column.
// Without the column every row is in the default workspace (MLflow before
// 3.10). found is false when nothing can match: a key of another
// workspace there, a non-canonical experiment id, a key without a
// workspace.
func WorkspaceQuery(l store.Lookup, key string, hasColumn bool) (q string, args []any, found bool) {
	t := workspaceTables[l]
	result := t.result
	if result == "workspace" && !hasColumn {
		result = "'" + store.DefaultWorkspace + "'"
	}
	q = `SELECT ` + result + ` FROM ` + t.table + ` WHERE ` + t.col + ` = $1`
	switch l {
	case store.ExperimentByNameIn, store.GatewayEndpointByNameIn:
		ws, name, ok := store.SplitWorkspaceKey(key)
		if !ok {
			return "", nil, false
		}
		if !hasColumn {
			return q, []any{name}, ws == store.DefaultWorkspace
		}
		return q + ` AND workspace = $2`, []any{name, ws}, true
	case store.WorkspaceOfExperiment:
		id, ok := CanonicalExperimentID(key)
		return q, []any{int64(id)}, ok
	}
	return q, []any{key}, true
}
