package postgres_test

import (
	"context"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// openSplit opens a store whose tracking and auth tables live in two
// databases, as the brief allows.
func openSplit(t *testing.T, s storetest.Setup) storetest.Harness {
	h, _ := open(t, s, postgres.Config{})
	return h
}

func open(t *testing.T, s storetest.Setup, cfg postgres.Config) (storetest.Harness, string) {
	t.Helper()
	trackingURL, authURL := storetest.Postgres(t), storetest.Postgres(t)
	execAuth, execTracking := storetest.PostgresExec(t, authURL), storetest.PostgresExec(t, trackingURL)
	storetest.PrepareAuth(t, s, store.PostgreSQL, execAuth, storetest.PostgresQuery(t, authURL), func(ctx context.Context) error { return postgres.Migrate(ctx, authURL) })
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.PostgreSQL, execTracking))
	cfg.TrackingURL, cfg.AuthURL = trackingURL, authURL
	st, err := postgres.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return storetest.Harness{Reader: st, ExecAuth: execAuth, ExecTracking: execTracking, Watch: st.Watch,
		QueryAuth: storetest.PostgresQuery(t, authURL)}, authURL
}

func TestConformance(t *testing.T) { storetest.Run(t, openSplit) }

// TestConformanceOneDatabase runs the suite with MLflow's other layout:
// auth and tracking tables in the same database.
func TestConformanceOneDatabase(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s storetest.Setup) storetest.Harness {
		url := storetest.Postgres(t)
		exec := storetest.PostgresExec(t, url)
		storetest.PrepareAuth(t, s, store.PostgreSQL, exec, storetest.PostgresQuery(t, url), func(ctx context.Context) error { return postgres.Migrate(ctx, url) })
		require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.PostgreSQL, exec))
		st, err := postgres.Open(t.Context(), postgres.Config{TrackingURL: url})
		require.NoError(t, err)
		t.Cleanup(st.Close)
		return storetest.Harness{Reader: st, ExecAuth: exec, ExecTracking: exec, Watch: st.Watch, QueryAuth: storetest.PostgresQuery(t, url),
			OneDatabase: true}
	})
}

func queryStrings(t *testing.T, url, q string) []string {
	t.Helper()
	out, err := storetest.PostgresQuery(t, url)(t.Context(), q)
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

func TestMigrateCreatesExactSchema(t *testing.T) {
	url := storetest.Postgres(t)
	require.NoError(t, postgres.Migrate(t.Context(), url))

	tables := queryStrings(t, url, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'`)
	assert.Equal(t, []string{
		"alembic_version_auth", "experiment_group_permissions", "experiment_permissions",
		"gateway_endpoint_permissions", "gateway_model_definition_permissions", "gateway_secret_permissions",
		"groups", "registered_model_group_permissions", "registered_model_permissions", "scorer_permissions",
		"users", "workspace_permissions",
	}, tables)

	// Constraint names are MLflow's: its later migrations drop them by name.
	constraints := queryStrings(t, url, `SELECT c.conrelid::regclass::text || ' ' || c.conname || ' ' || c.contype::text
		FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
		WHERE n.nspname = 'public' AND c.conrelid::regclass::text NOT LIKE '%group%'`)
	assert.Equal(t, []string{
		"alembic_version_auth alembic_version_auth_pkc p",
		"experiment_permissions experiment_permissions_pkey p",
		"experiment_permissions fk_user_id f",
		"experiment_permissions unique_experiment_user u",
		"gateway_endpoint_permissions fk_gateway_endpoint_perm_user_id f",
		"gateway_endpoint_permissions gateway_endpoint_permissions_pkey p",
		"gateway_endpoint_permissions unique_endpoint_user u",
		"gateway_model_definition_permissions fk_gateway_model_def_perm_user_id f",
		"gateway_model_definition_permissions gateway_model_definition_permissions_pkey p",
		"gateway_model_definition_permissions unique_model_def_user u",
		"gateway_secret_permissions fk_gateway_secret_perm_user_id f",
		"gateway_secret_permissions gateway_secret_permissions_pkey p",
		"gateway_secret_permissions unique_secret_user u",
		"registered_model_permissions fk_user_id f",
		"registered_model_permissions registered_model_permissions_pkey p",
		"registered_model_permissions unique_workspace_name_user u",
		"scorer_permissions fk_scorer_perm_user_id f",
		"scorer_permissions scorer_permissions_pkey p",
		"scorer_permissions unique_scorer_user u",
		"users users_pkey p",
		"users users_username_key u",
		"workspace_permissions workspace_permissions_pk p",
		"workspace_permissions workspace_permissions_user_id_fkey f",
	}, constraints)

	columns := queryStrings(t, url, `SELECT table_name || '.' || column_name || ' ' || data_type ||
		COALESCE('(' || character_maximum_length || ')', '') || ' ' || is_nullable || COALESCE(' ' || column_default, '')
		FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('users', 'registered_model_permissions', 'workspace_permissions')`)
	assert.Equal(t, []string{
		"registered_model_permissions.id integer NO nextval('registered_model_permissions_id_seq'::regclass)",
		"registered_model_permissions.name character varying(255) NO",
		"registered_model_permissions.permission character varying(255) YES",
		"registered_model_permissions.user_id integer NO",
		"registered_model_permissions.workspace character varying(63) NO 'default'::character varying",
		"users.id integer NO nextval('users_id_seq'::regclass)",
		"users.is_admin boolean YES",
		"users.password_hash character varying(255) YES",
		"users.username character varying(255) YES",
		"workspace_permissions.permission character varying(32) NO",
		"workspace_permissions.user_id integer NO",
		"workspace_permissions.workspace character varying(63) NO",
	}, columns)

	indexes := queryStrings(t, url, `SELECT indexname::text FROM pg_indexes WHERE tablename = 'workspace_permissions'`)
	assert.Equal(t, []string{"idx_workspace_permissions_user_id", "idx_workspace_permissions_workspace", "workspace_permissions_pk"}, indexes)

	assert.Equal(t, []string{postgres.AuthHead}, queryStrings(t, url, `SELECT version_num FROM alembic_version_auth`))

	// Every watched table that exists has the trigger, and only those.
	triggers := queryStrings(t, url, `SELECT DISTINCT event_object_table::text FROM information_schema.triggers WHERE trigger_name = 'mlflow_authz_notify'`)
	var want []string
	for _, tbl := range postgres.WatchedTables() {
		if slices.Contains(tables, tbl) {
			want = append(want, tbl)
		}
	}
	sort.Strings(want)
	assert.Equal(t, want, triggers)
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	url := storetest.Postgres(t)
	require.NoError(t, postgres.Migrate(t.Context(), url))
	exec := storetest.PostgresExec(t, url)
	require.NoError(t, exec(t.Context(), `INSERT INTO users (username, is_admin) VALUES ('alice', true)`))
	schema := `SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'public'`
	before := queryStrings(t, url, schema)
	require.NoError(t, postgres.Migrate(t.Context(), url))
	assert.Equal(t, before, queryStrings(t, url, schema))
	assert.Equal(t, []string{"alice"}, queryStrings(t, url, `SELECT username FROM users`))
	assert.Equal(t, []string{postgres.AuthHead}, queryStrings(t, url, `SELECT version_num FROM alembic_version_auth`))
}

// TestMigrateExistingAuthDB runs Migrate on a database that MLflow (at a
// newer revision, with an extra column) already made and filled: rows,
// columns and the version stamp stay as they were.
func TestMigrateExistingAuthDB(t *testing.T) {
	url := storetest.Postgres(t)
	exec := storetest.PostgresExec(t, url)
	for _, s := range []string{
		`CREATE TABLE users (id SERIAL NOT NULL, username VARCHAR(255), password_hash VARCHAR(255), is_admin BOOLEAN,
			extra TEXT, PRIMARY KEY (id), UNIQUE (username))`,
		`CREATE TABLE experiment_permissions (id SERIAL NOT NULL, experiment_id VARCHAR(255) NOT NULL, user_id INTEGER NOT NULL,
			permission VARCHAR(255), PRIMARY KEY (id), CONSTRAINT fk_user_id FOREIGN KEY (user_id) REFERENCES users (id),
			CONSTRAINT unique_experiment_user UNIQUE (experiment_id, user_id))`,
		`CREATE TABLE alembic_version_auth (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_auth_pkc PRIMARY KEY (version_num))`,
		`INSERT INTO alembic_version_auth VALUES ('c3d4e5f6a7b8')`,
		`INSERT INTO users (username, is_admin, extra) VALUES ('alice', false, 'keep')`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'READ')`,
	} {
		require.NoError(t, exec(t.Context(), s))
	}
	require.NoError(t, postgres.Migrate(t.Context(), url))
	assert.Equal(t, []string{"alice keep"}, queryStrings(t, url, `SELECT username || ' ' || extra FROM users`))
	assert.Equal(t, []string{"1 READ"}, queryStrings(t, url, `SELECT experiment_id || ' ' || permission FROM experiment_permissions`))
	assert.Equal(t, []string{"c3d4e5f6a7b8"}, queryStrings(t, url, `SELECT version_num FROM alembic_version_auth`))
	assert.Contains(t, queryStrings(t, url, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'`), "groups")

	// An older MLflow revision: its own alembic creates the newer tables,
	// so Migrate adds only the group tables and triggers.
	url = storetest.Postgres(t)
	exec = storetest.PostgresExec(t, url)
	for _, s := range []string{
		`CREATE TABLE users (id SERIAL NOT NULL, username VARCHAR(255), password_hash VARCHAR(255), is_admin BOOLEAN, PRIMARY KEY (id), UNIQUE (username))`,
		`CREATE TABLE alembic_version_auth (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_auth_pkc PRIMARY KEY (version_num))`,
		`INSERT INTO alembic_version_auth VALUES ('8606fa83a998')`,
	} {
		require.NoError(t, exec(t.Context(), s))
	}
	require.NoError(t, postgres.Migrate(t.Context(), url))
	tables := queryStrings(t, url, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'`)
	assert.Equal(t, []string{"alembic_version_auth", "experiment_group_permissions", "groups", "registered_model_group_permissions", "users"}, tables)
}

func TestMigrateUnreachable(t *testing.T) {
	err := postgres.Migrate(t.Context(), "postgres://x@127.0.0.1:1/db?connect_timeout=2")
	require.ErrorIs(t, err, store.ErrUnavailable)
}

// watch runs h's change watch into c until the test ends, and returns a
// function that waits (10s at most) for its next flush.
func watch(t *testing.T, h storetest.Harness, c *cache.Cache) (waitFlush func(after string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	flushes := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() {
		done <- h.Watch(ctx, func(string) { c.Invalidate() }, func() { c.Flush(); flushes <- struct{}{} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func(after string) {
		t.Helper()
		select {
		case <-flushes:
		case <-time.After(10 * time.Second):
			t.Fatalf("no flush after %s", after)
		}
	}
}

// TestListenConnectionKilled terminates the LISTEN backend: the watcher
// must flush at once, so a change made while it reconnects is seen.
func TestListenConnectionKilled(t *testing.T) {
	h, authURL := open(t, storetest.Setup{}, postgres.Config{})
	require.NoError(t, h.ExecAuth(t.Context(), `INSERT INTO users (id, username) VALUES (1, 'alice')`))
	require.NoError(t, h.ExecAuth(t.Context(), `INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'READ')`))
	c := cache.New(h.Reader, cache.Options{GrantTTL: time.Hour})
	waitFlush := watch(t, h, c)
	st := h.Reader.(*postgres.Store)
	waitFlush("first LISTEN")
	up, losses, _ := st.WatchStatus()
	assert.True(t, up)
	assert.Zero(t, losses)
	res := store.Resource{Kind: store.Experiment, ID: "1"}
	g, err := c.Grants(t.Context(), "alice", res)
	require.NoError(t, err)
	require.NotNil(t, g.User)

	var killed int
	conn, err := pgx.Connect(t.Context(), authURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	// Revoke in the same transaction that kills the listener: the NOTIFY
	// is never delivered to it, only the flush can save us.
	tx, err := conn.Begin(t.Context())
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), `DELETE FROM experiment_permissions`)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid))::int FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, postgres.ListenApplicationName).Scan(&killed))
	require.NoError(t, tx.Commit(t.Context()))
	require.Equal(t, 1, killed)
	waitFlush("connection loss")
	_, losses, _ = st.WatchStatus()
	assert.Equal(t, uint64(1), losses)
	g, err = c.Grants(t.Context(), "alice", res)
	require.NoError(t, err)
	assert.Nil(t, g.User, "the revoke must be visible after the flush")
	waitFlush("reconnect")
	up, losses, _ = st.WatchStatus()
	assert.True(t, up)
	assert.Equal(t, uint64(1), losses)
}

// TestStatementTimeout holds a lock that blocks the Grants query: the
// query must give up after the statement timeout with ErrUnavailable.
func TestStatementTimeout(t *testing.T) {
	h, authURL := open(t, storetest.Setup{}, postgres.Config{StatementTimeout: 300 * time.Millisecond})
	conn, err := pgx.Connect(t.Context(), authURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	tx, err := conn.Begin(t.Context())
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(t.Context(), `LOCK TABLE experiment_permissions IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	start := time.Now()
	_, err = h.Reader.Grants(t.Context(), "alice", store.Resource{Kind: store.Experiment, ID: "1"})
	elapsed := time.Since(start)
	require.ErrorIs(t, err, store.ErrUnavailable)
	assert.Less(t, elapsed, 2*time.Second)
	t.Logf("blocked query failed after %v: %v", elapsed, err)

	_, _, err = h.Reader.User(t.Context(), "alice")
	require.NoError(t, err, "other tables still answer")
}

// TestServerStopped stops the server under an open store: reads fail fast
// with ErrUnavailable, and work again once it is back.
func TestServerStopped(t *testing.T) {
	h, _ := open(t, storetest.Setup{}, postgres.Config{StatementTimeout: 500 * time.Millisecond, ConnectTimeout: time.Second})
	st := h.Reader.(*postgres.Store)
	require.NoError(t, st.Ping(t.Context()))
	storetest.RestartPostgres(t, func() {
		start := time.Now()
		_, err := st.Grants(t.Context(), "alice", store.Resource{Kind: store.Experiment, ID: "1"})
		require.ErrorIs(t, err, store.ErrUnavailable)
		_, err = st.Resolve(t.Context(), store.RunExperiment, "r1")
		require.ErrorIs(t, err, store.ErrUnavailable)
		_, _, err = st.User(t.Context(), "alice")
		require.ErrorIs(t, err, store.ErrUnavailable)
		require.ErrorIs(t, st.Ping(t.Context()), store.ErrUnavailable)
		assert.Less(t, time.Since(start), 5*time.Second)
	})
	require.Eventually(t, func() bool { return st.Ping(t.Context()) == nil }, 10*time.Second, 50*time.Millisecond)
	_, err := st.Resolve(t.Context(), store.RunExperiment, "r1")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestOpenUnreachable(t *testing.T) {
	_, err := postgres.Open(t.Context(), postgres.Config{TrackingURL: "postgres://x@127.0.0.1:1/db", ConnectTimeout: time.Second})
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = postgres.Open(t.Context(), postgres.Config{})
	require.Error(t, err)
}

// TestMigrateOIDCAuthDB runs Migrate on mlflow-oidc-auth's own database,
// made by its migrations: no table is created or altered and nothing is
// stamped (the database is the plugin's), but every table read for grants
// gets its trigger, so a change made there is announced. Run twice, it
// changes nothing more.
func TestMigrateOIDCAuthDB(t *testing.T) {
	url := storetest.Postgres(t)
	exec := storetest.PostgresExec(t, url)
	require.NoError(t, storetest.CreateOIDCAuthSchema(t.Context(), store.PostgreSQL, exec))
	tablesQ := `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'`
	columnsQ := `SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'public'`
	tables, columns := queryStrings(t, url, tablesQ), queryStrings(t, url, columnsQ)
	for range 2 {
		require.NoError(t, postgres.Migrate(t.Context(), url))
		assert.Equal(t, tables, queryStrings(t, url, tablesQ))
		assert.Equal(t, columns, queryStrings(t, url, columnsQ))
	}
	assert.Equal(t, []string{storetest.OIDCAuthHead}, queryStrings(t, url, `SELECT version_num FROM alembic_version`))
	triggers := queryStrings(t, url, `SELECT DISTINCT event_object_table::text FROM information_schema.triggers WHERE trigger_name = 'mlflow_authz_notify'`)
	assert.Equal(t, []string{
		"experiment_group_permissions", "experiment_group_regex_permissions", "experiment_permissions", "experiment_regex_permissions",
		"gateway_endpoint_group_regex_permissions", "gateway_endpoint_permissions", "gateway_endpoint_regex_permissions",
		"gateway_model_definition_group_regex_permissions", "gateway_model_definition_permissions", "gateway_model_definition_regex_permissions",
		"gateway_secret_group_regex_permissions", "gateway_secret_permissions", "gateway_secret_regex_permissions",
		"groups", "registered_model_group_permissions", "registered_model_group_regex_permissions", "registered_model_permissions",
		"registered_model_regex_permissions", "scorer_group_permissions", "scorer_group_regex_permissions", "scorer_permissions",
		"scorer_regex_permissions", "users", "workspace_permissions",
	}, triggers)
	st, err := postgres.Open(t.Context(), postgres.Config{TrackingURL: url})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	require.NoError(t, st.CheckNotify(t.Context()))
	require.NoError(t, st.NotifyStatus())
}
