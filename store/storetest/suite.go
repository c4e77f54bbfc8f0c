// Package storetest is the conformance suite that every store backend
// passes (after pgx's pgxtest: one test body, several backends), plus the
// throwaway PostgreSQL server and MLflow tracking schema the tests use.
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//	func TestConformance(t *testing.T) { storetest.Run(t, openMyBackend) }
package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
)

// Setup says what database an Opener must prepare; PrepareAuth does it.
type Setup struct {
	// NoGroupTables asks for an auth database without mlflow-oidc-auth's
	// group tables (plain MLflow).
	NoGroupTables bool
	// PasswordExpiration asks for mlflow-oidc-auth's users table, with its
	// password_expiration column, on a database migrate made (an OIDCAuth
	// database has that column already).
	PasswordExpiration bool
	// OIDCAuth asks for mlflow-oidc-auth's users database, made by its own
	// migrations (CreateOIDCAuthSchema), on which migrate then ran.
	OIDCAuth bool
	// Roles asks for MLflow 3.12+'s roles layout: the database migrate
	// made, with LegacyRows written, then upgraded by MLflow's own
	// migrations (MigrateToRoles), then migrate again (its triggers).
	Roles bool
	// LegacyRows are statements run before the upgrade to the roles
	// layout, whose e5f6a7b8c9d0 copies them.
	LegacyRows []string
}

// AddPasswordExpiration adds mlflow-oidc-auth's users.password_expiration
// column (a SQLAlchemy DateTime: TIMESTAMP WITHOUT TIME ZONE on
// PostgreSQL, text such as "2026-01-01 12:00:00.000000" on SQLite).
func AddPasswordExpiration(ctx context.Context, exec ExecFunc) error {
	return exec(ctx, "ALTER TABLE users ADD COLUMN password_expiration TIMESTAMP")
}

// PrepareAuth prepares a fresh auth database as s says, through exec
// (and query, which reads it): mlflow-oidc-auth's schema when asked, then
// migrate (the backend's Migrate on that database), then MLflow's upgrade
// to the roles layout, the group tables dropped and the
// password_expiration column added when asked.
func PrepareAuth(t testing.TB, s Setup, d store.Dialect, exec ExecFunc, query QueryFunc, migrate func(context.Context) error) {
	t.Helper()
	if s.OIDCAuth {
		require.NoError(t, CreateOIDCAuthSchema(t.Context(), d, exec))
	}
	require.NoError(t, migrate(t.Context()))
	if s.Roles {
		Must(t, exec, s.LegacyRows...)
		require.NoError(t, MigrateToRoles(t.Context(), d, exec, query))
		require.NoError(t, migrate(t.Context()))
	}
	if s.NoGroupTables {
		require.NoError(t, DropGroupTables(t.Context(), exec))
	}
	if s.PasswordExpiration && !s.OIDCAuth {
		require.NoError(t, AddPasswordExpiration(t.Context(), exec))
	}
}

// Harness is one backend opened on fresh databases whose auth tables were
// migrated and whose tracking tables were made with CreateTrackingSchema.
type Harness struct {
	Reader store.Reader
	// ExecAuth and ExecTracking run SQL on connections of their own, as
	// another process would (MLflow, or an operator's psql).
	ExecAuth, ExecTracking ExecFunc
	// QueryAuth returns the first column of every row of a query on the
	// auth database (cast it to text in the SQL); AdminRun needs it.
	QueryAuth QueryFunc
	// OneDatabase says that the tracking and auth tables share one
	// database.
	OneDatabase bool
	// Watch is the backend's change watch (see postgres.Store.Watch).
	Watch func(ctx context.Context, invalidate func(table string), flush func()) error
}

// QueryFunc runs one query and returns its first column, as text.
type QueryFunc func(ctx context.Context, sql string, args ...any) ([]string, error)

// Opener opens a backend on fresh databases prepared as s says.
type Opener func(t *testing.T, s Setup) Harness

// DropGroupTables removes mlflow-oidc-auth's group tables.
func DropGroupTables(ctx context.Context, exec ExecFunc) error {
	for _, tbl := range []string{"experiment_group_permissions", "registered_model_group_permissions", "groups"} {
		if err := exec(ctx, "DROP TABLE "+tbl); err != nil {
			return err
		}
	}
	return nil
}

// Run runs the conformance suite against the backend that open opens.
func Run(t *testing.T, open Opener) {
	t.Run("Grants", func(t *testing.T) { testGrants(t, open) })
	t.Run("User", func(t *testing.T) { testUser(t, open) })
	t.Run("Resolve", func(t *testing.T) { testResolve(t, open) })
	t.Run("RenameVisible", func(t *testing.T) { testRename(t, open) })
	t.Run("NoGroupTables", func(t *testing.T) { testNoGroups(t, open) })
	t.Run("MissingTrackingTables", func(t *testing.T) { testMissingTracking(t, open) })
	t.Run("RevokeSeenThroughCache", func(t *testing.T) { testInvalidation(t, open) })
	t.Run("Password", func(t *testing.T) { testPassword(t, open) })
	t.Run("PasswordExpiration", func(t *testing.T) { testPasswordExpiration(t, open) })
	t.Run("PasswordChangeSeenThroughCache", func(t *testing.T) { testPasswordInvalidation(t, open) })
	t.Run("NoPatterns", func(t *testing.T) { testNoPatterns(t, open) })
	t.Run("OIDCAuth", func(t *testing.T) { testOIDCAuth(t, open) })
}

// grants reads user's grants on res with Grants and, when r reads
// batches (store.BatchReader, as the cache's background re-reads use it),
// in a batch too, where they must read the same: res's key twice, around
// another user's key on the same resource and the user's key on a resource
// of another kind (a batch of several kinds).
func grants(t *testing.T, r store.Reader, user string, res store.Resource) (store.Grants, error) {
	t.Helper()
	got, err := r.Grants(t.Context(), user, res)
	br, ok := r.(store.BatchReader)
	if err != nil || !ok {
		return got, err
	}
	other := store.Resource{Kind: store.Experiment, ID: "1"}
	if res.Kind == store.Experiment {
		other = store.Resource{Kind: store.RegisteredModel, ID: "model"}
	}
	otherGot, err := r.Grants(t.Context(), user, other)
	require.NoError(t, err)
	key := store.GrantsKey{Username: user, Resource: res}
	batch, err := br.GrantsBatch(t.Context(), []store.GrantsKey{key, {Username: "bob", Resource: res}, {Username: user, Resource: other}, key})
	require.NoError(t, err)
	require.Len(t, batch, 4)
	assert.Equal(t, got, batch[0], "GrantsBatch reads what Grants reads")
	assert.Equal(t, otherGot, batch[2], "GrantsBatch reads what Grants reads, another kind in the same batch")
	assert.Equal(t, got, batch[3], "GrantsBatch reads what Grants reads")
	return got, nil
}

// seedAuth writes users 1 alice, 2 root (admin), 3 nulladmin (is_admin
// NULL), 4 bob, and their grants.
func seedAuth(t *testing.T, exec ExecFunc, groups bool) {
	Must(t, exec,
		`INSERT INTO users (id, username, password_hash, is_admin) VALUES
			(1, 'alice', 'x', false), (2, 'root', 'x', true), (3, 'nulladmin', 'x', NULL), (4, 'bob', 'x', false)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES
			('1', 1, 'READ'), ('2', 1, 'NO_PERMISSIONS'), ('3', 1, NULL), ('4', 1, 'SUPERUSER'),
			('5', 1, 'MANAGE'), ('1', 4, 'EDIT')`,
		`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) VALUES
			('m1', 1, 'EDIT', 'default'), ('m1', 4, 'READ', 'other'), ('m1', 2, 'read', 'default')`,
		`INSERT INTO scorer_permissions (experiment_id, scorer_name, user_id, permission) VALUES
			('1', 's1', 1, 'USE'), ('1', 's2', 1, 'READ')`,
		`INSERT INTO gateway_secret_permissions (secret_id, user_id, permission) VALUES ('sec1', 1, 'READ')`,
		`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('ep1', 1, 'USE')`,
		`INSERT INTO gateway_model_definition_permissions (model_definition_id, user_id, permission) VALUES ('md1', 1, 'MANAGE')`,
	)
	if groups {
		Must(t, exec,
			`INSERT INTO groups (id, group_name) VALUES (1, 'team'), (2, '/ops'), (3, 'dup'), (4, '/dup')`,
			`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES
				('1', 1, 'EDIT'), ('1', 2, 'READ'), ('6', 1, 'bogus'), ('7', 3, 'MANAGE'), ('7', 4, 'READ'), ('8', 1, NULL)`,
			`INSERT INTO registered_model_group_permissions (name, group_id, permission, prompt) VALUES
				('m1', 1, 'READ', false), ('p1', 2, 'EDIT', true)`,
		)
	}
}

func seedTracking(t *testing.T, exec ExecFunc) {
	Must(t, exec,
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) VALUES
			(0, 'Default', 'active', 'default'), (1, 'exp-one', 'active', 'default'),
			(2, 'exp-two', 'deleted', 'default'), (3, 'exp-one', 'active', 'other')`,
		`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage) VALUES
			('r1', 1, 'active'), ('r2', 2, 'deleted')`,
		`INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status) VALUES ('tr-1', 2, 0, 'OK')`,
		`INSERT INTO assessments (assessment_id, trace_id, name, assessment_type, value, created_timestamp,
			last_updated_timestamp, source_type, valid) VALUES ('a-1', 'tr-1', 'q', 'feedback', '1', 0, 0, 'HUMAN', true)`,
		`INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms,
			last_updated_timestamp_ms, status, lifecycle_stage) VALUES
			('m-1', 1, 'a', 'x', 0, 0, 1, 'active'), ('m-del', 1, 'b', 'x', 0, 0, 1, 'deleted')`,
		`INSERT INTO jobs (id, creation_time, job_name, params, status, last_update_time) VALUES
			('j1', 0, 'optimize', '{"experiment_id": "2", "x": 1}', 0, 0),
			('j2', 0, 'optimize', '{}', 0, 0),
			('j3', 0, 'optimize', '{"experiment_id": 7}', 0, 0),
			('j4', 0, 'optimize', 'not json', 0, 0),
			('j5', 0, 'optimize', '{"experiment_id": "1; DROP"}', 0, 0)`,
		`INSERT INTO issues (issue_id, experiment_id) VALUES ('iss-1', 1)`,
		`INSERT INTO evaluation_datasets (dataset_id, name) VALUES ('d1', 'ds'), ('d-none', 'empty')`,
		`INSERT INTO entity_associations (association_id, source_type, source_id, destination_type, destination_id) VALUES
			('a1', 'EVALUATION_DATASET', 'd1', 'EXPERIMENT', '2'),
			('a2', 'EVALUATION_DATASET', 'd1', 'EXPERIMENT', '1'),
			('a3', 'EVALUATION_DATASET', 'd1', 'RUN', 'r1'),
			('a4', 'TRACE', 'd-none', 'EXPERIMENT', '1')`,
		`INSERT INTO scorers (experiment_id, scorer_name, scorer_id) VALUES (1, 'sc', 'sc-1'), (1, 'idle', 'sc-2')`,
		`INSERT INTO online_scoring_configs (online_scoring_config_id, scorer_id, sample_rate, experiment_id) VALUES
			('c1', 'sc-1', 0.5, 2), ('c2', 'sc-1', 1, 1), ('c3', 'sc-1', 1, 2)`,
		`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at, workspace) VALUES
			('ep-123', 'chat', 0, 0, 'default'), ('ep-999', 'chat', 0, 0, 'other')`,
	)
}

func grant(p store.Permission) *store.Grant { return &store.Grant{Permission: p, Valid: true} }

var invalid = &store.Grant{}

func testGrants(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedAuth(t, h.ExecAuth, true)
	exp := func(id string) store.Resource { return store.Resource{Kind: store.Experiment, ID: id} }
	tests := []struct {
		name string
		user string
		res  store.Resource
		want store.Grants
	}{
		{"user row and groups", "alice", exp("1"), store.Grants{UserExists: true, User: grant(store.Read),
			Groups: map[string]store.Grant{"team": *grant(store.Edit), "ops": *grant(store.Read)}}},
		{"explicit NO_PERMISSIONS is a valid row", "alice", exp("2"), store.Grants{UserExists: true, User: grant(store.NoPermissions)}},
		{"NULL permission is invalid", "alice", exp("3"), store.Grants{UserExists: true, User: invalid}},
		{"unknown permission is invalid", "alice", exp("4"), store.Grants{UserExists: true, User: invalid}},
		{"unknown group permission is invalid", "alice", exp("6"), store.Grants{UserExists: true,
			Groups: map[string]store.Grant{"team": *invalid}}},
		{"NULL group permission is invalid", "bob", exp("8"), store.Grants{UserExists: true,
			Groups: map[string]store.Grant{"team": *invalid}}},
		{"duplicate normalized groups keep the weaker", "bob", exp("7"), store.Grants{UserExists: true,
			Groups: map[string]store.Grant{"dup": *grant(store.Read)}}},
		{"no row", "alice", exp("99"), store.Grants{UserExists: true}},
		{"other user's row is not mine", "bob", exp("5"), store.Grants{UserExists: true}},
		{"admin", "root", exp("1"), store.Grants{UserExists: true, UserAdmin: true,
			Groups: map[string]store.Grant{"team": *grant(store.Edit), "ops": *grant(store.Read)}}},
		{"NULL is_admin is not admin", "nulladmin", exp("1"), store.Grants{UserExists: true,
			Groups: map[string]store.Grant{"team": *grant(store.Edit), "ops": *grant(store.Read)}}},
		{"unknown user still gets group rows", "ghost", exp("1"), store.Grants{
			Groups: map[string]store.Grant{"team": *grant(store.Edit), "ops": *grant(store.Read)}}},
		{"id is compared as a string", "alice", exp("01"), store.Grants{UserExists: true}},
		{"registered model in default workspace only", "alice", store.Resource{Kind: store.RegisteredModel, ID: "m1"},
			store.Grants{UserExists: true, User: grant(store.Edit), Groups: map[string]store.Grant{"team": *grant(store.Read)}}},
		{"registered model row in another workspace is ignored", "bob", store.Resource{Kind: store.RegisteredModel, ID: "m1"},
			store.Grants{UserExists: true, Groups: map[string]store.Grant{"team": *grant(store.Read)}}},
		{"lower-case permission is unknown", "root", store.Resource{Kind: store.RegisteredModel, ID: "m1"},
			store.Grants{UserExists: true, UserAdmin: true, User: invalid, Groups: map[string]store.Grant{"team": *grant(store.Read)}}},
		{"prompt group row", "bob", store.Resource{Kind: store.RegisteredModel, ID: "p1"},
			store.Grants{UserExists: true, Groups: map[string]store.Grant{"ops": *grant(store.Edit)}}},
		{"scorer", "alice", store.Resource{Kind: store.Scorer, ID: "1", Name: "s1"}, store.Grants{UserExists: true, User: grant(store.Use)}},
		{"scorer other name", "alice", store.Resource{Kind: store.Scorer, ID: "1", Name: "s3"}, store.Grants{UserExists: true}},
		{"scorer does not fall back to experiment", "bob", store.Resource{Kind: store.Scorer, ID: "1", Name: "s1"}, store.Grants{UserExists: true}},
		{"gateway secret", "alice", store.Resource{Kind: store.GatewaySecret, ID: "sec1"}, store.Grants{UserExists: true, User: grant(store.Read)}},
		{"gateway endpoint", "alice", store.Resource{Kind: store.GatewayEndpoint, ID: "ep1"}, store.Grants{UserExists: true, User: grant(store.Use)}},
		{"gateway model definition", "alice", store.Resource{Kind: store.GatewayModelDefinition, ID: "md1"}, store.Grants{UserExists: true, User: grant(store.Manage)}},
		{"gateway kinds do not mix", "alice", store.Resource{Kind: store.GatewayEndpoint, ID: "sec1"}, store.Grants{UserExists: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := grants(t, h.Reader, tt.user, tt.res)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	t.Run("unknown kind is an error", func(t *testing.T) {
		_, err := h.Reader.Grants(t.Context(), "alice", store.Resource{Kind: "bogus", ID: "1"})
		require.Error(t, err)
	})
}

func testUser(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedAuth(t, h.ExecAuth, true)
	tests := []struct {
		user          string
		exists, admin bool
	}{
		{"alice", true, false}, {"root", true, true}, {"nulladmin", true, false}, {"ghost", false, false}, {"", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			exists, admin, err := h.Reader.User(t.Context(), tt.user)
			require.NoError(t, err)
			assert.Equal(t, tt.exists, exists)
			assert.Equal(t, tt.admin, admin)
		})
	}
}

func testResolve(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedTracking(t, h.ExecTracking)
	tests := []struct {
		name   string
		lookup store.Lookup
		key    string
		want   []string // nil: ErrNotFound
	}{
		{"run", store.RunExperiment, "r1", []string{"1"}},
		{"deleted run still resolves", store.RunExperiment, "r2", []string{"2"}},
		{"run missing", store.RunExperiment, "nope", nil},
		{"trace", store.TraceExperiment, "tr-1", []string{"2"}},
		{"trace missing", store.TraceExperiment, "tr-2", nil},
		{"assessment", store.AssessmentExperiment, "a-1", []string{"2"}},
		{"assessment missing", store.AssessmentExperiment, "a-2", nil},
		{"logged model", store.LoggedModelExperiment, "m-1", []string{"1"}},
		{"deleted logged model", store.LoggedModelExperiment, "m-del", nil},
		{"experiment by name in default workspace", store.ExperimentByName, "exp-one", []string{"1"}},
		{"deleted experiment by name", store.ExperimentByName, "exp-two", []string{"2"}},
		{"experiment name missing", store.ExperimentByName, "exp-three", nil},
		{"experiment id", store.ExperimentByID, "1", []string{"1"}},
		{"experiment id zero", store.ExperimentByID, "0", []string{"0"}},
		{"experiment id missing", store.ExperimentByID, "999", nil},
		{"experiment id non-numeric", store.ExperimentByID, "abc", nil},
		{"experiment id with leading zero", store.ExperimentByID, "01", nil},
		{"experiment id negative", store.ExperimentByID, "-1", nil},
		{"experiment id out of range", store.ExperimentByID, "99999999999", nil},
		{"experiment id empty", store.ExperimentByID, "", nil},
		{"job", store.JobExperiment, "j1", []string{"2"}},
		{"job without experiment", store.JobExperiment, "j2", nil},
		{"job with numeric experiment", store.JobExperiment, "j3", []string{"7"}},
		{"job with bad params", store.JobExperiment, "j4", nil},
		{"job with non-id experiment", store.JobExperiment, "j5", nil},
		{"job missing", store.JobExperiment, "j9", nil},
		{"issue", store.IssueExperiment, "iss-1", []string{"1"}},
		{"issue missing", store.IssueExperiment, "iss-2", nil},
		{"dataset", store.DatasetExperiments, "d1", []string{"1", "2"}},
		{"dataset without experiments", store.DatasetExperiments, "d-none", nil},
		{"dataset missing", store.DatasetExperiments, "d9", nil},
		{"online scoring configs of a scorer", store.OnlineScoringExperiments, "sc-1", []string{"1", "2"}},
		{"scorer without online scoring", store.OnlineScoringExperiments, "sc-2", nil},
		{"gateway endpoint by name", store.GatewayEndpointByName, "chat", []string{"ep-123"}},
		{"gateway endpoint missing", store.GatewayEndpointByName, "nope", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.Reader.Resolve(t.Context(), tt.lookup, tt.key)
			if tt.want == nil {
				require.ErrorIs(t, err, store.ErrNotFound)
				assert.NotErrorIs(t, err, store.ErrUnavailable)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func testRename(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedAuth(t, h.ExecAuth, true)
	rm := func(name string) store.Resource { return store.Resource{Kind: store.RegisteredModel, ID: name} }
	// MLflow's RenameRegisteredModel after-request hook rewrites the rows.
	Must(t, h.ExecAuth, `UPDATE registered_model_permissions SET name = 'm2' WHERE name = 'm1'`)
	got, err := h.Reader.Grants(t.Context(), "alice", rm("m2"))
	require.NoError(t, err)
	assert.Equal(t, grant(store.Edit), got.User)
	got, err = h.Reader.Grants(t.Context(), "alice", rm("m1"))
	require.NoError(t, err)
	assert.Nil(t, got.User)
}

func testNoGroups(t *testing.T, open Opener) {
	h := open(t, Setup{NoGroupTables: true})
	seedAuth(t, h.ExecAuth, false)
	got, err := h.Reader.Grants(t.Context(), "alice", store.Resource{Kind: store.Experiment, ID: "1"})
	require.NoError(t, err)
	assert.Equal(t, store.Grants{UserExists: true, User: grant(store.Read)}, got)
	got, err = h.Reader.Grants(t.Context(), "alice", store.Resource{Kind: store.RegisteredModel, ID: "m1"})
	require.NoError(t, err)
	assert.Equal(t, store.Grants{UserExists: true, User: grant(store.Edit)}, got)
}

func testMissingTracking(t *testing.T, open Opener) {
	h := open(t, Setup{})
	for _, tbl := range []string{"issues", "jobs", "entity_associations", "endpoints", "logged_models", "assessments", "trace_info", "online_scoring_configs"} {
		Must(t, h.ExecTracking, "DROP TABLE "+tbl)
	}
	for _, l := range []store.Lookup{store.IssueExperiment, store.JobExperiment, store.DatasetExperiments,
		store.GatewayEndpointByName, store.LoggedModelExperiment, store.TraceExperiment, store.AssessmentExperiment,
		store.OnlineScoringExperiments} {
		t.Run(string(l), func(t *testing.T) {
			_, err := h.Reader.Resolve(t.Context(), l, "x")
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	}
}

// testInvalidation revokes a grant with plain SQL from another connection
// and requires the cache in front of the store to stop allowing within 1s.
func testInvalidation(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedAuth(t, h.ExecAuth, true)
	c := watchedCache(t, h)
	res := store.Resource{Kind: store.Experiment, ID: "1"}
	for range 2 { // the second read is a hit
		g, err := c.Grants(t.Context(), "alice", res)
		require.NoError(t, err)
		require.Equal(t, grant(store.Read), g.User)
	}
	require.EqualValues(t, 1, c.Stats().GrantHits)

	start := time.Now()
	Must(t, h.ExecAuth, `DELETE FROM experiment_permissions WHERE experiment_id = '1' AND user_id = 1`)
	for {
		g, err := c.Grants(t.Context(), "alice", res)
		require.NoError(t, err)
		if g.User == nil {
			break
		}
		require.Less(t, time.Since(start), time.Second, "revoke not seen through the cache within 1s")
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revoke seen through the cache after %v", time.Since(start))

	start = time.Now()
	Must(t, h.ExecAuth, `UPDATE experiment_group_permissions SET permission = 'NO_PERMISSIONS' WHERE group_id = 1`)
	for {
		g, err := c.Grants(t.Context(), "alice", res)
		require.NoError(t, err)
		if g.Groups["team"] == *grant(store.NoPermissions) {
			break
		}
		require.Less(t, time.Since(start), time.Second, "group revoke not seen through the cache within 1s")
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("group revoke seen through the cache after %v", time.Since(start))
}

// watchedCache puts a cache (grants kept for an hour: only the watch can
// drop them) in front of h's store, kept fresh by h.Watch as a running
// server keeps it, and returns once the watch is live.
func watchedCache(t *testing.T, h Harness) *cache.Cache {
	t.Helper()
	c := cache.New(h.Reader, cache.Options{GrantTTL: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	live := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- h.Watch(ctx, func(string) { c.Invalidate() }, func() {
			c.Flush()
			select {
			case live <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("watch returned %v", err)
		}
	})
	select {
	case <-live:
	case <-time.After(10 * time.Second):
		t.Fatal("watch never went live")
	}
	return c
}

// credentials returns h's store as store.Credentials: every backend reads
// password hashes for Basic authentication.
func credentials(t *testing.T, h Harness) store.Credentials {
	t.Helper()
	c, ok := h.Reader.(store.Credentials)
	require.True(t, ok, "%T does not implement store.Credentials", h.Reader)
	return c
}

// werkzeugHash is a hash in the format werkzeug 3 writes (the value is
// never verified here; the store returns it verbatim).
var werkzeugHash = "scrypt:32768:8:1$N5yGVtVnAzr6gF0e$" + strings.Repeat("0f", 64)

func testPassword(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedAuth(t, h.ExecAuth, true)
	Must(t, h.ExecAuth,
		`UPDATE users SET password_hash = '`+werkzeugHash+`' WHERE username = 'alice'`,
		`UPDATE users SET password_hash = NULL WHERE username = 'nulladmin'`,
		`UPDATE users SET password_hash = '' WHERE username = 'bob'`)
	cr := credentials(t, h)
	tests := []struct {
		user string
		want string // "": ErrNotFound
	}{
		{"alice", werkzeugHash},
		{"root", "x"}, // returned verbatim, whatever it holds
		{"nulladmin", ""},
		{"bob", ""},
		{"ghost", ""},
		{"", ""},
		{"ALICE", ""}, // usernames compare exactly, as MLflow's query does
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			got, err := cr.Password(t.Context(), tt.user)
			if tt.want == "" {
				require.ErrorIs(t, err, store.ErrNotFound)
				assert.NotErrorIs(t, err, store.ErrUnavailable)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, store.Password{Hash: tt.want}, got, "MLflow's users table has no expiration")
		})
	}
}

// testPasswordExpiration reads mlflow-oidc-auth's users table, whose
// password_hash holds an access token that expires.
func testPasswordExpiration(t *testing.T, open Opener) {
	h := open(t, Setup{PasswordExpiration: true})
	seedAuth(t, h.ExecAuth, true)
	Must(t, h.ExecAuth,
		`UPDATE users SET password_expiration = '2026-01-01 12:00:00.000000' WHERE username = 'alice'`,
		`UPDATE users SET password_expiration = '2030-06-30 23:59:59' WHERE username = 'root'`)
	cr := credentials(t, h)
	tests := []struct {
		user string
		want time.Time
	}{
		{"alice", time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)},
		{"root", time.Date(2030, 6, 30, 23, 59, 59, 0, time.UTC)},
		{"bob", time.Time{}}, // NULL: never expires
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			got, err := cr.Password(t.Context(), tt.user)
			require.NoError(t, err)
			assert.Equal(t, "x", got.Hash)
			assert.True(t, tt.want.Equal(got.Expires), "expires %v, want %v", got.Expires, tt.want)
		})
	}
	p, _ := cr.Password(t.Context(), "alice")
	assert.True(t, p.Expired(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)))
	assert.False(t, p.Expired(time.Date(2026, 1, 1, 11, 59, 59, 0, time.UTC)))

	// SQLite stores whatever text it is given; one it cannot read as a
	// time is an expiry long past, never "no expiry". (PostgreSQL refuses
	// to store it at all.)
	if h.ExecAuth(t.Context(), `UPDATE users SET password_expiration = 'next tuesday' WHERE username = 'bob'`) == nil {
		got, err := cr.Password(t.Context(), "bob")
		require.NoError(t, err)
		assert.True(t, got.Expired(time.Now()), "an unreadable expiration must refuse, got %v", got.Expires)
	}
}

// testPasswordInvalidation changes a password and deletes a user with plain
// SQL from another connection, as MLflow's update_user and delete_user do,
// and requires the cache in front of the store to serve the change within
// 1s: the Basic authenticator re-reads the hash through it on every request.
func testPasswordInvalidation(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedAuth(t, h.ExecAuth, true)
	c := watchedCache(t, h)
	for range 2 { // the second read is a hit
		got, err := c.Password(t.Context(), "alice")
		require.NoError(t, err)
		require.Equal(t, "x", got.Hash)
	}
	require.EqualValues(t, 1, c.Stats().HashHits)

	waitFor := func(what string, done func() bool) {
		t.Helper()
		start := time.Now()
		for !done() {
			require.Less(t, time.Since(start), time.Second, "%s not seen through the cache within 1s", what)
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s seen through the cache after %v", what, time.Since(start))
	}
	Must(t, h.ExecAuth, `UPDATE users SET password_hash = '`+werkzeugHash+`' WHERE username = 'alice'`)
	waitFor("password change", func() bool {
		got, err := c.Password(t.Context(), "alice")
		require.NoError(t, err)
		return got.Hash == werkzeugHash
	})
	Must(t, h.ExecAuth, `DELETE FROM scorer_permissions WHERE user_id = 1`,
		`DELETE FROM gateway_secret_permissions WHERE user_id = 1`,
		`DELETE FROM gateway_endpoint_permissions WHERE user_id = 1`,
		`DELETE FROM gateway_model_definition_permissions WHERE user_id = 1`,
		`DELETE FROM registered_model_permissions WHERE user_id = 1`,
		`DELETE FROM experiment_permissions WHERE user_id = 1`,
		`DELETE FROM users WHERE username = 'alice'`)
	waitFor("user deletion", func() bool {
		_, err := c.Password(t.Context(), "alice")
		if errors.Is(err, store.ErrNotFound) {
			return true
		}
		require.NoError(t, err)
		return false
	})
}
