package postgres

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// TestGrantsBatchGenericPlan: small batches run on the generic plan, which
// PostgreSQL would otherwise replace with a custom plan made afresh for
// nearly every batch (see genericPlanSQL), and the setting ends with the
// batch: the connection is back on the database's plan_cache_mode.
func TestGrantsBatchGenericPlan(t *testing.T) {
	url := storetest.Postgres(t)
	require.NoError(t, Migrate(t.Context(), url))
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.PostgreSQL, storetest.PostgresExec(t, url)))
	storetest.Must(t, storetest.PostgresExec(t, url),
		`INSERT INTO users (id, username, password_hash, is_admin) VALUES (1, 'alice', 'x', false)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('7', 1, 'EDIT')`)
	// One connection, so that every batch and the questions below share it.
	s, err := Open(t.Context(), Config{TrackingURL: url, MinConns: 1, MaxConns: 1, Notify: NotifyOff})
	require.NoError(t, err)
	t.Cleanup(s.Close)

	keys := []store.GrantsKey{
		{Username: "alice", Resource: store.Resource{Kind: store.Experiment, ID: "7"}},
		{Username: "alice", Resource: store.Resource{Kind: store.Experiment, ID: "8"}},
	}
	plans := func() (generic, custom int64) {
		t.Helper()
		require.NoError(t, s.auth.QueryRow(t.Context(),
			`SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`,
			s.batchSQL[store.Experiment].sql).Scan(&generic, &custom))
		return generic, custom
	}
	generic0, custom0 := plans() // the warm-up's
	const batches = 8            // past the 5 custom plans PostgreSQL tries before it may choose
	for range batches {
		got, err := s.GrantsBatch(t.Context(), keys)
		require.NoError(t, err)
		require.NotNil(t, got[0].User, "the batch reads alice's grant")
		assert.Equal(t, store.Edit, got[0].User.Permission)
		assert.Nil(t, got[1].User)
	}

	generic, custom := plans()
	assert.EqualValues(t, 0, custom-custom0, "custom plans of the batch statement")
	assert.EqualValues(t, batches, generic-generic0, "generic plans of the batch statement")

	var mode string
	require.NoError(t, s.auth.QueryRow(t.Context(), `SHOW plan_cache_mode`).Scan(&mode))
	assert.Equal(t, "auto", mode, "the connection's plan_cache_mode after the batches")
}
