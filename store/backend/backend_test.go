package backend_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/backend"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
)

// TestNone: without a store there is nothing to open, read, write or
// migrate, and every opener says so rather than returning a typed nil.
func TestNone(t *testing.T) {
	cfg := backend.Config{Driver: backend.None}
	st, err := backend.Open(t.Context(), cfg, nil)
	require.NoError(t, err)
	assert.Nil(t, st)
	tr, err := backend.OpenTracking(cfg)
	require.NoError(t, err)
	assert.Nil(t, tr)
	_, err = backend.OpenAdmin(t.Context(), cfg)
	assert.EqualError(t, err, `backend: store.driver "none" has no tables to administer`)
	assert.EqualError(t, backend.Migrate(t.Context(), cfg), `backend: store.driver "none" has nothing to migrate`)
}

// TestSQLite opens every face of one SQLite store that migrate prepared.
func TestSQLite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mlflow.db")
	cfg := backend.Config{Driver: store.SQLite, SQLite: sqlite.Config{TrackingPath: p}}
	require.NoError(t, backend.Migrate(t.Context(), cfg))
	require.NoError(t, sqlite.CreateTrackingSchema(t.Context(), p))

	st, err := backend.Open(t.Context(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	require.NoError(t, st.Ping(t.Context()))

	a, err := backend.OpenAdmin(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(a.Close)
	created, err := a.CreateUser(t.Context(), "alice", true)
	require.NoError(t, err)
	assert.True(t, created)
	exists, admin, err := st.User(t.Context(), "alice")
	require.NoError(t, err)
	assert.True(t, exists && admin, "a write through OpenAdmin is read through Open")

	tr, err := backend.OpenTracking(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	_, err = tr.Lookup(t.Context(), store.TrackedName{Kind: store.Experiment, Name: "missing"})
	assert.ErrorIs(t, err, store.ErrNotFound)
}
