package ownership_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/authz/ownership"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/backend"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// env is one backend with MLflow's real tables: the auth tables made by the
// store's migration, the tracking tables by storetest, and a connection of
// its own that plays MLflow writing its tracking tables.
type env struct {
	admin    store.Admin
	tracking backend.Tracking
	mlflow   storetest.ExecFunc // MLflow's own writes to its tracking tables
	auth     storetest.ExecFunc
}

type opener struct {
	name string
	open func(t *testing.T) env
}

var backends = []opener{
	{"postgres", openPostgres},
	{"sqlite", func(t *testing.T) env { return openSQLite(t) }},
}

func openPostgres(t *testing.T) env {
	t.Helper()
	trackingURL, authURL := storetest.Postgres(t), storetest.Postgres(t)
	return openEnv(t, backend.Config{Driver: store.PostgreSQL, Postgres: postgres.Config{TrackingURL: trackingURL, AuthURL: authURL}},
		storetest.PostgresExec(t, trackingURL), storetest.PostgresExec(t, authURL))
}

func openSQLite(t testing.TB) env {
	t.Helper()
	dir := t.TempDir()
	tp, ap := filepath.Join(dir, "mlflow.db"), filepath.Join(dir, "basic_auth.db")
	return openEnv(t, backend.Config{Driver: store.SQLite, SQLite: sqlite.Config{TrackingPath: tp, AuthPath: ap}},
		storetest.SQLiteExec(t, tp), storetest.SQLiteExec(t, ap))
}

// openEnv migrates cfg's auth database, creates its tracking tables through
// mlflow and opens the store and the tracking reader as the server does.
func openEnv(t testing.TB, cfg backend.Config, mlflow, auth storetest.ExecFunc) env {
	t.Helper()
	require.NoError(t, backend.Migrate(t.Context(), cfg))
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), cfg.Driver, mlflow))
	st, err := backend.OpenAdmin(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	tracking, err := backend.OpenTracking(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { tracking.Close() })
	return env{admin: st, tracking: tracking, mlflow: mlflow, auth: auth}
}

// fixture is the MLflow policy wired to a reconciler, as the server wires it.
type fixture struct {
	env
	rec    *ownership.Reconciler
	policy *mlflow.Policy
	clock  *storetest.Clock
}

func newFixture(t *testing.T, e env, cfg mlflow.Config, opt ownership.Options) *fixture {
	t.Helper()
	f := &fixture{env: e}
	if opt.Now == nil {
		f.clock = storetest.NewClock(time.Now())
		opt.Now = f.clock.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	f.rec = ownership.New(e.admin, e.tracking, opt)
	cfg.Recorder = f.rec
	var err error
	f.policy, err = mlflow.New(e.admin, cfg, nil)
	require.NoError(t, err)
	return f
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (f *fixture) decide(t *testing.T, user string, groups []string, method, target, body string) authz.Decision {
	t.Helper()
	req, d := authz.NewRequest(authz.RequestInput{
		Method: method, Host: "mlflow", Target: target, Body: []byte(body),
		Headers: map[string]string{"content-type": "application/json"},
	})
	require.Nil(t, d)
	return f.policy.Decide(t.Context(), req, &authz.Identity{Kind: authz.KindUser, Username: user, Groups: groups, Method: "jwt"})
}

func (f *fixture) nowMS() int64 { return f.clock.Now().UnixMilli() }

// grants lists the rows on r as "user=PERMISSION", sorted.
func grants(t *testing.T, a store.Admin, r store.Resource) []string {
	t.Helper()
	rows, err := a.ListGrants(t.Context(), store.GrantFilter{Kind: r.Kind, ID: r.ID})
	require.NoError(t, err)
	var out []string
	for _, row := range rows {
		who := row.Grantee.User
		if who == "" {
			who = "group:" + row.Grantee.Group
		}
		out = append(out, who+"="+row.Permission)
	}
	sort.Strings(out)
	return out
}

func experimentID(t *testing.T, tr ownership.Tracking, name string) string {
	t.Helper()
	o, err := tr.Lookup(t.Context(), store.TrackedName{Kind: store.Experiment, Name: name})
	require.NoError(t, err)
	return o.ID
}

func TestCreatorGrants(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("CreateExperimentGrantsOnce", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				d := f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/experiments/create", `{"name": "exp-a"}`)
				require.True(t, d.Allowed)
				require.Equal(t, 1, f.rec.Pending())

				f.rec.Reconcile(t.Context()) // MLflow has not made the row yet
				assert.Equal(t, 1, f.rec.Pending())
				assert.Zero(t, f.rec.Stats().Granted)

				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO experiments (name, lifecycle_stage, creation_time, last_update_time)
					VALUES ('exp-a', 'active', %d, %d)`, f.nowMS(), f.nowMS()))
				f.clock.Advance(200 * time.Millisecond)
				f.rec.Reconcile(t.Context())
				f.rec.Reconcile(t.Context())
				id := experimentID(t, f.tracking, "exp-a")
				assert.Equal(t, []string{"alice=MANAGE"}, grants(t, f.admin, store.Resource{Kind: store.Experiment, ID: id}))
				assert.Equal(t, ownership.Stats{Granted: 1}, f.rec.Stats())
				assert.Zero(t, f.rec.Pending())

				// The grant is what MLflow's basic-auth would read: alice may now delete it.
				d = f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/experiments/delete", `{"experiment_id": "`+id+`"}`)
				assert.True(t, d.Allowed)
				d = f.decide(t, "bob", nil, "POST", "/api/2.0/mlflow/experiments/delete", `{"experiment_id": "`+id+`"}`)
				assert.Equal(t, http.StatusForbidden, d.Status)
				assert.Equal(t, authz.ReasonPermissionDenied, d.Reason)
			})

			t.Run("CreateRegisteredModelAjax", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				require.True(t, f.decide(t, "bob", nil, "POST", "/ajax-api/2.0/mlflow/registered-models/create", `{"name": "model-b"}`).Allowed)
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('model-b', %d, %d)`, f.nowMS(), f.nowMS()))
				f.rec.Reconcile(t.Context())
				assert.Equal(t, []string{"bob=MANAGE"}, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "model-b"}))
				assert.Equal(t, ownership.Stats{Granted: 1}, f.rec.Stats())
			})

			t.Run("DuplicateNameNoGrant", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				old := f.clock.Now().Add(-time.Hour).UnixMilli()
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO experiments (name, lifecycle_stage, creation_time) VALUES ('taken', 'active', %d)`, old),
					fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('taken', %d, %d)`, old, old))
				// Allowed (MLflow itself answers RESOURCE_ALREADY_EXISTS), never recorded.
				require.True(t, f.decide(t, "eve", nil, "POST", "/api/2.0/mlflow/experiments/create", `{"name": "taken"}`).Allowed)
				require.True(t, f.decide(t, "eve", nil, "POST", "/api/2.0/mlflow/registered-models/create", `{"name": "taken"}`).Allowed)
				assert.Zero(t, f.rec.Pending())
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.Experiment, ID: experimentID(t, f.tracking, "taken")}))
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "taken"}))
				assert.Equal(t, ownership.Stats{Refused: 2}, f.rec.Stats())
			})

			t.Run("RowOutsideWindowNoGrant", func(t *testing.T) {
				// The name was free when eve's create was allowed, but the row
				// that appeared was stamped long before (another MLflow
				// clock, a restore) or long after (someone else's later
				// create of a name whose create had failed): not proof.
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				require.True(t, f.decide(t, "eve", nil, "POST", "/api/2.0/mlflow/experiments/create", `{"name": "early"}`).Allowed)
				require.True(t, f.decide(t, "eve", nil, "POST", "/api/2.0/mlflow/registered-models/create", `{"name": "late"}`).Allowed)
				require.Equal(t, 2, f.rec.Pending())
				storetest.Must(t, f.mlflow,
					fmt.Sprintf(`INSERT INTO experiments (name, lifecycle_stage, creation_time) VALUES ('early', 'active', %d)`, f.clock.Now().Add(-time.Minute).UnixMilli()),
					fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('late', %d, 0)`, f.clock.Now().Add(time.Minute).UnixMilli()))
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.Experiment, ID: experimentID(t, f.tracking, "early")}))
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "late"}))
				assert.Equal(t, ownership.Stats{Refused: 2}, f.rec.Stats())
				assert.Zero(t, f.rec.Pending())
			})

			t.Run("NullCreationTimeNoGrant", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				require.True(t, f.decide(t, "eve", nil, "POST", "/api/2.0/mlflow/experiments/create", `{"name": "nulltime"}`).Allowed)
				storetest.Must(t, f.mlflow, `INSERT INTO experiments (name, lifecycle_stage) VALUES ('nulltime', 'active')`)
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.Experiment, ID: experimentID(t, f.tracking, "nulltime")}))
				assert.Equal(t, ownership.Stats{Refused: 1}, f.rec.Stats())
			})

			t.Run("NeverMaterialisesExpires", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{PendingTTL: time.Minute}, ownership.Options{})
				require.True(t, f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/experiments/create", `{"name": "ghost"}`).Allowed)
				f.clock.Advance(59 * time.Second)
				f.rec.Reconcile(t.Context())
				assert.Equal(t, 1, f.rec.Pending())
				f.clock.Advance(2 * time.Second)
				f.rec.Reconcile(t.Context())
				assert.Zero(t, f.rec.Pending())
				assert.Equal(t, ownership.Stats{Expired: 1}, f.rec.Stats())
				// A row made after the expiry earns nothing.
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO experiments (name, lifecycle_stage, creation_time) VALUES ('ghost', 'active', %d)`, f.nowMS()))
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.Experiment, ID: experimentID(t, f.tracking, "ghost")}))
			})

			t.Run("ConcurrentCreatesGrantNeither", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				require.True(t, f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/registered-models/create", `{"name": "race"}`).Allowed)
				require.True(t, f.decide(t, "bob", nil, "POST", "/api/2.0/mlflow/registered-models/create", `{"name": "race"}`).Allowed)
				// The same caller retrying is one record.
				require.True(t, f.decide(t, "bob", nil, "POST", "/api/2.0/mlflow/registered-models/create", `{"name": "race"}`).Allowed)
				require.Equal(t, 2, f.rec.Pending())
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('race', %d, 0)`, f.nowMS()))
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "race"}))
				assert.Equal(t, ownership.Stats{Refused: 2}, f.rec.Stats())
				assert.Zero(t, f.rec.Pending())
			})

			t.Run("RenameMovesRows", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				old := f.clock.Now().Add(-time.Hour).UnixMilli()
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('m-old', %d, %d)`, old, old))
				m := func(name string) store.Resource { return store.Resource{Kind: store.RegisteredModel, ID: name} }
				_, _, err := f.admin.SetGrant(t.Context(), store.Grantee{User: "alice"}, m("m-old"), store.Manage)
				require.NoError(t, err)
				_, _, err = f.admin.SetGrant(t.Context(), store.Grantee{User: "bob"}, m("m-old"), store.Read)
				require.NoError(t, err)

				d := f.decide(t, "bob", nil, "POST", "/api/2.0/mlflow/registered-models/rename", `{"name": "m-old", "new_name": "m-new"}`)
				assert.Equal(t, http.StatusForbidden, d.Status, "READ may not rename")
				assert.Equal(t, authz.ReasonPermissionDenied, d.Reason)
				assert.Zero(t, f.rec.Pending(), "a denied rename records nothing")

				require.True(t, f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/registered-models/rename", `{"name": "m-old", "newName": "m-new"}`).Allowed)
				require.Equal(t, 1, f.rec.Pending())
				f.rec.Reconcile(t.Context()) // not renamed yet
				assert.Equal(t, []string{"alice=MANAGE", "bob=READ"}, grants(t, f.admin, m("m-old")))

				f.clock.Advance(100 * time.Millisecond)
				storetest.Must(t, f.mlflow, fmt.Sprintf(`UPDATE registered_models SET name = 'm-new', last_updated_time = %d WHERE name = 'm-old'`, f.nowMS()))
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, m("m-old")))
				assert.Equal(t, []string{"alice=MANAGE", "bob=READ"}, grants(t, f.admin, m("m-new")))
				assert.Equal(t, ownership.Stats{Renamed: 1}, f.rec.Stats())
			})

			t.Run("RefusedRenameLeavesRows", func(t *testing.T) {
				// Renaming onto an existing name is refused by MLflow; if the
				// old model then goes away some other way, its rows still
				// must not land on the other model.
				f := newFixture(t, b.open(t), mlflow.Config{PendingTTL: time.Minute}, ownership.Options{})
				old := f.clock.Now().Add(-time.Hour).UnixMilli()
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('a', %d, %d), ('b', %d, %d)`, old, old, old, old))
				_, _, err := f.admin.SetGrant(t.Context(), store.Grantee{User: "alice"}, store.Resource{Kind: store.RegisteredModel, ID: "a"}, store.Manage)
				require.NoError(t, err)
				require.True(t, f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/registered-models/rename", `{"name": "a", "new_name": "b"}`).Allowed)
				f.rec.Reconcile(t.Context())
				storetest.Must(t, f.mlflow, `DELETE FROM registered_models WHERE name = 'a'`)
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "b"}))
				f.clock.Advance(2 * time.Minute)
				f.rec.Reconcile(t.Context())
				assert.Equal(t, ownership.Stats{Expired: 1}, f.rec.Stats())
			})

			t.Run("DeleteRemovesRows", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				old := f.clock.Now().Add(-time.Hour).UnixMilli()
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('gone', %d, %d), ('kept', %d, %d)`, old, old, old, old))
				for _, name := range []string{"gone", "kept"} {
					for _, u := range []string{"alice", "bob"} {
						_, _, err := f.admin.SetGrant(t.Context(), store.Grantee{User: u}, store.Resource{Kind: store.RegisteredModel, ID: name}, store.Manage)
						require.NoError(t, err)
					}
				}
				// DELETE reads the name from the query when there is no body.
				require.True(t, f.decide(t, "alice", nil, "DELETE", "/api/2.0/mlflow/registered-models/delete?name=gone", "").Allowed)
				require.True(t, f.decide(t, "alice", nil, "DELETE", "/api/2.0/mlflow/registered-models/delete", `{"name": "kept"}`).Allowed)
				require.Equal(t, 2, f.rec.Pending())
				storetest.Must(t, f.mlflow, `DELETE FROM registered_models WHERE name = 'gone'`) // MLflow refused to delete "kept"
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "gone"}))
				assert.Equal(t, []string{"alice=MANAGE", "bob=MANAGE"}, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "kept"}))
				assert.Equal(t, ownership.Stats{Deleted: 1}, f.rec.Stats())
				assert.Equal(t, 1, f.rec.Pending())
			})

			t.Run("DeleteOfAMissingNameKeepsRows", func(t *testing.T) {
				// MLflow answers 404 and keeps the rows (its hook runs on
				// success only): a delete of what does not exist records
				// nothing, so a grant made ahead of a create survives.
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				rm := store.Resource{Kind: store.RegisteredModel, ID: "not-yet"}
				sc := store.Resource{Kind: store.Scorer, ID: "1", Name: "not-yet"}
				for _, r := range []store.Resource{rm, sc} {
					_, _, err := f.admin.SetGrant(t.Context(), store.Grantee{User: "alice"}, r, store.Manage)
					require.NoError(t, err)
				}
				require.True(t, f.decide(t, "alice", nil, "DELETE", "/api/2.0/mlflow/registered-models/delete", `{"name": "not-yet"}`).Allowed)
				require.True(t, f.decide(t, "alice", nil, "DELETE", "/api/3.0/mlflow/scorers/delete", `{"experiment_id": "1", "name": "not-yet"}`).Allowed)
				assert.Zero(t, f.rec.Pending())
				f.rec.Reconcile(t.Context())
				assert.Equal(t, []string{"alice=MANAGE"}, grants(t, f.admin, rm))
				assert.Equal(t, []string{"alice=MANAGE"}, grants(t, f.admin, sc))
				assert.Equal(t, ownership.Stats{Refused: 2}, f.rec.Stats())
			})

			t.Run("DeleteThenRecreate", func(t *testing.T) {
				// Deleted and created again between two polls: the old rows
				// go, and the new creator is granted.
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				old := f.clock.Now().Add(-time.Hour).UnixMilli()
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('again', %d, %d)`, old, old))
				_, _, err := f.admin.SetGrant(t.Context(), store.Grantee{User: "alice"}, store.Resource{Kind: store.RegisteredModel, ID: "again"}, store.Manage)
				require.NoError(t, err)
				require.True(t, f.decide(t, "alice", nil, "DELETE", "/api/2.0/mlflow/registered-models/delete", `{"name": "again"}`).Allowed)
				storetest.Must(t, f.mlflow, `DELETE FROM registered_models WHERE name = 'again'`)
				require.True(t, f.decide(t, "bob", nil, "POST", "/api/2.0/mlflow/registered-models/create", `{"name": "again"}`).Allowed)
				storetest.Must(t, f.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('again', %d, %d)`, f.nowMS(), f.nowMS()))
				f.rec.Reconcile(t.Context())
				assert.Equal(t, []string{"bob=MANAGE"}, grants(t, f.admin, store.Resource{Kind: store.RegisteredModel, ID: "again"}))
				assert.Equal(t, ownership.Stats{Granted: 1, Deleted: 1}, f.rec.Stats())
			})

			t.Run("RegisterScorerGrantsItsCreator", func(t *testing.T) {
				// MLflow grants MANAGE on a registered scorer
				// (set_can_manage_scorer_permission); the proof is the
				// scorer row and its first version, stamped in the window.
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				storetest.Must(t, f.mlflow, `INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (1, 'one', 'active')`)
				_, _, err := f.admin.SetGrant(t.Context(), store.Grantee{User: "alice"}, store.Resource{Kind: store.Experiment, ID: "1"}, store.Edit)
				require.NoError(t, err)
				require.True(t, f.decide(t, "alice", nil, "POST", "/api/3.0/mlflow/scorers/register", `{"experiment_id": "1", "name": "relevance", "serialized_scorer": "{}"}`).Allowed)
				require.Equal(t, 1, f.rec.Pending())
				f.rec.Reconcile(t.Context())
				assert.Zero(t, f.rec.Stats().Granted)
				storetest.Must(t, f.mlflow, `INSERT INTO scorers (experiment_id, scorer_name, scorer_id) VALUES (1, 'relevance', 'sc-1')`,
					fmt.Sprintf(`INSERT INTO scorer_versions (scorer_id, scorer_version, serialized_scorer, creation_time) VALUES ('sc-1', 1, '{}', %d)`, f.nowMS()))
				f.rec.Reconcile(t.Context())
				sc := store.Resource{Kind: store.Scorer, ID: "1", Name: "relevance"}
				assert.Equal(t, []string{"alice=MANAGE"}, grants(t, f.admin, sc))
				assert.Equal(t, ownership.Stats{Granted: 1}, f.rec.Stats())

				// Registering a new version of alice's scorer adds a version;
				// MLflow would make bob its manager too, we do not.
				_, _, err = f.admin.SetGrant(t.Context(), store.Grantee{User: "bob"}, store.Resource{Kind: store.Experiment, ID: "1"}, store.Edit)
				require.NoError(t, err)
				require.True(t, f.decide(t, "bob", nil, "POST", "/api/3.0/mlflow/scorers/register", `{"experiment_id": "1", "name": "relevance", "serialized_scorer": "{}"}`).Allowed)
				assert.Zero(t, f.rec.Pending())
				assert.Equal(t, []string{"alice=MANAGE"}, grants(t, f.admin, sc))

				// DeleteScorer takes every row of the scorer with it
				// (delete_scorer_permissions_cascade), once MLflow's row is gone.
				_, _, err = f.admin.SetGrant(t.Context(), store.Grantee{User: "bob"}, sc, store.Read)
				require.NoError(t, err)
				f.clock.Advance(time.Minute) // a scorer stamped at the delete would look re-created
				require.True(t, f.decide(t, "alice", nil, "DELETE", "/api/3.0/mlflow/scorers/delete", `{"experiment_id": "1", "name": "relevance"}`).Allowed)
				require.Equal(t, 1, f.rec.Pending())
				f.rec.Reconcile(t.Context())
				assert.Equal(t, []string{"alice=MANAGE", "bob=READ"}, grants(t, f.admin, sc), "not deleted yet")
				storetest.Must(t, f.mlflow, `DELETE FROM scorer_versions WHERE scorer_id = 'sc-1'`, `DELETE FROM scorers WHERE scorer_id = 'sc-1'`)
				f.rec.Reconcile(t.Context())
				assert.Empty(t, grants(t, f.admin, sc), "a scorer registered again under the name inherits nothing")
				assert.Equal(t, ownership.Stats{Granted: 1, Refused: 1, Deleted: 1}, f.rec.Stats())
			})

			t.Run("DeleteOneScorerVersionKeepsRows", func(t *testing.T) {
				f := newFixture(t, b.open(t), mlflow.Config{PendingTTL: time.Minute}, ownership.Options{})
				old := f.clock.Now().Add(-time.Hour).UnixMilli()
				storetest.Must(t, f.mlflow, `INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (1, 'one', 'active')`,
					`INSERT INTO scorers (experiment_id, scorer_name, scorer_id) VALUES (1, 'kept', 'sc-2')`,
					fmt.Sprintf(`INSERT INTO scorer_versions (scorer_id, scorer_version, serialized_scorer, creation_time) VALUES ('sc-2', 1, '{}', %d), ('sc-2', 2, '{}', %d)`, old, old))
				sc := store.Resource{Kind: store.Scorer, ID: "1", Name: "kept"}
				_, _, err := f.admin.SetGrant(t.Context(), store.Grantee{User: "alice"}, sc, store.Manage)
				require.NoError(t, err)
				require.True(t, f.decide(t, "alice", nil, "DELETE", "/api/3.0/mlflow/scorers/delete?experiment_id=1&name=kept&version=2", "").Allowed)
				storetest.Must(t, f.mlflow, `DELETE FROM scorer_versions WHERE scorer_id = 'sc-2' AND scorer_version = 2`)
				f.clock.Advance(2 * time.Minute)
				f.rec.Reconcile(t.Context())
				assert.Equal(t, []string{"alice=MANAGE"}, grants(t, f.admin, sc), "the scorer is still there")
				assert.Equal(t, ownership.Stats{Expired: 1}, f.rec.Stats())
			})

			t.Run("GatewayObjectsGrantTheirCreator", func(t *testing.T) {
				// set_can_manage_gateway_{secret,endpoint,model_definition}_permission:
				// the id is MLflow's, found by the name the request gave.
				f := newFixture(t, b.open(t), mlflow.Config{}, ownership.Options{})
				require.True(t, f.decide(t, "eve", nil, "POST", "/api/3.0/mlflow/gateway/secrets/create", `{"secret_name": "openai-key", "secret_value": "x", "provider": "openai"}`).Allowed)
				require.True(t, f.decide(t, "eve", nil, "POST", "/ajax-api/3.0/mlflow/gateway/model-definitions/create", `{"name": "gpt", "provider": "openai", "model_name": "gpt-4o"}`).Allowed)
				require.True(t, f.decide(t, "eve", nil, "POST", "/api/3.0/mlflow/gateway/endpoints/create", `{"name": "chat"}`).Allowed)
				require.Equal(t, 3, f.rec.Pending())
				now := f.nowMS()
				storetest.Must(t, f.mlflow,
					fmt.Sprintf(`INSERT INTO secrets (secret_id, secret_name, created_at, last_updated_at) VALUES ('s-1', 'openai-key', %d, %d)`, now, now),
					fmt.Sprintf(`INSERT INTO model_definitions (model_definition_id, name, created_at, last_updated_at) VALUES ('md-1', 'gpt', %d, %d)`, now, now),
					fmt.Sprintf(`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at) VALUES ('ep-1', 'chat', %d, %d)`, now, now))
				f.rec.Reconcile(t.Context())
				assert.Equal(t, []string{"eve=MANAGE"}, grants(t, f.admin, store.Resource{Kind: store.GatewaySecret, ID: "s-1"}))
				assert.Equal(t, []string{"eve=MANAGE"}, grants(t, f.admin, store.Resource{Kind: store.GatewayModelDefinition, ID: "md-1"}))
				assert.Equal(t, []string{"eve=MANAGE"}, grants(t, f.admin, store.Resource{Kind: store.GatewayEndpoint, ID: "ep-1"}))
				assert.Equal(t, ownership.Stats{Granted: 3}, f.rec.Stats())

				// A name that exists already: MLflow refuses it, nothing is recorded.
				require.True(t, f.decide(t, "mallory", nil, "POST", "/api/3.0/mlflow/gateway/secrets/create", `{"secret_name": "openai-key"}`).Allowed)
				assert.Zero(t, f.rec.Pending())
			})

			t.Run("NothingRecorded", func(t *testing.T) {
				off := false
				tests := []struct {
					name   string
					cfg    mlflow.Config
					user   string
					groups []string
					target string
					body   string
					status int
					reason authz.Reason
				}{
					{name: "create denied by create_groups", cfg: mlflow.Config{CreateGroups: []string{"makers"}}, user: "eve",
						target: "/api/2.0/mlflow/experiments/create", body: `{"name": "x"}`, status: http.StatusForbidden, reason: authz.ReasonPermissionDenied},
					{name: "create allowed for a member", cfg: mlflow.Config{CreateGroups: []string{"makers"}}, user: "eve", groups: []string{"makers"},
						target: "/api/2.0/mlflow/experiments/create", body: `{"name": "x"}`, status: http.StatusOK},
					{name: "creator_grants off", cfg: mlflow.Config{CreatorGrants: &off}, user: "eve",
						target: "/api/2.0/mlflow/experiments/create", body: `{"name": "x"}`, status: http.StatusOK},
					{name: "no name", user: "eve", target: "/api/2.0/mlflow/experiments/create", body: `{}`, status: http.StatusOK},
					{name: "name not a string", user: "eve", target: "/api/2.0/mlflow/registered-models/create", body: `{"name": 7}`, status: http.StatusOK},
					{name: "new_name in both spellings", user: "root", target: "/api/2.0/mlflow/registered-models/rename",
						body: `{"name": "x", "new_name": "a", "newName": "b"}`, status: http.StatusOK},
					{name: "rename denied", user: "eve", target: "/api/2.0/mlflow/registered-models/rename",
						body: `{"name": "x", "new_name": "a"}`, status: http.StatusForbidden, reason: authz.ReasonPermissionDenied},
					{name: "duplicate key", user: "eve", target: "/api/2.0/mlflow/experiments/create", body: `{"name": "a", "name": "b"}`, status: http.StatusOK},
					{name: "experiment delete keeps rows", user: "root", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id": "1"}`, status: http.StatusOK},
					{name: "anonymous", user: "", target: "/api/2.0/mlflow/experiments/create", body: `{"name": "x"}`, status: http.StatusUnauthorized, reason: authz.ReasonUnauthenticated},
				}
				e := b.open(t)
				storetest.Must(t, e.auth, `INSERT INTO users (username, password_hash, is_admin) VALUES ('root', 'x', true)`)
				storetest.Must(t, e.mlflow, `INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (1, 'one', 'active')`)
				for _, tt := range tests {
					t.Run(tt.name, func(t *testing.T) {
						f := newFixture(t, e, tt.cfg, ownership.Options{})
						req, d := authz.NewRequest(authz.RequestInput{Method: "POST", Host: "mlflow", Target: tt.target, Body: []byte(tt.body),
							Headers: map[string]string{"content-type": "application/json"}})
						require.Nil(t, d)
						id := authz.Anonymous
						if tt.user != "" {
							id = &authz.Identity{Kind: authz.KindUser, Username: tt.user, Groups: tt.groups, Method: "jwt"}
						}
						got := f.policy.Decide(t.Context(), req, id)
						if tt.status == http.StatusOK {
							assert.True(t, got.Allowed, got.Message)
						} else {
							assert.False(t, got.Allowed)
							assert.Equal(t, tt.status, got.Status)
							assert.Equal(t, tt.reason, got.Reason)
						}
						want := 0
						if tt.name == "create allowed for a member" {
							want = 1
						}
						assert.Equal(t, want, f.rec.Pending())
					})
				}
			})
		})
	}
}

// TestRunGrantLatency runs the reconciler as the server does, with the real
// clock, and measures how long after the allow the creator's grant is
// readable.
func TestRunGrantLatency(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := b.open(t)
			rec := ownership.New(e.admin, e.tracking, ownership.Options{})
			f := &fixture{env: e, rec: rec}
			var err error
			f.policy, err = mlflow.New(e.admin, mlflow.Config{Recorder: rec}, nil)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { defer close(done); rec.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			const n = 5
			var lat []time.Duration
			for i := range n {
				name := fmt.Sprintf("latency-%d", i)
				start := time.Now()
				require.True(t, f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/registered-models/create", `{"name": "`+name+`"}`).Allowed)
				// MLflow answers the create a few milliseconds later.
				time.Sleep(5 * time.Millisecond)
				storetest.Must(t, e.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('%s', %d, 0)`, name, time.Now().UnixMilli()))
				require.Eventually(t, func() bool {
					g, err := e.admin.Grants(t.Context(), "alice", store.Resource{Kind: store.RegisteredModel, ID: name})
					return err == nil && g.User != nil && g.User.Permission == store.Manage
				}, 5*time.Second, 5*time.Millisecond)
				lat = append(lat, time.Since(start))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			t.Logf("%s: creator grant readable after allow: min %v, median %v, max %v (n=%d)", b.name, lat[0], lat[n/2], lat[n-1], n)
			assert.Less(t, lat[n-1], 2*time.Second)
			// The counter follows the write by a moment.
			require.Eventually(t, func() bool { return rec.Pending() == 0 }, time.Second, time.Millisecond)
			assert.Equal(t, uint64(n), rec.Stats().Granted)
		})
	}
}

func TestBoundedPending(t *testing.T) {
	e := openSQLite(t)
	f := newFixture(t, e, mlflow.Config{}, ownership.Options{MaxPending: 2})
	for _, name := range []string{"a", "b", "c"} {
		require.True(t, f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/experiments/create", `{"name": "`+name+`"}`).Allowed)
	}
	assert.Equal(t, 2, f.rec.Pending())
	assert.Equal(t, uint64(1), f.rec.Stats().Dropped)
}

func TestTrackingUnavailable(t *testing.T) {
	// The tracking database cannot be read when the create is allowed: no
	// record (we could not tell a duplicate from a new row), and the
	// request is still allowed (MLflow decides whether it exists).
	e := openSQLite(t)
	bad, err := sqlite.OpenTracking(filepath.Join(t.TempDir(), "missing-dir", "x.db"), 100*time.Millisecond)
	require.NoError(t, err)
	t.Cleanup(func() { bad.Close() })
	e.tracking = bad
	f := newFixture(t, e, mlflow.Config{}, ownership.Options{})
	require.True(t, f.decide(t, "alice", nil, "POST", "/api/2.0/mlflow/experiments/create", `{"name": "x"}`).Allowed)
	assert.Zero(t, f.rec.Pending())
	assert.Equal(t, ownership.Stats{Dropped: 1}, f.rec.Stats())
}

func TestLookupWithoutTables(t *testing.T) {
	// Before MLflow has migrated its tracking database, nothing exists yet.
	tr, err := sqlite.OpenTracking(filepath.Join(t.TempDir(), "empty.db"), 0)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	for _, n := range []store.TrackedName{{Kind: store.Experiment, Name: "x"}, {Kind: store.RegisteredModel, Name: "x"},
		{Kind: store.Scorer, Experiment: "1", Name: "x"}, {Kind: store.GatewaySecret, Name: "x"},
		{Kind: store.GatewayEndpoint, Name: "x"}, {Kind: store.GatewayModelDefinition, Name: "x"}} {
		_, err := tr.Lookup(t.Context(), n)
		assert.ErrorIs(t, err, store.ErrNotFound, n.Kind)
	}
	_, err = tr.Lookup(t.Context(), store.TrackedName{Kind: "bogus", Name: "x"})
	assert.Error(t, err)
}

// countingTracking counts the reads that reach the real tracking tables.
type countingTracking struct {
	ownership.Tracking
	n atomic.Int64
}

func (c *countingTracking) Lookup(ctx context.Context, n store.TrackedName) (store.TrackedObject, error) {
	c.n.Add(1)
	return c.Tracking.Lookup(ctx, n)
}

// TestIdleReadsNothing: the tracking tables are read only while a record
// waits, so a quiet service puts no load on MLflow's database.
func TestIdleReadsNothing(t *testing.T) {
	e := openSQLite(t)
	ct := &countingTracking{Tracking: e.tracking}
	rec := ownership.New(e.admin, ct, ownership.Options{PollInterval: 10 * time.Millisecond, FirstDelay: time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, ct.n.Load(), "reads while nothing is pending")

	rec.RecordCreate(t.Context(), store.TrackedName{Kind: store.RegisteredModel, Name: "quiet"}, "alice", time.Minute)
	require.Equal(t, 1, rec.Pending())
	time.Sleep(50 * time.Millisecond)
	assert.Greater(t, ct.n.Load(), int64(2), "polls while the record waits")
	storetest.Must(t, e.mlflow, fmt.Sprintf(`INSERT INTO registered_models (name, creation_time, last_updated_time) VALUES ('quiet', %d, 0)`, time.Now().UnixMilli()))
	require.Eventually(t, func() bool { return rec.Pending() == 0 }, 2*time.Second, time.Millisecond)
	n := ct.n.Load()
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, n, ct.n.Load(), "reads after the last record was applied")
	assert.Equal(t, ownership.Stats{Granted: 1}, rec.Stats())
}
