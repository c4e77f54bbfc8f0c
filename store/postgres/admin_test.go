package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestAdminConformance(t *testing.T) { storetest.AdminRun(t, openSplit) }

// TestAdminUnavailable: a write that cannot reach the database is
// ErrUnavailable (the admin API answers 503), not a refusal.
func TestAdminUnavailable(t *testing.T) {
	h, _ := open(t, storetest.Setup{}, postgres.Config{})
	a := h.Reader.(*postgres.Store)
	a.Close()
	_, _, err := a.SetGrant(t.Context(), store.Grantee{User: "alice"}, store.Resource{Kind: store.Experiment, ID: "1"}, store.Read)
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = a.ListGrants(t.Context(), store.GrantFilter{})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, a.DeleteUser(t.Context(), "alice"), store.ErrUnavailable)
}
