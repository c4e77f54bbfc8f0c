package sqlite_test

import (
	"cmp"
	"context"
	"database/sql"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func prepare(t *testing.T, s storetest.Setup, trackingPath, authPath string) (execAuth, execTracking storetest.ExecFunc) {
	t.Helper()
	execAuth, execTracking = storetest.SQLiteExec(t, authPath), storetest.SQLiteExec(t, trackingPath)
	storetest.PrepareAuth(t, s, store.SQLite, execAuth, storetest.SQLiteQuery(t, authPath), func(ctx context.Context) error { return sqlite.Migrate(ctx, authPath) })
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.SQLite, execTracking))
	return execAuth, execTracking
}

// open prepares cfg's databases (one file when AuthPath is empty) as s
// says and opens a store on them.
func open(t *testing.T, s storetest.Setup, cfg sqlite.Config) storetest.Harness {
	t.Helper()
	auth := cmp.Or(cfg.AuthPath, cfg.TrackingPath)
	execAuth, execTracking := prepare(t, s, cfg.TrackingPath, auth)
	st, err := sqlite.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return storetest.Harness{Reader: st, ExecAuth: execAuth, ExecTracking: execTracking, Watch: st.Watch, QueryAuth: storetest.SQLiteQuery(t, auth),
		OneDatabase: auth == cfg.TrackingPath}
}

func openSplit(t *testing.T, s storetest.Setup) storetest.Harness {
	dir := t.TempDir()
	tp, ap := filepath.Join(dir, "mlflow.db"), filepath.Join(dir, "basic_auth.db")
	return open(t, s, sqlite.Config{TrackingPath: tp, AuthPath: ap, PollInterval: 20 * time.Millisecond})
}

// openOneFile keeps both in one SQLite file, as MLflow may.
func openOneFile(t *testing.T, s storetest.Setup) storetest.Harness {
	return open(t, s, sqlite.Config{TrackingPath: filepath.Join(t.TempDir(), "mlflow.db")})
}

func TestConformance(t *testing.T) { storetest.Run(t, openSplit) }

// TestConformanceOneFile: MLflow may keep both in one SQLite file.
func TestConformanceOneFile(t *testing.T) { storetest.Run(t, openOneFile) }

func names(t *testing.T, path, q string) []string {
	t.Helper()
	out, err := storetest.SQLiteQuery(t, path)(t.Context(), q)
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

func TestMigrate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "auth.db")
	require.NoError(t, sqlite.Migrate(t.Context(), p))
	tablesQ := `SELECT name FROM sqlite_master WHERE type = 'table'`
	assert.Equal(t, []string{
		"alembic_version_auth", "experiment_group_permissions", "experiment_permissions",
		"gateway_endpoint_permissions", "gateway_model_definition_permissions", "gateway_secret_permissions",
		"groups", "registered_model_group_permissions", "registered_model_permissions", "scorer_permissions",
		"users", "workspace_permissions",
	}, names(t, p, tablesQ))
	assert.Equal(t, []string{"idx_workspace_permissions_user_id", "idx_workspace_permissions_workspace"},
		names(t, p, `SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'`))
	assert.Equal(t, []string{sqlite.AuthHead}, names(t, p, `SELECT version_num FROM alembic_version_auth`))

	exec := storetest.SQLiteExec(t, p)
	require.NoError(t, exec(t.Context(), `INSERT INTO users (username, is_admin) VALUES ('alice', 1)`))
	schema := names(t, p, `SELECT sql FROM sqlite_master WHERE sql IS NOT NULL`)
	require.NoError(t, sqlite.Migrate(t.Context(), p), "second run")
	assert.Equal(t, schema, names(t, p, `SELECT sql FROM sqlite_master WHERE sql IS NOT NULL`))
	assert.Equal(t, []string{"alice"}, names(t, p, `SELECT username FROM users`))
	// The INTEGER primary key autoincrements, as SERIAL does.
	assert.Equal(t, []string{"1"}, names(t, p, `SELECT CAST(id AS TEXT) FROM users`))
}

func TestMigrateLeavesExistingTables(t *testing.T) {
	p := filepath.Join(t.TempDir(), "auth.db")
	exec := storetest.SQLiteExec(t, p)
	for _, s := range []string{
		`CREATE TABLE users (id INTEGER NOT NULL, username VARCHAR(255), password_hash VARCHAR(255), is_admin BOOLEAN, extra TEXT, PRIMARY KEY (id), UNIQUE (username))`,
		`CREATE TABLE alembic_version_auth (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_auth_pkc PRIMARY KEY (version_num))`,
		`INSERT INTO alembic_version_auth VALUES ('8606fa83a998')`,
		`INSERT INTO users (username, extra) VALUES ('alice', 'keep')`,
	} {
		require.NoError(t, exec(t.Context(), s))
	}
	require.NoError(t, sqlite.Migrate(t.Context(), p))
	assert.Equal(t, []string{"alembic_version_auth", "experiment_group_permissions", "groups", "registered_model_group_permissions", "users"},
		names(t, p, `SELECT name FROM sqlite_master WHERE type = 'table'`))
	assert.Equal(t, []string{"alice keep"}, names(t, p, `SELECT username || ' ' || extra FROM users`))
	assert.Equal(t, []string{"8606fa83a998"}, names(t, p, `SELECT version_num FROM alembic_version_auth`))
}

// TestReadWhileWriting holds a write transaction open in another handle:
// WAL lets reads go on meanwhile.
func TestReadWhileWriting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mlflow.db")
	prepare(t, storetest.Setup{}, p, p)
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: p, QueryTimeout: time.Second})
	require.NoError(t, err)
	defer st.Close()

	db, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	conn, err := db.Conn(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`)
	require.NoError(t, err)
	_, err = conn.ExecContext(t.Context(), `INSERT INTO users (username) VALUES ('writer')`)
	require.NoError(t, err)

	exists, _, err := st.User(t.Context(), "writer")
	require.NoError(t, err)
	assert.False(t, exists, "uncommitted row is invisible, and the read did not block")
	_, err = conn.ExecContext(t.Context(), `COMMIT`)
	require.NoError(t, err)
	exists, _, err = st.User(t.Context(), "writer")
	require.NoError(t, err)
	assert.True(t, exists)
}

func TestOpenErrors(t *testing.T) {
	_, err := sqlite.Open(t.Context(), sqlite.Config{})
	require.Error(t, err)
	// A directory that does not exist cannot be opened.
	_, err = sqlite.Open(t.Context(), sqlite.Config{TrackingPath: filepath.Join(t.TempDir(), "no", "such", "dir.db")})
	require.ErrorIs(t, err, store.ErrUnavailable)
}

// TestMigrateOIDCAuthDB: on mlflow-oidc-auth's own database Migrate
// creates and stamps nothing (SQLite needs no triggers).
func TestMigrateOIDCAuthDB(t *testing.T) {
	p := filepath.Join(t.TempDir(), "auth.db")
	require.NoError(t, storetest.CreateOIDCAuthSchema(t.Context(), store.SQLite, storetest.SQLiteExec(t, p)))
	schema := `SELECT type || ' ' || name || ' ' || COALESCE(sql, '') FROM sqlite_master`
	before := names(t, p, schema)
	require.NoError(t, sqlite.Migrate(t.Context(), p))
	assert.Equal(t, before, names(t, p, schema))
}
