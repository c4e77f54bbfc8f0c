package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// seedOIDCAuth writes what mlflow-oidc-auth's admin UI would have: users
// 1 alice, 2 bob, 3 root (admin); groups 1 team, 2 /ops, 3 other; direct,
// group, regex and group-regex rows of every kind. Gateway rows are keyed
// by the object's name, as mlflow-oidc-auth writes them.
func seedOIDCAuth(t *testing.T, exec ExecFunc) {
	Must(t, exec,
		`INSERT INTO users (id, username, display_name, is_admin, is_service_account) VALUES
			(1, 'alice', 'Alice', false, false), (2, 'bob', 'Bob', false, false), (3, 'root', 'Root', true, false)`,
		`INSERT INTO groups (id, group_name) VALUES (1, 'team'), (2, '/ops'), (3, 'other')`,
		`INSERT INTO user_groups (user_id, group_id) VALUES (1, 1), (2, 3)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'READ')`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES ('1', 1, 'EDIT'), ('2', 2, 'NO_PERMISSIONS')`,
		`INSERT INTO registered_model_permissions (name, user_id, permission) VALUES ('m1', 1, 'MANAGE')`,
		`INSERT INTO registered_model_group_permissions (name, group_id, permission, prompt) VALUES ('m1', 1, 'READ', false), ('p1', 2, 'EDIT', true)`,
		`INSERT INTO scorer_permissions (experiment_id, scorer_name, user_id, permission) VALUES ('1', 's1', 1, 'USE')`,
		`INSERT INTO scorer_group_permissions (experiment_id, scorer_name, group_id, permission) VALUES ('1', 's1', 1, 'EDIT')`,
		`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('chat', 1, 'USE')`,
		`INSERT INTO experiment_regex_permissions (id, regex, priority, user_id, permission) VALUES
			(1, '^team-a/', 10, 1, 'READ'), (2, '^team-a/secret', 5, 1, 'NO_PERMISSIONS'), (3, '.*', 10, 1, NULL),
			(4, '.*', 1, 2, 'MANAGE')`,
		`INSERT INTO experiment_group_regex_permissions (id, regex, priority, group_id, permission) VALUES
			(1, '^shared/', 3, 1, 'EDIT'), (2, '^ops/', 1, 2, 'MANAGE'), (3, '.*', 0, 3, 'MANAGE')`,
		`INSERT INTO registered_model_regex_permissions (id, regex, priority, user_id, permission, prompt) VALUES
			(1, '^m', 1, 1, 'EDIT', false), (2, '^p', 1, 1, 'MANAGE', true), (3, '^n', 1, 1, 'MANAGE', NULL)`,
		`INSERT INTO registered_model_group_regex_permissions (id, regex, priority, group_id, permission, prompt) VALUES
			(1, '^m', 2, 1, 'READ', false), (2, '^p', 2, 1, 'MANAGE', true)`,
		`INSERT INTO scorer_regex_permissions (id, regex, priority, user_id, permission) VALUES (1, '^s', 1, 1, 'READ')`,
		`INSERT INTO scorer_group_regex_permissions (id, regex, priority, group_id, permission) VALUES (1, '^s', 1, 1, 'EDIT')`,
		`INSERT INTO gateway_secret_regex_permissions (id, regex, priority, user_id, permission) VALUES (1, '^key', 1, 1, 'USE')`,
		`INSERT INTO gateway_endpoint_group_regex_permissions (id, regex, priority, group_id, permission) VALUES (1, '^ch', 1, 1, 'USE')`,
		`INSERT INTO gateway_model_definition_regex_permissions (id, regex, priority, user_id, permission) VALUES (1, '^gpt', 1, 1, 'READ')`,
	)
}

func pattern(id int64, group, regex string, priority int64, g *store.Grant) store.PatternGrant {
	return store.PatternGrant{ID: id, Group: group, Regex: regex, Priority: priority, Grant: *g}
}

// testOIDCAuth reads mlflow-oidc-auth's own database, made by its
// migrations: its direct rows with its columns, its scorer group rows, its
// regex rows in its order, and the names its rows are keyed by or match.
func testOIDCAuth(t *testing.T, open Opener) {
	h := open(t, Setup{OIDCAuth: true})
	seedOIDCAuth(t, h.ExecAuth)
	Must(t, h.ExecTracking,
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (1, 'team-a/churn', 'active'), (2, 'ops/x', 'deleted')`,
		`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at) VALUES ('ep-1', 'chat', 0, 0)`,
		`INSERT INTO secrets (secret_id, secret_name, created_at, last_updated_at) VALUES ('sec-1', 'key-1', 0, 0)`,
		`INSERT INTO model_definitions (model_definition_id, name, secret_id, created_at, last_updated_at) VALUES ('md-1', 'gpt-x', 'sec-1', 0, 0)`,
	)
	ctx := t.Context()

	t.Run("Grants", func(t *testing.T) {
		tests := []struct {
			name string
			user string
			res  store.Resource
			want store.Grants
		}{
			{"experiment", "alice", store.Resource{Kind: store.Experiment, ID: "1"},
				store.Grants{UserExists: true, User: grant(store.Read), Groups: map[string]store.Grant{"team": *grant(store.Edit)}}},
			{"registered model without a workspace column", "alice", store.Resource{Kind: store.RegisteredModel, ID: "m1"},
				store.Grants{UserExists: true, User: grant(store.Manage), Groups: map[string]store.Grant{"team": *grant(store.Read)}}},
			{"scorer group rows", "bob", store.Resource{Kind: store.Scorer, ID: "1", Name: "s1"},
				store.Grants{UserExists: true, Groups: map[string]store.Grant{"team": *grant(store.Edit)}}},
			{"gateway keyed by name", "alice", store.Resource{Kind: store.GatewayEndpoint, ID: "chat"},
				store.Grants{UserExists: true, User: grant(store.Use)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := grants(t, h.Reader, tt.user, tt.res)
				require.NoError(t, err)
				if tt.res.Kind == store.Experiment {
					// The name is read in the same round trip when the
					// tracking tables share the auth database.
					assert.Equal(t, h.OneDatabase, got.HasName)
					if got.HasName {
						assert.Equal(t, "team-a/churn", got.Name)
					}
					got.Name, got.HasName = "", false
				}
				assert.Equal(t, tt.want, got)
			})
		}
	})

	t.Run("Patterns", func(t *testing.T) {
		tests := []struct {
			name   string
			user   string
			groups []string
			kind   store.ResourceKind
			want   store.Patterns
		}{
			{"priority then id; another user's rows are not mine", "alice", nil, store.Experiment, store.Patterns{User: []store.PatternGrant{
				pattern(2, "", "^team-a/secret", 5, grant(store.NoPermissions)),
				pattern(1, "", "^team-a/", 10, grant(store.Read)),
				pattern(3, "", ".*", 10, invalid),
			}}},
			{"the token's groups, with or without Keycloak's slash; not user_groups", "alice", []string{"team", "ops"}, store.Experiment, store.Patterns{
				User: []store.PatternGrant{
					pattern(2, "", "^team-a/secret", 5, grant(store.NoPermissions)),
					pattern(1, "", "^team-a/", 10, grant(store.Read)),
					pattern(3, "", ".*", 10, invalid),
				},
				Groups: []store.PatternGrant{
					pattern(2, "/ops", "^ops/", 1, grant(store.Manage)),
					pattern(1, "team", "^shared/", 3, grant(store.Edit)),
				}}},
			{"unknown user, known group", "ghost", []string{"/team"}, store.Experiment, store.Patterns{Groups: []store.PatternGrant{
				pattern(1, "team", "^shared/", 3, grant(store.Edit)),
			}}},
			{"registered models read the prompt = false rows only", "alice", []string{"team"}, store.RegisteredModel, store.Patterns{
				User:   []store.PatternGrant{pattern(1, "", "^m", 1, grant(store.Edit))},
				Groups: []store.PatternGrant{pattern(1, "team", "^m", 2, grant(store.Read))}}},
			{"scorer", "alice", []string{"team"}, store.Scorer, store.Patterns{
				User:   []store.PatternGrant{pattern(1, "", "^s", 1, grant(store.Read))},
				Groups: []store.PatternGrant{pattern(1, "team", "^s", 1, grant(store.Edit))}}},
			{"gateway secret", "alice", nil, store.GatewaySecret, store.Patterns{
				User: []store.PatternGrant{pattern(1, "", "^key", 1, grant(store.Use))}}},
			{"gateway endpoint", "alice", []string{"team"}, store.GatewayEndpoint, store.Patterns{
				Groups: []store.PatternGrant{pattern(1, "team", "^ch", 1, grant(store.Use))}}},
			{"gateway model definition", "alice", nil, store.GatewayModelDefinition, store.Patterns{
				User: []store.PatternGrant{pattern(1, "", "^gpt", 1, grant(store.Read))}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := h.Reader.Patterns(ctx, tt.user, tt.groups, tt.kind)
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
			})
		}
		_, err := h.Reader.Patterns(ctx, "alice", nil, "bogus")
		require.Error(t, err)
	})

	t.Run("Names", func(t *testing.T) {
		tests := []struct {
			lookup store.Lookup
			key    string
			want   []string // nil: ErrNotFound
		}{
			{store.NameOfExperiment, "1", []string{"team-a/churn"}},
			{store.NameOfExperiment, "2", []string{"ops/x"}},
			{store.NameOfExperiment, "01", nil},
			{store.NameOfExperiment, "9", nil},
			{store.NameOfGatewayEndpoint, "ep-1", []string{"chat"}},
			{store.NameOfGatewaySecret, "sec-1", []string{"key-1"}},
			{store.NameOfGatewayModelDefinition, "md-1", []string{"gpt-x"}},
			{store.NameOfGatewayModelDefinition, "md-9", nil},
		}
		for _, tt := range tests {
			got, err := h.Reader.Resolve(ctx, tt.lookup, tt.key)
			if tt.want == nil {
				require.ErrorIs(t, err, store.ErrNotFound, "%s %s", tt.lookup, tt.key)
				continue
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got, "%s %s", tt.lookup, tt.key)
		}
	})

	t.Run("RegexChangeSeenThroughCache", func(t *testing.T) {
		c := watchedCache(t, h)
		for range 2 {
			p, err := c.Patterns(ctx, "bob", nil, store.Experiment)
			require.NoError(t, err)
			require.Equal(t, grant(store.Manage), &p.User[0].Grant)
		}
		require.EqualValues(t, 1, c.Stats().PatternHits)
		start := time.Now()
		Must(t, h.ExecAuth, `UPDATE experiment_regex_permissions SET permission = 'READ' WHERE id = 4`)
		for {
			p, err := c.Patterns(ctx, "bob", nil, store.Experiment)
			require.NoError(t, err)
			if p.User[0].Grant == *grant(store.Read) {
				break
			}
			require.Less(t, time.Since(start), time.Second, "regex change not seen through the cache within 1s")
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("regex change seen through the cache after %v", time.Since(start))
	})
}

// testNoPatterns: MLflow's own layout has no regex tables.
func testNoPatterns(t *testing.T, open Opener) {
	h := open(t, Setup{})
	seedAuth(t, h.ExecAuth, true)
	got, err := h.Reader.Patterns(t.Context(), "alice", []string{"team"}, store.Experiment)
	require.NoError(t, err)
	assert.Equal(t, store.Patterns{}, got)
}

// testAdminOIDCAuth: on mlflow-oidc-auth's database (no workspace column)
// the admin writes and listings work, and its regex rows are listed as
// its resolver reads them.
func testAdminOIDCAuth(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{OIDCAuth: true})
	seedOIDCAuth(t, h.ExecAuth)
	ctx := t.Context()

	_, changed, err := a.SetGrant(ctx, alice, rm("m2"), store.Edit)
	require.NoError(t, err)
	assert.True(t, changed)
	rows, err := a.ListGrants(ctx, store.GrantFilter{Kind: store.RegisteredModel, User: "alice"})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{
		{Grantee: alice, Resource: rm("m1"), Permission: "MANAGE"},
		{Grantee: alice, Resource: rm("m2"), Permission: "EDIT"},
	}, rows)
	require.NoError(t, a.RenameRegisteredModel(ctx, "", "m2", "m3"))
	g, err := a.Grants(ctx, "alice", rm("m3"))
	require.NoError(t, err)
	assert.Equal(t, grant(store.Edit), g.User)
	require.NoError(t, a.DeleteResourceGrants(ctx, rm("m3")))

	patterns, err := a.ListPatterns(ctx, store.GrantFilter{Kind: store.Experiment})
	require.NoError(t, err)
	assert.Equal(t, []store.PatternRow{
		{Grantee: store.Grantee{User: "bob"}, Kind: store.Experiment, ID: 4, Regex: ".*", Priority: 1, Permission: "MANAGE"},
		{Grantee: alice, Kind: store.Experiment, ID: 2, Regex: "^team-a/secret", Priority: 5, Permission: "NO_PERMISSIONS"},
		{Grantee: alice, Kind: store.Experiment, ID: 1, Regex: "^team-a/", Priority: 10, Permission: "READ"},
		{Grantee: alice, Kind: store.Experiment, ID: 3, Regex: ".*", Priority: 10, Permission: ""},
		{Grantee: store.Grantee{Group: "other"}, Kind: store.Experiment, ID: 3, Regex: ".*", Priority: 0, Permission: "MANAGE"},
		{Grantee: store.Grantee{Group: "/ops"}, Kind: store.Experiment, ID: 2, Regex: "^ops/", Priority: 1, Permission: "MANAGE"},
		{Grantee: team, Kind: store.Experiment, ID: 1, Regex: "^shared/", Priority: 3, Permission: "EDIT"},
	}, patterns)
	patterns, err = a.ListPatterns(ctx, store.GrantFilter{Group: "team"})
	require.NoError(t, err)
	var kinds []store.ResourceKind
	for _, p := range patterns {
		kinds = append(kinds, p.Kind)
		assert.Equal(t, team, p.Grantee)
	}
	assert.Equal(t, []store.ResourceKind{store.Experiment, store.RegisteredModel, store.Scorer, store.GatewayEndpoint}, kinds,
		"the prompt = true group-regex row is not a registered-model row")
}
