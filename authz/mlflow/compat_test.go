package mlflow

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// newOIDCAuthStore opens a real SQLite file made by mlflow-oidc-auth's
// migrations, with MLflow's tracking tables beside them, and seeds:
//
//	experiments 1 team-a/churn, 2 team-a/secret-x, 3 shared/z, 4 other, 5 été
//	alice: READ on 1; carol: NULL on 1
//	groups readers READ, blocked NO_PERMISSIONS, editors EDIT on 1;
//	  editors EDIT and readers 'bogus' on 3
//	bob's regex rows: ^team-a/secret p5 NO_PERMISSIONS, ^team-a/ p10 EDIT,
//	  ^shared/ p10 READ, .*/z p10 MANAGE (a tie), \w+ p20 READ
//	dave's: (?=x) p1 MANAGE (RE2 cannot), ^other p2 READ
//	group-regex: editors ^other p1 MANAGE, readers ^other p0 USE
func newOIDCAuthStore(t *testing.T) *sqlite.Store {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mlflow.db")
	exec := storetest.SQLiteExec(t, p)
	require.NoError(t, storetest.CreateOIDCAuthSchema(t.Context(), store.SQLite, exec))
	require.NoError(t, sqlite.Migrate(t.Context(), p))
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.SQLite, exec))
	storetest.Must(t, exec,
		`INSERT INTO experiments (experiment_id, name) VALUES (1, 'team-a/churn'), (2, 'team-a/secret-x'), (3, 'shared/z'), (4, 'other'), (5, 'été')`,
		`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at) VALUES ('ep-1', 'chat', 0, 0)`,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', false), (2, 'bob', false), (3, 'carol', false), (4, 'dave', false)`,
		`INSERT INTO groups (id, group_name) VALUES (1, 'readers'), (2, 'blocked'), (3, '/editors')`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'READ'), ('1', 3, NULL)`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES
			('1', 1, 'READ'), ('1', 2, 'NO_PERMISSIONS'), ('1', 3, 'EDIT'), ('3', 3, 'EDIT'), ('3', 1, 'bogus')`,
		`INSERT INTO experiment_regex_permissions (regex, priority, user_id, permission) VALUES
			('^team-a/secret', 5, 2, 'NO_PERMISSIONS'), ('^team-a/', 10, 2, 'EDIT'), ('^shared/', 10, 2, 'READ'),
			('.*/z', 10, 2, 'MANAGE'), ('\w+', 20, 2, 'READ'), ('(?=x)', 1, 4, 'MANAGE'), ('^other', 2, 4, 'READ')`,
		`INSERT INTO experiment_group_regex_permissions (regex, priority, group_id, permission) VALUES
			('^other', 1, 3, 'MANAGE'), ('^other', 0, 1, 'USE')`,
		`INSERT INTO scorer_group_permissions (experiment_id, scorer_name, group_id, permission) VALUES ('1', 's', 1, 'MANAGE')`,
		`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('chat', 1, 'USE')`,
	)
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: p})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

func TestOIDCAuthResolution(t *testing.T) {
	st := newOIDCAuthStore(t)
	exp := func(id string) store.Resource { return store.Resource{Kind: store.Experiment, ID: id} }
	tests := []struct {
		name       string
		order      []string
		user       string
		groups     []string
		res        store.Resource
		want       store.Permission
		source     string
		unreadable string // a substring of Result.Unreadable
	}{
		{"the user row outranks a better group row", nil, "alice", []string{"editors"}, exp("1"), store.Read, "user", ""},
		{"a NULL user row denies", nil, "carol", []string{"editors"}, exp("1"), store.NoPermissions, "user", "NULL or unknown"},
		{"the highest group row", nil, "bob", []string{"readers", "/editors"}, exp("1"), store.Edit, "group", ""},
		{"NO_PERMISSIONS in one group beats another group's READ", nil, "bob", []string{"readers", "blocked"}, exp("1"), store.NoPermissions, "group", ""},
		{"and another group's EDIT, whatever the order", nil, "bob", []string{"blocked", "editors"}, exp("1"), store.NoPermissions, "group", ""},
		{"an unknown group row denies", nil, "bob", []string{"editors", "readers"}, exp("3"), store.NoPermissions, "group", `group "readers"`},
		{"regex: the lowest priority number first", nil, "bob", nil, exp("2"), store.NoPermissions, "regex", ""},
		{"regex: a later priority when the first does not match", nil, "bob", nil, exp("1"), store.Edit, "regex", ""},
		{"regex: of tied priorities the weakest", nil, "bob", nil, exp("3"), store.Read, "regex", ""},
		{"a regex RE2 cannot evaluate, reached first, denies", nil, "dave", nil, exp("4"), store.NoPermissions, "regex", "lookahead"},
		{"a name the regex cannot decide denies", nil, "bob", nil, exp("5"), store.NoPermissions, "regex", "cannot decide"},
		{"group-regex across groups by priority", nil, "erin", []string{"editors", "readers"}, exp("4"), store.Use, "group-regex", ""},
		{"group-regex after an empty regex source", nil, "erin", []string{"editors"}, exp("4"), store.Manage, "group-regex", ""},
		{"custom order: group-regex before regex", []string{"group-regex", "regex"}, "dave", []string{"editors"}, exp("4"), store.Manage, "group-regex", ""},
		{"custom order: regex before user", []string{"regex", "user"}, "bob", nil, exp("1"), store.Edit, "regex", ""},
		{"custom order without group: the group row is not a source", []string{"user", "regex"}, "erin", []string{"editors"}, exp("1"), store.Read, "default", ""},
		{"no such experiment: the regex sources have no row", nil, "bob", nil, exp("99"), store.Read, "default", ""},
		{"nothing: the default", nil, "mallory", nil, exp("4"), store.Read, "default", ""},
		{"scorer group rows count under compat", nil, "erin", []string{"readers"}, store.Resource{Kind: store.Scorer, ID: "1", Name: "s"}, store.Manage, "group", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := NewResolution(CompatOIDCAuth, tt.order, store.Read, nil)
			require.NoError(t, err)
			key, err := rs.GrantKey(t.Context(), st, tt.res)
			require.NoError(t, err)
			g, err := st.Grants(t.Context(), tt.user, key)
			require.NoError(t, err)
			var notes []string
			got, err := rs.Permission(t.Context(), st, tt.user, tt.groups, tt.res, key, g, func(s Source) {
				notes = append(notes, s.Describe(tt.user))
			})
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.Permission, "%v", notes)
			assert.Equal(t, tt.source, got.Source, "%v", notes)
			if tt.unreadable == "" {
				assert.Empty(t, got.Unreadable)
			} else {
				assert.Contains(t, got.Unreadable, tt.unreadable)
			}
			again, err := rs.Permission(t.Context(), st, tt.user, tt.groups, tt.res, key, g, nil)
			require.NoError(t, err)
			assert.Equal(t, got, again, "the note must not change the result")
		})
	}
}

func TestOIDCAuthGatewayKeyedByName(t *testing.T) {
	st := newOIDCAuthStore(t)
	rs, err := NewResolution(CompatOIDCAuth, nil, store.NoPermissions, nil)
	require.NoError(t, err)
	key, err := rs.GrantKey(t.Context(), st, store.Resource{Kind: store.GatewayEndpoint, ID: "ep-1"})
	require.NoError(t, err)
	assert.Equal(t, store.Resource{Kind: store.GatewayEndpoint, ID: "chat"}, key)
	g, err := st.Grants(t.Context(), "alice", key)
	require.NoError(t, err)
	got, err := rs.Permission(t.Context(), st, "alice", nil, store.Resource{Kind: store.GatewayEndpoint, ID: "ep-1"}, key, g, nil)
	require.NoError(t, err)
	assert.Equal(t, Result{Permission: store.Use, Source: "user"}, got)

	_, err = rs.GrantKey(t.Context(), st, store.Resource{Kind: store.GatewayEndpoint, ID: "ep-9"})
	require.ErrorIs(t, err, store.ErrNotFound)

	mlflowRes, err := NewResolution("", nil, store.NoPermissions, nil)
	require.NoError(t, err)
	key, err = mlflowRes.GrantKey(t.Context(), st, store.Resource{Kind: store.GatewayEndpoint, ID: "ep-1"})
	require.NoError(t, err)
	assert.Equal(t, "ep-1", key.ID, "MLflow keys its gateway rows by id")
}

// TestMLflowResolutionIgnoresScorerGroups: MLflow's model has no scorer
// group rows; only compat applies mlflow-oidc-auth's.
func TestMLflowResolutionIgnoresScorerGroups(t *testing.T) {
	st := newOIDCAuthStore(t)
	rs, err := NewResolution(CompatMLflow, nil, store.NoPermissions, nil)
	require.NoError(t, err)
	res := store.Resource{Kind: store.Scorer, ID: "1", Name: "s"}
	g, err := st.Grants(t.Context(), "erin", res)
	require.NoError(t, err)
	require.NotEmpty(t, g.Groups)
	got, err := rs.Permission(t.Context(), st, "erin", []string{"readers"}, res, res, g, nil)
	require.NoError(t, err)
	assert.Equal(t, Result{Permission: store.NoPermissions, Source: "default"}, got)
}

func TestNewResolution(t *testing.T) {
	for _, tt := range []struct {
		compat string
		order  []string
		err    string
	}{
		{"", nil, ""},
		{"mlflow", nil, ""},
		{"oidc-auth", nil, ""},
		{"oidc-auth", []string{"group-regex", "user"}, ""},
		{"basic-auth", nil, `compat "basic-auth"`},
		{"mlflow", []string{"user"}, "needs compat: oidc-auth"},
		{"oidc-auth", []string{}, "empty"},
		{"oidc-auth", []string{"user", "workspace"}, `"workspace" is not`},
		{"oidc-auth", []string{"user", "user"}, "twice"},
	} {
		_, err := NewResolution(tt.compat, tt.order, store.NoPermissions, nil)
		if tt.err == "" {
			assert.NoError(t, err, "%s %v", tt.compat, tt.order)
		} else {
			require.Error(t, err)
			assert.True(t, strings.Contains(err.Error(), tt.err), "%v", err)
		}
	}
}

// TestRowsResolveAsTheCheck pins the ext_proc filter's row predicate to the
// policy's resolution: under compat, mlflow-oidc-auth's group rule, regex
// rows, scorer group rows and gateway rows keyed by name decide a row as
// they decide the point route; under MLflow's model, scorer group rows
// still do not count.
func TestRowsResolveAsTheCheck(t *testing.T) {
	st := newOIDCAuthStore(t)
	compat := Config{CompatConfig: CompatConfig{Compat: CompatOIDCAuth}}
	exp := func(id string) store.Resource { return store.Resource{Kind: store.Experiment, ID: id} }
	user := func(name string, groups ...string) *authz.Identity {
		return &authz.Identity{Kind: authz.KindUser, Username: name, Groups: groups, Method: "jwt"}
	}
	tests := []struct {
		name string
		cfg  Config
		id   *authz.Identity
		res  store.Resource
		want bool
	}{
		{"compat: NO_PERMISSIONS in one group beats another group's READ", compat, user("bob", "readers", "blocked"), exp("1"), false},
		{"MLflow: the best group row", Config{}, user("bob", "readers", "blocked"), exp("1"), true},
		{"compat: a regex row grants", compat, user("bob"), exp("1"), true},
		{"MLflow: regex rows are not read", Config{}, user("bob"), exp("1"), false},
		{"compat: a regex NO_PERMISSIONS row denies", compat, user("bob"), exp("2"), false},
		{"compat: a regex RE2 cannot evaluate denies", compat, user("dave"), exp("4"), false},
		{"compat: scorer group rows count", compat, user("erin", "readers"), store.Resource{Kind: store.Scorer, ID: "1", Name: "s"}, true},
		{"MLflow: scorer group rows do not", Config{}, user("erin", "readers"), store.Resource{Kind: store.Scorer, ID: "1", Name: "s"}, false},
		{"compat: a gateway row keyed by name", compat, user("alice"), store.Resource{Kind: store.GatewayEndpoint, ID: "ep-1"}, true},
		{"compat: a gateway id that names nothing", compat, user("alice"), store.Resource{Kind: store.GatewayEndpoint, ID: "ep-9"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(st, tt.cfg, nil)
			require.NoError(t, err)
			rows, err := p.Rows(t.Context(), tt.id, &authz.Request{})
			require.NoError(t, err)
			got, err := rows.CanRead(t.Context(), tt.res)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			if tt.res.Kind == store.Experiment {
				r, deny := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "mlflow", Target: "/api/2.0/mlflow/experiments/get?experiment_id=" + tt.res.ID})
				require.Nil(t, deny)
				d := p.Decide(t.Context(), r, tt.id)
				assert.Equal(t, tt.want, d.Allowed, "the row and the point route disagree: %s", d.Message)
			}
		})
	}
}
