package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// missingTriggers returns the tables NotifyStatus names, failing the test
// when its error is of another type.
func missingTriggers(t *testing.T, st *postgres.Store) (tables []string, noAuth bool) {
	t.Helper()
	err := st.NotifyStatus()
	if err == nil {
		return nil, false
	}
	var mt *postgres.MissingTriggersError
	require.ErrorAs(t, err, &mt)
	assert.Contains(t, err.Error(), "mlflow-authz migrate", "the message names the fix")
	return mt.Tables, mt.NoAuthTables
}

// TestNotifyCheck: a database whose auth tables MLflow made (no
// mlflow-authz migrate) is reported, table by table, until migrate runs; a
// disabled trigger and a table added later count as missing.
func TestNotifyCheck(t *testing.T) {
	url := storetest.Postgres(t)
	exec := storetest.PostgresExec(t, url)
	st, err := postgres.Open(t.Context(), postgres.Config{TrackingURL: url})
	require.NoError(t, err)
	t.Cleanup(st.Close)

	require.NoError(t, st.NotifyStatus(), "nothing checked yet")
	require.NoError(t, st.CheckNotify(t.Context()))
	tables, noAuth := missingTriggers(t, st)
	assert.True(t, noAuth, "an empty database has no auth tables")
	assert.Empty(t, tables)

	require.NoError(t, storetest.CreateAuthSchema(t.Context(), store.PostgreSQL, exec))
	require.NoError(t, st.CheckNotify(t.Context()))
	tables, noAuth = missingTriggers(t, st)
	assert.False(t, noAuth)
	assert.Equal(t, []string{
		"experiment_group_permissions", "experiment_permissions", "gateway_endpoint_permissions",
		"gateway_model_definition_permissions", "gateway_secret_permissions", "groups",
		"registered_model_group_permissions", "registered_model_permissions", "scorer_permissions", "users", "workspace_permissions",
	}, tables, "every watched table that exists, and only those")

	require.NoError(t, postgres.Migrate(t.Context(), url))
	require.NoError(t, st.CheckNotify(t.Context()))
	require.NoError(t, st.NotifyStatus())

	storetest.Must(t, exec, `ALTER TABLE experiment_permissions DISABLE TRIGGER mlflow_authz_notify`)
	require.NoError(t, st.CheckNotify(t.Context()))
	tables, _ = missingTriggers(t, st)
	assert.Equal(t, []string{"experiment_permissions"}, tables, "a disabled trigger announces nothing")
	require.NoError(t, postgres.Migrate(t.Context(), url))

	// A table that a read query reads, created after migrate ran (as an
	// upgrade of MLflow or of mlflow-oidc-auth would): the same check
	// covers it, and migrate again fixes it.
	storetest.Must(t, exec, `CREATE TABLE experiment_regex_permissions (id SERIAL PRIMARY KEY, regex VARCHAR(255) NOT NULL,
		priority INTEGER NOT NULL, user_id INTEGER NOT NULL, permission VARCHAR(255))`)
	require.NoError(t, st.CheckNotify(t.Context()))
	tables, _ = missingTriggers(t, st)
	assert.Equal(t, []string{"experiment_regex_permissions"}, tables)
	require.NoError(t, postgres.Migrate(t.Context(), url))
	require.NoError(t, st.CheckNotify(t.Context()))
	require.NoError(t, st.NotifyStatus())

	// MLflow 3.12's role tables, created by its upgrade: covered too.
	storetest.Must(t, exec, `CREATE TABLE roles (id SERIAL PRIMARY KEY)`, `CREATE TABLE role_permissions (id SERIAL PRIMARY KEY)`)
	require.NoError(t, st.CheckNotify(t.Context()))
	tables, _ = missingTriggers(t, st)
	assert.Equal(t, []string{"role_permissions", "roles"}, tables)
	require.NoError(t, postgres.Migrate(t.Context(), url))
	require.NoError(t, st.CheckNotify(t.Context()))
	require.NoError(t, st.NotifyStatus())

	// A table nobody reads needs no trigger.
	storetest.Must(t, exec, `CREATE TABLE webhooks (id SERIAL PRIMARY KEY)`)
	require.NoError(t, st.CheckNotify(t.Context()))
	require.NoError(t, st.NotifyStatus())
}

// TestNotifyCheckOnReconnect drops a trigger while the watch runs and kills
// its LISTEN connection: the reconnect alone (no CheckNotify call) must
// report the missing trigger.
func TestNotifyCheckOnReconnect(t *testing.T) {
	var logs storetest.LogBuffer
	h, authURL := open(t, storetest.Setup{}, postgres.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	st := h.Reader.(*postgres.Store)
	waitFlush := watch(t, h, cache.New(st, cache.Options{}))
	waitFlush("first LISTEN")
	require.NoError(t, st.NotifyStatus())

	require.NoError(t, h.ExecAuth(t.Context(), `DROP TRIGGER mlflow_authz_notify ON registered_model_permissions`))
	exec := storetest.PostgresExec(t, authURL)
	require.NoError(t, exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, postgres.ListenApplicationName))
	waitFlush("connection loss")
	waitFlush("reconnect")
	tables, _ := missingTriggers(t, st)
	assert.Equal(t, []string{"registered_model_permissions"}, tables)
	assert.Contains(t, logs.String(), "change-notification triggers missing")
}

// TestNotifyOff: nothing listens and nothing is checked; Watch warns once.
func TestNotifyOff(t *testing.T) {
	url := storetest.Postgres(t)
	exec := storetest.PostgresExec(t, url)
	require.NoError(t, storetest.CreateAuthSchema(t.Context(), store.PostgreSQL, exec))
	var logs storetest.LogBuffer
	st, err := postgres.Open(t.Context(), postgres.Config{TrackingURL: url, Notify: postgres.NotifyOff,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	require.NoError(t, st.CheckNotify(t.Context()))
	require.NoError(t, st.NotifyStatus())

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	flushed := false
	err = st.Watch(ctx, func(string) {}, func() { flushed = true })
	require.True(t, errors.Is(err, context.DeadlineExceeded), "Watch waits for its context: %v", err)
	assert.False(t, flushed, "nothing listens, so nothing goes live")
	assert.Equal(t, 1, strings.Count(logs.String(), "store.postgres.notify is off"))
	_, _, enabled := st.WatchStatus()
	assert.False(t, enabled)

	_, err = postgres.Open(t.Context(), postgres.Config{TrackingURL: url, Notify: "no"})
	require.ErrorContains(t, err, `notify "no"`)
}
