package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// AdminRun runs the conformance suite of store.Admin against the backend
// that open opens; its Reader must implement store.Admin and its Harness
// must set QueryAuth. Every write is checked in MLflow's tables with SQL
// and through the backend's own Grants, as the decision pipeline reads it.
func AdminRun(t *testing.T, open Opener) {
	t.Run("Users", func(t *testing.T) { testAdminUsers(t, open) })
	t.Run("DeleteUserCascades", func(t *testing.T) { testAdminDeleteUser(t, open) })
	t.Run("Groups", func(t *testing.T) { testAdminGroups(t, open) })
	t.Run("SetGrant", func(t *testing.T) { testAdminSetGrant(t, open) })
	t.Run("GroupGrants", func(t *testing.T) { testAdminGroupGrants(t, open) })
	t.Run("InvalidArguments", func(t *testing.T) { testAdminInvalid(t, open) })
	t.Run("DeleteGrant", func(t *testing.T) { testAdminDeleteGrant(t, open) })
	t.Run("NoGroupTables", func(t *testing.T) { testAdminNoGroups(t, open) })
	t.Run("ListGrants", func(t *testing.T) { testAdminListGrants(t, open) })
	t.Run("RenameRegisteredModel", func(t *testing.T) { testAdminRename(t, open) })
	t.Run("DeleteResourceGrants", func(t *testing.T) { testAdminDeleteResource(t, open) })
	t.Run("GroupRowsWorkspace", func(t *testing.T) { testAdminGroupRowsWorkspace(t, open) })
	t.Run("WholeWorkspace", func(t *testing.T) { testAdminWholeWorkspace(t, open) })
	t.Run("WritesSeenThroughCache", func(t *testing.T) { testAdminInvalidation(t, open) })
	t.Run("ConcurrentSetGrant", func(t *testing.T) { testAdminConcurrent(t, open) })
	t.Run("Unavailable", func(t *testing.T) { testAdminUnavailable(t, open) })
	t.Run("OIDCAuth", func(t *testing.T) { testAdminOIDCAuth(t, open) })
}

func openAdmin(t *testing.T, open Opener, s Setup) (Harness, store.Admin) {
	t.Helper()
	h := open(t, s)
	a, ok := h.Reader.(store.Admin)
	require.True(t, ok, "%T does not implement store.Admin", h.Reader)
	require.NotNil(t, h.QueryAuth, "Harness.QueryAuth is required by AdminRun")
	return h, a
}

func query(t *testing.T, h Harness, q string, args ...any) []string {
	t.Helper()
	out, err := h.QueryAuth(t.Context(), q, args...)
	require.NoError(t, err, q)
	return out
}

var (
	alice = store.Grantee{User: "alice"}
	team  = store.Grantee{Group: "team"}
)

func exp(id string) store.Resource  { return store.Resource{Kind: store.Experiment, ID: id} }
func rm(name string) store.Resource { return store.Resource{Kind: store.RegisteredModel, ID: name} }

func testAdminUsers(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	// A row written by MLflow's basic auth, with a hash and NULL is_admin.
	Must(t, h.ExecAuth, `INSERT INTO users (username, password_hash, is_admin) VALUES ('legacy', 'pbkdf2:x', NULL)`)

	created, err := a.CreateUser(ctx, "carol", false)
	require.NoError(t, err)
	assert.True(t, created)
	created, err = a.CreateUser(ctx, "carol", true)
	require.NoError(t, err)
	assert.False(t, created, "an existing user is not created again, nor changed")
	created, err = a.CreateUser(ctx, "root", true)
	require.NoError(t, err)
	assert.True(t, created)

	// No password: identities come from Keycloak or SPIFFE.
	assert.Equal(t, []string{"NULL"}, query(t, h, `SELECT COALESCE(password_hash, 'NULL') FROM users WHERE username = 'carol'`))
	exists, admin, err := a.User(ctx, "carol")
	require.NoError(t, err)
	assert.True(t, exists)
	assert.False(t, admin)
	_, admin, err = a.User(ctx, "root")
	require.NoError(t, err)
	assert.True(t, admin)

	tests := []struct {
		name, user     string
		admin, changed bool
		err            error
	}{
		{"grant admin", "carol", true, true, nil},
		{"again is a no-op", "carol", true, false, nil},
		{"revoke admin", "carol", false, true, nil},
		{"NULL is_admin already reads as false", "legacy", false, false, nil},
		{"NULL is_admin to true", "legacy", true, true, nil},
		{"missing user is not created", "ghost", true, false, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := a.SetAdmin(ctx, tt.user, tt.admin)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				assert.NotErrorIs(t, err, store.ErrUnavailable)
				assert.False(t, changed)
				exists, _, err := a.User(ctx, tt.user)
				require.NoError(t, err)
				assert.False(t, exists)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.changed, changed)
			_, admin, err := a.User(ctx, tt.user)
			require.NoError(t, err)
			assert.Equal(t, tt.admin, admin)
		})
	}
	// The hash MLflow wrote is left alone.
	assert.Equal(t, []string{"pbkdf2:x"}, query(t, h, `SELECT password_hash FROM users WHERE username = 'legacy'`))

	users, err := a.ListUsers(ctx)
	require.NoError(t, err)
	assert.Equal(t, []store.UserRow{{Username: "carol"}, {Username: "legacy", Admin: true}, {Username: "root", Admin: true}}, users)

	_, err = a.CreateUser(ctx, "", false)
	require.ErrorIs(t, err, store.ErrInvalid)
}

func testAdminDeleteUser(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	all := []store.Resource{exp("1"), rm("m1"), {Kind: store.Scorer, ID: "1", Name: "s"},
		{Kind: store.GatewaySecret, ID: "sec"}, {Kind: store.GatewayEndpoint, ID: "ep"}, {Kind: store.GatewayModelDefinition, ID: "md"}}
	for _, u := range []string{"alice", "bob"} {
		for _, r := range all {
			_, _, err := a.SetGrant(ctx, store.Grantee{User: u}, r, store.Read)
			require.NoError(t, err)
		}
	}
	// Rows mlflow-authz does not write but must not leave dangling.
	Must(t, h.ExecAuth,
		`INSERT INTO workspace_permissions (workspace, user_id, permission) SELECT 'default', id, 'READ' FROM users WHERE username = 'alice'`,
		`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) SELECT 'm1', id, 'READ', 'other' FROM users WHERE username = 'alice'`)

	require.NoError(t, a.DeleteUser(ctx, "alice"))
	exists, _, err := a.User(ctx, "alice")
	require.NoError(t, err)
	assert.False(t, exists)
	for _, tbl := range []string{"experiment_permissions", "registered_model_permissions", "scorer_permissions",
		"gateway_secret_permissions", "gateway_endpoint_permissions", "gateway_model_definition_permissions", "workspace_permissions"} {
		assert.Equal(t, []string{"0"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM `+tbl+` WHERE user_id NOT IN (SELECT id FROM users)`), tbl)
	}
	rows, err := a.ListGrants(ctx, store.GrantFilter{})
	require.NoError(t, err)
	assert.Len(t, rows, len(all), "bob's rows stay")
	for _, r := range rows {
		assert.Equal(t, "bob", r.Grantee.User)
	}

	err = a.DeleteUser(ctx, "alice")
	require.ErrorIs(t, err, store.ErrNotFound)
	assert.NotErrorIs(t, err, store.ErrUnavailable)
}

func testAdminGroups(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	created, err := a.CreateGroup(ctx, "team")
	require.NoError(t, err)
	assert.True(t, created)
	created, err = a.CreateGroup(ctx, "team")
	require.NoError(t, err)
	assert.False(t, created)
	created, err = a.CreateGroup(ctx, "/ops")
	require.NoError(t, err)
	assert.True(t, created, "names are written as given")
	_, err = a.CreateGroup(ctx, "")
	require.ErrorIs(t, err, store.ErrInvalid)

	groups, err := a.ListGroups(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"/ops", "team"}, groups)

	for _, g := range []store.Grantee{team, {Group: "/ops"}} {
		_, _, err := a.SetGrant(ctx, g, exp("1"), store.Edit)
		require.NoError(t, err)
		_, _, err = a.SetGrant(ctx, g, rm("m1"), store.Edit)
		require.NoError(t, err)
	}
	require.NoError(t, a.DeleteGroup(ctx, "team"))
	g, err := a.Grants(ctx, "alice", exp("1"))
	require.NoError(t, err)
	assert.Equal(t, map[string]store.Grant{"ops": *grant(store.Edit)}, g.Groups)
	for _, tbl := range []string{"experiment_group_permissions", "registered_model_group_permissions"} {
		assert.Equal(t, []string{"1"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM `+tbl), tbl)
		assert.Equal(t, []string{"0"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM `+tbl+` WHERE group_id NOT IN (SELECT id FROM groups)`), tbl)
	}
	groups, err = a.ListGroups(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"/ops"}, groups)

	err = a.DeleteGroup(ctx, "team")
	require.ErrorIs(t, err, store.ErrNotFound)
	assert.NotErrorIs(t, err, store.ErrUnavailable)
}

func testAdminSetGrant(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	tests := []struct {
		name string
		res  store.Resource
	}{
		{"experiment", exp("1")},
		{"registered model", rm("m1")},
		{"scorer", store.Resource{Kind: store.Scorer, ID: "1", Name: "s1"}},
		{"gateway secret", store.Resource{Kind: store.GatewaySecret, ID: "sec1"}},
		{"gateway endpoint", store.Resource{Kind: store.GatewayEndpoint, ID: "ep1"}},
		{"gateway model definition", store.Resource{Kind: store.GatewayModelDefinition, ID: "md1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := "u-" + string(tt.res.Kind)
			g := store.Grantee{User: user}
			// The first grant creates the users row, as MLflow does.
			before, changed, err := a.SetGrant(ctx, g, tt.res, store.Read)
			require.NoError(t, err)
			assert.Nil(t, before)
			assert.True(t, changed)
			got, err := a.Grants(ctx, user, tt.res)
			require.NoError(t, err)
			assert.Equal(t, store.Grants{UserExists: true, User: grant(store.Read)}, got)
			assert.Equal(t, []string{"NULL"}, query(t, h, `SELECT COALESCE(password_hash, 'NULL') FROM users WHERE username = $1`, user))

			before, changed, err = a.SetGrant(ctx, g, tt.res, store.Read)
			require.NoError(t, err)
			assert.False(t, changed, "same permission is a no-op")
			assert.Equal(t, &store.GrantRow{Grantee: g, Resource: tt.res, Permission: "READ"}, before)

			before, changed, err = a.SetGrant(ctx, g, tt.res, store.NoPermissions)
			require.NoError(t, err)
			assert.True(t, changed)
			assert.Equal(t, &store.GrantRow{Grantee: g, Resource: tt.res, Permission: "READ"}, before)
			got, err = a.Grants(ctx, user, tt.res)
			require.NoError(t, err)
			assert.Equal(t, grant(store.NoPermissions), got.User, "NO_PERMISSIONS is written, not a delete")
		})
	}
	t.Run("registered model rows are in workspace default", func(t *testing.T) {
		assert.Equal(t, []string{"default"}, query(t, h, `SELECT workspace FROM registered_model_permissions`))
	})
	t.Run("a NULL row is replaced and reported verbatim", func(t *testing.T) {
		Must(t, h.ExecAuth, `INSERT INTO experiment_permissions (experiment_id, user_id, permission)
			SELECT '9', id, NULL FROM users WHERE username = 'u-experiment'`)
		g := store.Grantee{User: "u-experiment"}
		before, changed, err := a.SetGrant(ctx, g, exp("9"), store.Manage)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, &store.GrantRow{Grantee: g, Resource: exp("9"), Permission: ""}, before)
		assert.Equal(t, []string{"MANAGE"}, query(t, h, `SELECT permission FROM experiment_permissions WHERE experiment_id = '9'`))
	})
	t.Run("an existing admin user keeps its flag", func(t *testing.T) {
		_, err := a.CreateUser(ctx, "boss", true)
		require.NoError(t, err)
		_, _, err = a.SetGrant(ctx, store.Grantee{User: "boss"}, exp("1"), store.Read)
		require.NoError(t, err)
		_, admin, err := a.User(ctx, "boss")
		require.NoError(t, err)
		assert.True(t, admin)
	})
}

func testAdminGroupGrants(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	for _, r := range []store.Resource{exp("1"), rm("m1")} {
		before, changed, err := a.SetGrant(ctx, team, r, store.Edit)
		require.NoError(t, err)
		assert.Nil(t, before)
		assert.True(t, changed)
		got, err := a.Grants(ctx, "anyone", r)
		require.NoError(t, err)
		assert.Equal(t, map[string]store.Grant{"team": *grant(store.Edit)}, got.Groups)
		before, changed, err = a.SetGrant(ctx, team, r, store.Edit)
		require.NoError(t, err)
		assert.False(t, changed)
		assert.Equal(t, &store.GrantRow{Grantee: team, Resource: r, Permission: "EDIT"}, before)
	}
	groups, err := a.ListGroups(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"team"}, groups, "the groups row was created once")
	exists, _, err := a.User(ctx, "team")
	require.NoError(t, err)
	assert.False(t, exists, "a group grant creates no user")
	assert.Equal(t, []string{"false"}, query(t, h, `SELECT CASE WHEN prompt THEN 'true' ELSE 'false' END FROM registered_model_group_permissions`))

	// registered_model_group_permissions has no unique key: mlflow-oidc-auth
	// may hold a model row and a prompt row for one name and group. Both
	// are updated, so the weaker one cannot keep denying or allowing.
	Must(t, h.ExecAuth, `INSERT INTO registered_model_group_permissions (name, group_id, permission, prompt)
		SELECT 'm1', id, 'READ', true FROM groups WHERE group_name = 'team'`)
	before, changed, err := a.SetGrant(ctx, team, rm("m1"), store.Edit)
	require.NoError(t, err)
	assert.True(t, changed, "one of two rows differed")
	assert.Equal(t, "EDIT", before.Permission, "before is the oldest row")
	assert.Equal(t, []string{"EDIT", "EDIT"}, query(t, h, `SELECT permission FROM registered_model_group_permissions`))
	before, changed, err = a.DeleteGrant(ctx, team, rm("m1"))
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "EDIT", before.Permission)
	assert.Equal(t, []string{"0"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM registered_model_group_permissions`))

	for _, k := range []store.ResourceKind{store.Scorer, store.GatewaySecret, store.GatewayEndpoint, store.GatewayModelDefinition} {
		r := store.Resource{Kind: k, ID: "1"}
		if k == store.Scorer {
			r.Name = "s"
		}
		_, _, err := a.SetGrant(ctx, team, r, store.Read)
		require.ErrorIs(t, err, store.ErrGroupKind, k)
		require.ErrorIs(t, err, store.ErrInvalid, k)
		assert.Contains(t, err.Error(), "store: group grants exist only for experiments and registered models")
		_, _, err = a.DeleteGrant(ctx, team, r)
		require.ErrorIs(t, err, store.ErrGroupKind, k)
	}
}

func testAdminInvalid(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	tests := []struct {
		name string
		g    store.Grantee
		r    store.Resource
		p    store.Permission
	}{
		{"permission above MANAGE", alice, exp("1"), store.Manage + 1},
		{"negative permission", alice, exp("1"), -1},
		{"no grantee", store.Grantee{}, exp("1"), store.Read},
		{"user and group", store.Grantee{User: "alice", Group: "team"}, exp("1"), store.Read},
		{"unknown kind", alice, store.Resource{Kind: "bogus", ID: "1"}, store.Read},
		{"empty id", alice, exp(""), store.Read},
		{"scorer without name", alice, store.Resource{Kind: store.Scorer, ID: "1"}, store.Read},
		{"name on a non-scorer", alice, store.Resource{Kind: store.Experiment, ID: "1", Name: "x"}, store.Read},
		{"non-canonical experiment id", alice, exp("007"), store.Read},
		{"non-canonical scorer experiment id", alice, store.Resource{Kind: store.Scorer, ID: "x", Name: "s"}, store.Read},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, changed, err := a.SetGrant(ctx, tt.g, tt.r, tt.p)
			require.ErrorIs(t, err, store.ErrInvalid)
			assert.NotErrorIs(t, err, store.ErrUnavailable)
			assert.Nil(t, before)
			assert.False(t, changed)
		})
	}
	assert.Equal(t, []string{"0"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM users`), "a refused write creates no user")
	for _, err := range []error{
		a.DeleteResourceGrants(ctx, store.Resource{Kind: "bogus", ID: "1"}),
		a.DeleteResourceGrants(ctx, exp("")),
		a.RenameRegisteredModel(ctx, "", "", "x"),
		a.RenameRegisteredModel(ctx, "", "x", ""),
	} {
		require.ErrorIs(t, err, store.ErrInvalid)
	}
	_, err := a.ListGrants(ctx, store.GrantFilter{Kind: "bogus"})
	require.ErrorIs(t, err, store.ErrInvalid)
}

func testAdminDeleteGrant(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	s1 := store.Resource{Kind: store.Scorer, ID: "1", Name: "s1"}
	for _, r := range []store.Resource{exp("1"), exp("2"), s1, {Kind: store.Scorer, ID: "1", Name: "s2"}} {
		_, _, err := a.SetGrant(ctx, alice, r, store.Manage)
		require.NoError(t, err)
	}
	_, _, err := a.SetGrant(ctx, store.Grantee{User: "bob"}, exp("1"), store.Read)
	require.NoError(t, err)

	before, changed, err := a.DeleteGrant(ctx, alice, exp("1"))
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, &store.GrantRow{Grantee: alice, Resource: exp("1"), Permission: "MANAGE"}, before)
	before, changed, err = a.DeleteGrant(ctx, alice, exp("1"))
	require.NoError(t, err)
	assert.False(t, changed, "deleting a missing row is a no-op")
	assert.Nil(t, before)
	before, changed, err = a.DeleteGrant(ctx, alice, s1)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "MANAGE", before.Permission)

	rows, err := a.ListGrants(ctx, store.GrantFilter{})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{
		{Grantee: store.Grantee{User: "bob"}, Resource: exp("1"), Permission: "READ"},
		{Grantee: alice, Resource: exp("2"), Permission: "MANAGE"},
		{Grantee: alice, Resource: store.Resource{Kind: store.Scorer, ID: "1", Name: "s2"}, Permission: "MANAGE"},
	}, rows)

	before, changed, err = a.DeleteGrant(ctx, store.Grantee{User: "ghost"}, exp("1"))
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Nil(t, before)
	exists, _, err := a.User(ctx, "ghost")
	require.NoError(t, err)
	assert.False(t, exists, "a delete creates no user")
	before, changed, err = a.DeleteGrant(ctx, team, exp("1"))
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Nil(t, before)
	assert.Equal(t, []string{"0"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM groups`), "a delete creates no group")
}

func testAdminNoGroups(t *testing.T, open Opener) {
	_, a := openAdmin(t, open, Setup{NoGroupTables: true})
	ctx := t.Context()
	_, err := a.CreateGroup(ctx, "team")
	requireNoGroupTables(t, err)
	requireNoGroupTables(t, a.DeleteGroup(ctx, "team"))
	_, _, err = a.SetGrant(ctx, team, exp("1"), store.Read)
	requireNoGroupTables(t, err)
	_, _, err = a.DeleteGrant(ctx, team, rm("m1"))
	requireNoGroupTables(t, err)
	// A group grant on another kind is the kind's error, tables or not.
	_, _, err = a.SetGrant(ctx, team, store.Resource{Kind: store.GatewaySecret, ID: "s"}, store.Read)
	require.ErrorIs(t, err, store.ErrGroupKind)

	// Everything about users works on plain MLflow.
	_, _, err = a.SetGrant(ctx, alice, rm("m1"), store.Edit)
	require.NoError(t, err)
	groups, err := a.ListGroups(ctx)
	require.NoError(t, err)
	assert.Empty(t, groups)
	require.NoError(t, a.RenameRegisteredModel(ctx, "", "m1", "m2"))
	rows, err := a.ListGrants(ctx, store.GrantFilter{})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{{Grantee: alice, Resource: rm("m2"), Permission: "EDIT"}}, rows)
	rows, err = a.ListGrants(ctx, store.GrantFilter{Group: "team"})
	require.NoError(t, err)
	assert.Empty(t, rows)
	require.NoError(t, a.DeleteResourceGrants(ctx, rm("m2")))
	require.NoError(t, a.DeleteUser(ctx, "alice"))
}

func requireNoGroupTables(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, store.ErrNoGroupTables)
	assert.NotErrorIs(t, err, store.ErrUnavailable)
	assert.Contains(t, err.Error(), "mlflow-authz migrate")
}

func testAdminListGrants(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	bob := store.Grantee{User: "bob"}
	ops := store.Grantee{Group: "/ops"}
	sc := func(id, name string) store.Resource { return store.Resource{Kind: store.Scorer, ID: id, Name: name} }
	writes := []struct {
		g store.Grantee
		r store.Resource
		p store.Permission
	}{
		{bob, store.Resource{Kind: store.GatewayModelDefinition, ID: "md"}, store.Manage},
		{alice, sc("1", "b"), store.Use},
		{alice, sc("1", "a"), store.Read},
		{team, rm("m1"), store.Read},
		{bob, rm("m1"), store.Edit},
		{ops, exp("2"), store.Read},
		{bob, exp("2"), store.Read},
		{alice, exp("2"), store.Edit},
		{alice, exp("10"), store.Read},
		{team, exp("2"), store.Manage},
		{alice, store.Resource{Kind: store.GatewayEndpoint, ID: "ep"}, store.Use},
		{alice, store.Resource{Kind: store.GatewaySecret, ID: "sec"}, store.Read},
	}
	for _, w := range writes {
		_, _, err := a.SetGrant(ctx, w.g, w.r, w.p)
		require.NoError(t, err)
	}
	Must(t, h.ExecAuth,
		// A NULL row is listed with an empty permission; another workspace's row is not listed.
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) SELECT '3', id, NULL FROM users WHERE username = 'bob'`,
		`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) SELECT 'm1', id, 'READ', 'other' FROM users WHERE username = 'alice'`)

	row := func(g store.Grantee, r store.Resource, p string) store.GrantRow {
		return store.GrantRow{Grantee: g, Resource: r, Permission: p}
	}
	all := []store.GrantRow{
		row(alice, exp("10"), "READ"),
		row(alice, exp("2"), "EDIT"), row(bob, exp("2"), "READ"), row(ops, exp("2"), "READ"), row(team, exp("2"), "MANAGE"),
		row(bob, exp("3"), ""),
		row(bob, rm("m1"), "EDIT"), row(team, rm("m1"), "READ"),
		row(alice, sc("1", "a"), "READ"), row(alice, sc("1", "b"), "USE"),
		row(alice, store.Resource{Kind: store.GatewaySecret, ID: "sec"}, "READ"),
		row(alice, store.Resource{Kind: store.GatewayEndpoint, ID: "ep"}, "USE"),
		row(bob, store.Resource{Kind: store.GatewayModelDefinition, ID: "md"}, "MANAGE"),
	}
	tests := []struct {
		name string
		f    store.GrantFilter
		want []store.GrantRow
	}{
		{"all, ordered by kind, id, name, users then groups", store.GrantFilter{}, all},
		{"kind", store.GrantFilter{Kind: store.RegisteredModel}, all[6:8]},
		{"kind and id", store.GrantFilter{Kind: store.Experiment, ID: "2"}, all[1:5]},
		{"id across kinds", store.GrantFilter{ID: "1"}, all[8:10]},
		{"user", store.GrantFilter{User: "bob"}, []store.GrantRow{all[2], all[5], all[6], all[12]}},
		{"group", store.GrantFilter{Group: "team"}, []store.GrantRow{all[4], all[7]}},
		{"group name as written", store.GrantFilter{Group: "/ops"}, []store.GrantRow{all[3]}},
		{"user and group match nothing", store.GrantFilter{User: "bob", Group: "team"}, nil},
		{"no match", store.GrantFilter{User: "ghost"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.ListGrants(ctx, tt.f)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func testAdminRename(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	bob, ops := store.Grantee{User: "bob"}, store.Grantee{Group: "ops"}
	for _, w := range []struct {
		g store.Grantee
		r string
		p store.Permission
	}{
		{alice, "old", store.Manage}, {bob, "old", store.Read}, {team, "old", store.Manage}, {ops, "old", store.Edit},
		// Stale rows of a deleted model that had the new name.
		{alice, "new", store.Read}, {team, "new", store.Read},
	} {
		_, _, err := a.SetGrant(ctx, w.g, rm(w.r), w.p)
		require.NoError(t, err)
	}
	Must(t, h.ExecAuth, `INSERT INTO registered_model_permissions (name, user_id, permission, workspace)
		SELECT 'old', id, 'MANAGE', 'other' FROM users WHERE username = 'bob'`)

	require.NoError(t, a.RenameRegisteredModel(ctx, "", "old", "new"))
	rows, err := a.ListGrants(ctx, store.GrantFilter{Kind: store.RegisteredModel})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{
		{Grantee: alice, Resource: rm("new"), Permission: "READ"}, // the existing row is kept
		{Grantee: bob, Resource: rm("new"), Permission: "READ"},
		{Grantee: ops, Resource: rm("new"), Permission: "EDIT"},
		{Grantee: team, Resource: rm("new"), Permission: "READ"},
	}, rows)
	g, err := a.Grants(ctx, "alice", rm("new"))
	require.NoError(t, err)
	assert.Equal(t, grant(store.Read), g.User)
	g, err = a.Grants(ctx, "alice", rm("old"))
	require.NoError(t, err)
	assert.Nil(t, g.User)
	assert.Empty(t, g.Groups)
	assert.Equal(t, []string{"old"}, query(t, h, `SELECT name FROM registered_model_permissions WHERE workspace = 'other'`),
		"another workspace's model is another model")

	require.NoError(t, a.RenameRegisteredModel(ctx, "", "new", "new"))
	require.NoError(t, a.RenameRegisteredModel(ctx, "", "absent", "elsewhere"))
	rows2, err := a.ListGrants(ctx, store.GrantFilter{Kind: store.RegisteredModel})
	require.NoError(t, err)
	assert.Equal(t, rows, rows2)
}

func testAdminDeleteResource(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	sc := func(name string) store.Resource { return store.Resource{Kind: store.Scorer, ID: "1", Name: name} }
	gw := func(k store.ResourceKind, id string) store.Resource { return store.Resource{Kind: k, ID: id} }
	bob := store.Grantee{User: "bob"}
	for _, w := range []struct {
		g store.Grantee
		r store.Resource
	}{
		{alice, exp("1")}, {bob, exp("1")}, {team, exp("1")}, {alice, exp("2")}, {team, exp("2")},
		{alice, rm("m1")}, {team, rm("m1")}, {alice, rm("m2")},
		{alice, sc("a")}, {bob, sc("a")}, {alice, sc("b")},
		{alice, gw(store.GatewaySecret, "x")}, {alice, gw(store.GatewayEndpoint, "x")}, {alice, gw(store.GatewayModelDefinition, "x")},
	} {
		_, _, err := a.SetGrant(ctx, w.g, w.r, store.Manage)
		require.NoError(t, err)
	}
	Must(t, h.ExecAuth, `INSERT INTO registered_model_permissions (name, user_id, permission, workspace)
		SELECT 'm1', id, 'MANAGE', 'other' FROM users WHERE username = 'bob'`)

	for _, r := range []store.Resource{exp("1"), rm("m1"), sc("a"), gw(store.GatewayEndpoint, "x"), exp("99")} {
		require.NoError(t, a.DeleteResourceGrants(ctx, r))
	}
	rows, err := a.ListGrants(ctx, store.GrantFilter{})
	require.NoError(t, err)
	m := func(g store.Grantee, r store.Resource) store.GrantRow {
		return store.GrantRow{Grantee: g, Resource: r, Permission: "MANAGE"}
	}
	assert.Equal(t, []store.GrantRow{
		m(alice, exp("2")), m(team, exp("2")), m(alice, rm("m2")), m(alice, sc("b")),
		m(alice, gw(store.GatewaySecret, "x")), m(alice, gw(store.GatewayModelDefinition, "x")),
	}, rows)
	assert.Equal(t, []string{"m1"}, query(t, h, `SELECT name FROM registered_model_permissions WHERE workspace = 'other'`))
}

// testAdminInvalidation requires Admin writes to reach a cache in front of
// the store within 1s, through the backend's Watch, as a running server
// sees them.
func testAdminInvalidation(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	_, _, err := a.SetGrant(t.Context(), alice, exp("1"), store.Read)
	require.NoError(t, err)
	c := watchedCache(t, h)
	res := exp("1")
	seen := func(what string, ok func(store.Grants) bool) {
		t.Helper()
		start := time.Now()
		for {
			g, err := c.Grants(t.Context(), "alice", res)
			require.NoError(t, err)
			if ok(g) {
				t.Logf("%s seen through the cache after %v", what, time.Since(start))
				return
			}
			require.Less(t, time.Since(start), time.Second, "%s not seen through the cache within 1s", what)
			time.Sleep(5 * time.Millisecond)
		}
	}
	seen("initial grant", func(g store.Grants) bool { return g.User != nil })
	g, err := c.Grants(t.Context(), "alice", res) // a hit from now on
	require.NoError(t, err)
	require.Equal(t, grant(store.Read), g.User)

	_, _, err = a.SetGrant(t.Context(), alice, res, store.NoPermissions)
	require.NoError(t, err)
	seen("downgrade", func(g store.Grants) bool { return g.User != nil && *g.User == *grant(store.NoPermissions) })
	_, _, err = a.DeleteGrant(t.Context(), alice, res)
	require.NoError(t, err)
	seen("delete", func(g store.Grants) bool { return g.User == nil })
	_, _, err = a.SetGrant(t.Context(), team, res, store.Edit)
	require.NoError(t, err)
	seen("group grant", func(g store.Grants) bool { return g.Groups["team"] == *grant(store.Edit) })
	require.NoError(t, a.DeleteGroup(t.Context(), "team"))
	seen("group delete", func(g store.Grants) bool { return len(g.Groups) == 0 })
	_, err = a.SetAdmin(t.Context(), "alice", true)
	require.NoError(t, err)
	seen("admin", func(g store.Grants) bool { return g.UserAdmin })
	require.NoError(t, a.DeleteUser(t.Context(), "alice"))
	seen("user delete", func(g store.Grants) bool { return !g.UserExists })
}

// testAdminConcurrent races SetGrants that all find the user, group and
// row missing: the backend serializes them, so exactly one creates each
// row and none fails, even on registered_model_group_permissions, which
// has no unique key to catch a duplicate.
func testAdminConcurrent(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	const n = 8
	for _, g := range []store.Grantee{{User: "racer"}, {Group: "racers"}} {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			errs    []error
			created int
		)
		for range n {
			wg.Go(func() {
				before, changed, err := a.SetGrant(t.Context(), g, rm("m"), store.Read)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if before == nil && changed {
					created++
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs, "%v", g)
		assert.Equal(t, 1, created, "%v: exactly one call creates the row", g)
	}
	assert.Equal(t, []string{"1"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM users`))
	assert.Equal(t, []string{"1"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM groups`))
	assert.Equal(t, []string{"1"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM registered_model_permissions`))
	assert.Equal(t, []string{"1"}, query(t, h, `SELECT CAST(COUNT(*) AS TEXT) FROM registered_model_group_permissions`))
}

// testAdminUnavailable: a write that cannot reach the database is
// ErrUnavailable (the admin API answers 503), not a refusal.
func testAdminUnavailable(t *testing.T, open Opener) {
	_, a := openAdmin(t, open, Setup{})
	c, ok := a.(interface{ Close() })
	require.True(t, ok, "%T has no Close", a)
	c.Close()
	_, _, err := a.SetGrant(t.Context(), alice, exp("1"), store.Read)
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = a.ListGrants(t.Context(), store.GrantFilter{})
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, a.DeleteUser(t.Context(), "alice"), store.ErrUnavailable)
}
