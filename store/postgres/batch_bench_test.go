package postgres_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// BenchmarkGrantsRefresh reads the grants of 64 (user, experiment) keys one
// query at a time, as a miss does, and in batches of 64, 16 and 4 keys (one
// statement each), as the cache's background re-reads do (a round at a
// replica's usual rate gathers a few to a few dozen keys a kind), on MLflow's
// schema with mlflow-oidc-auth's group tables and 1,000 experiments.
// db-cpu-µs/key is the server's CPU (every backend's) per key read: what the
// database pays for keeping a cache fresh.
func BenchmarkGrantsRefresh(b *testing.B) {
	st := openTracking(b,
		`INSERT INTO users (username, password_hash, is_admin) SELECT 'user' || i, 'x', false FROM generate_series(1, 100) i`,
		`INSERT INTO experiments (name, lifecycle_stage) SELECT 'exp' || i, 'active' FROM generate_series(1, 1000) i`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) SELECT e::text, u, 'READ' FROM generate_series(1, 1000) e, generate_series(1, 100) u WHERE e % 100 = u % 100`,
		`INSERT INTO groups (group_name) SELECT 'team-' || i FROM generate_series(1, 20) i`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) SELECT e::text, 1 + e % 20, 'READ' FROM generate_series(1, 1000) e`,
	)
	keys := make([]store.GrantsKey, 64)
	for i := range keys {
		keys[i] = store.GrantsKey{Username: fmt.Sprintf("user%d", 1+i%100), Resource: store.Resource{Kind: store.Experiment, ID: strconv.Itoa(1 + i*13%1000)}}
	}
	b.Run("one-by-one", func(b *testing.B) {
		db0 := storetest.PostgresCPU(b)
		authztest.LoopCPU(b, func() {
			for _, k := range keys {
				if _, err := st.Grants(b.Context(), k.Username, k.Resource); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.ReportMetric(float64((storetest.PostgresCPU(b)-db0).Microseconds())/float64(b.N*len(keys)), "db-cpu-µs/key")
	})
	for _, n := range []int{64, 16, 4} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			db0 := storetest.PostgresCPU(b)
			authztest.LoopCPU(b, func() {
				if _, err := st.GrantsBatch(b.Context(), keys[:n]); err != nil {
					b.Fatal(err)
				}
			})
			b.ReportMetric(float64((storetest.PostgresCPU(b)-db0).Microseconds())/float64(b.N*n), "db-cpu-µs/key")
		})
	}
}

// openTracking opens a store on a fresh database with the auth tables
// (Migrate) and MLflow's tracking tables in one, after running seed there.
func openTracking(t testing.TB, seed ...string) *postgres.Store {
	url := storetest.Postgres(t)
	exec := storetest.PostgresExec(t, url)
	require.NoError(t, postgres.Migrate(t.Context(), url))
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.PostgreSQL, exec))
	storetest.Must(t, exec, seed...)
	st, err := postgres.Open(t.Context(), postgres.Config{TrackingURL: url})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}
