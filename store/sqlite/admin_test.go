package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestAdminConformance(t *testing.T) { storetest.AdminRun(t, openSplit) }

// TestAdminConformanceOneFile: tracking and auth tables in one file.
func TestAdminConformanceOneFile(t *testing.T) {
	storetest.AdminRun(t, func(t *testing.T, s storetest.Setup) storetest.Harness {
		p := filepath.Join(t.TempDir(), "mlflow.db")
		execAuth, execTracking := prepare(t, s, p, p)
		st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: p})
		require.NoError(t, err)
		t.Cleanup(st.Close)
		return storetest.Harness{Reader: st, ExecAuth: execAuth, ExecTracking: execTracking, Watch: st.Watch, QueryAuth: queryOn(t, p)}
	})
}

// TestAdminUnavailable: a write that cannot reach the database is
// ErrUnavailable (the admin API answers 503), not a refusal.
func TestAdminUnavailable(t *testing.T) {
	h := openSplit(t, storetest.Setup{})
	a := h.Reader.(*sqlite.Store)
	a.Close()
	_, _, err := a.SetGrant(t.Context(), store.Grantee{User: "alice"}, store.Resource{Kind: store.Experiment, ID: "1"}, store.Read)
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = a.ListGrants(t.Context(), store.GrantFilter{})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, a.DeleteUser(t.Context(), "alice"), store.ErrUnavailable)
}
