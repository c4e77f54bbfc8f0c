package storetest

import (
	"context"
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

// ExecFunc runs one SQL statement; each backend's test adapts its driver.
type ExecFunc func(ctx context.Context, sql string, args ...any) error

// CreateTrackingSchema creates MLflow's tracking tables that mlflow-authz
// reads, in d's flavour, through exec.
func CreateTrackingSchema(ctx context.Context, d store.Dialect, exec ExecFunc) error {
	for _, stmt := range mlflowdb.TrackingSchema(d) {
		if err := exec(ctx, stmt); err != nil {
			return fmt.Errorf("storetest: tracking schema: %w\n%s", err, stmt)
		}
	}
	return nil
}

// CreateAuthSchema creates, through exec, MLflow's auth tables at
// mlflowdb.AuthHead and mlflow-oidc-auth's group tables as their own
// migrations make them: a database on which `mlflow-authz migrate` never
// ran, so without the change-notification triggers.
func CreateAuthSchema(ctx context.Context, d store.Dialect, exec ExecFunc) error {
	for _, t := range mlflowdb.AuthTables(d) {
		for _, stmt := range strings.Split(t.DDL, ";") {
			if err := exec(ctx, stmt); err != nil {
				return fmt.Errorf("storetest: auth schema: %w\n%s", err, stmt)
			}
		}
	}
	return nil
}
