package mlflowdb

import (
	"context"
	"sync"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// WorkspaceSQL, for the table named $1, reports whether it exists and
// whether it has MLflow 3.10's workspace column (two booleans).
var WorkspaceSQL = map[store.Dialect]string{
	store.PostgreSQL: `SELECT to_regclass($1) IS NOT NULL,
		EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'workspace')`,
	store.SQLite: `SELECT
		EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1),
		EXISTS (SELECT 1 FROM pragma_table_info($1) WHERE name = 'workspace')`,
}

// Workspaces remembers which tracking tables have MLflow 3.10's workspace
// column. A lookup by name adds workspace = 'default' where they do:
// without it two workspaces' same-named objects would be confused. The
// zero value is ready to use and safe for concurrent use.
type Workspaces struct {
	mu sync.Mutex
	ws map[string]bool // table → has the column (only once the table exists)
}

// Has reports whether table has the workspace column. read runs
// WorkspaceSQL for table; its answer is remembered only once the table
// exists, since MLflow may create it later.
func (w *Workspaces) Has(ctx context.Context, table string, read func(ctx context.Context, table string) (exists, ws bool, err error)) (bool, error) {
	w.mu.Lock()
	ws, known := w.ws[table]
	w.mu.Unlock()
	if known {
		return ws, nil
	}
	exists, ws, err := read(ctx, table)
	if err != nil {
		return false, err
	}
	if exists {
		w.mu.Lock()
		if w.ws == nil {
			w.ws = map[string]bool{}
		}
		w.ws[table] = ws
		w.mu.Unlock()
	}
	return ws, nil
}
