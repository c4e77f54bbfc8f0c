package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// RolesRun runs the conformance suite of the roles layout (MLflow 3.12+,
// made by MLflow's own migrations: MigrateToRoles) against the backend
// that open opens. Its Reader must implement store.Admin and
// store.RoleAdmin, and report its layout.
func RolesRun(t *testing.T, open Opener) {
	t.Run("Layout", func(t *testing.T) { testRolesLayout(t, open) })
	t.Run("Grants", func(t *testing.T) { testRolesGrants(t, open) })
	t.Run("RevokeSeenThroughCache", func(t *testing.T) { testRolesInvalidation(t, open) })
	t.Run("SetGrant", func(t *testing.T) { testRolesSetGrant(t, open) })
	t.Run("Roles", func(t *testing.T) { testRolesAdmin(t, open) })
	t.Run("WholeWorkspace", func(t *testing.T) { testRolesWholeWorkspace(t, open) })
	t.Run("RenameAndDelete", func(t *testing.T) { testRolesRename(t, open) })
}

// rolesLegacyRows are the legacy rows e5f6a7b8c9d0 copies: users 1 alice,
// 2 root (admin), 3 bob, 4 carol; alice's resource rows (the
// NO_PERMISSIONS and NULL ones are dropped), bob's workspace MANAGE and
// carol's workspace READ (which becomes USE).
var rolesLegacyRows = []string{
	`INSERT INTO users (username, password_hash, is_admin) VALUES
		('alice', 'x', false), ('root', 'x', true), ('bob', 'x', false), ('carol', 'x', false)`,
	`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES
		('1', 1, 'READ'), ('2', 1, 'NO_PERMISSIONS'), ('3', 1, NULL), ('5', 1, 'MANAGE')`,
	`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) VALUES
		('m1', 1, 'EDIT', 'default'), ('m1', 3, 'READ', 'other')`,
	`INSERT INTO scorer_permissions (experiment_id, scorer_name, user_id, permission) VALUES ('1', 'a/b c', 1, 'USE')`,
	`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('ep1', 1, 'USE')`,
	`INSERT INTO workspace_permissions (workspace, user_id, permission) VALUES ('default', 3, 'MANAGE'), ('default', 4, 'READ')`,
}

// seedRoles adds, as MLflow's role API would: role team (experiment * READ,
// experiment 1 EDIT; a mutation condition on experiments), assigned to
// bob; role auditors (experiment 9 DENY); role runners (run * EDIT); a
// role of another workspace assigned to alice.
func seedRoles(t *testing.T, exec ExecFunc) {
	Must(t, exec,
		`INSERT INTO roles (id, name, workspace, description) VALUES
			(100, 'team', 'default', 'the team'), (101, 'auditors', 'default', NULL), (102, 'runners', 'default', NULL),
			(103, 'team', 'ws2', NULL)`,
		`INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission) VALUES
			(100, 'experiment', '*', 'READ'), (100, 'experiment', '1', 'EDIT'), (101, 'experiment', '9', 'DENY'),
			(102, 'run', '*', 'EDIT'), (103, 'experiment', '1', 'MANAGE')`,
		`INSERT INTO user_role_assignments (user_id, role_id) VALUES (3, 100), (1, 103)`,
		`INSERT INTO mutation_conditions (role_id, resource_type, resource_pattern, value_condition, condition_slot)
			VALUES (100, 'experiment', '*', 'tags.team = ''a''', 1)`,
	)
}

// roleRows renders g.Roles as sorted "role assigned type pattern grant" lines.
func roleRows(g store.Grants) []string {
	var out []string
	for _, r := range g.Roles {
		p := r.Grant.Permission.String()
		switch {
		case r.Condition:
			p = "condition"
		case r.Deny:
			p = "DENY"
		case !r.Grant.Valid:
			p = "invalid"
		}
		out = append(out, fmt.Sprintf("%s %t %s %s %s", r.Role, r.Assigned, r.Type, r.Pattern, p))
	}
	slices.Sort(out)
	return out
}

func openRoles(t *testing.T, open Opener) Harness {
	t.Helper()
	h := open(t, Setup{Roles: true, LegacyRows: rolesLegacyRows})
	seedRoles(t, h.ExecAuth)
	return h
}

func testRolesLayout(t *testing.T, open Opener) {
	h := open(t, Setup{Roles: true})
	l, ok := h.Reader.(interface{ Layout() store.LayoutInfo })
	require.True(t, ok, "%T does not report its layout", h.Reader)
	assert.Equal(t, store.LayoutInfo{Layout: store.LayoutRoles, Revision: RolesHead}, l.Layout())
	assert.Empty(t, l.Layout().Warning())
}

func testRolesGrants(t *testing.T, open Opener) {
	h := openRoles(t, open)
	exp := func(id string) store.Resource { return store.Resource{Kind: store.Experiment, ID: id} }
	// The named roles' rows on experiment 1, and on one without grants of its own.
	named1 := []string{"runners false run * EDIT", "team false experiment * READ", "team false experiment 1 EDIT", "team false experiment * condition"}
	named := []string{"runners false run * EDIT", "team false experiment * READ", "team false experiment * condition"}
	tests := []struct {
		name, user string
		res        store.Resource
		admin      bool
		exists     bool
		want       []string
	}{
		{"migrated direct grant, named roles, never another workspace's", "alice", exp("1"), false, true,
			append([]string{"__user_1__ true experiment 1 READ"}, named1...)},
		{"NO_PERMISSIONS row dropped by the migration", "alice", exp("2"), false, true, named},
		{"NULL row dropped by the migration", "alice", exp("3"), false, true, named},
		{"assigned named role; workspace-wide grant", "bob", exp("1"), false, true, []string{
			"__user_3__ true workspace * MANAGE", "runners false run * EDIT",
			"team true experiment * READ", "team true experiment 1 EDIT", "team true experiment * condition"}},
		{"READ workspace row became USE", "carol", exp("7"), false, true, append([]string{"__user_4__ true workspace * USE"}, named...)},
		{"admin", "root", exp("7"), true, true, named},
		{"DENY", "ghost", exp("9"), false, false, append([]string{"auditors false experiment 9 DENY"}, named...)},
		{"registered model in its workspace", "alice", store.Resource{Kind: store.RegisteredModel, ID: "m1"}, false, true,
			[]string{"__user_1__ true registered_model m1 EDIT"}},
		{"registered model row of another workspace", "bob", store.Resource{Kind: store.RegisteredModel, ID: "m1"}, false, true,
			[]string{"__user_3__ true workspace * MANAGE"}},
		{"scorer keyed by the quoted name", "alice", store.Resource{Kind: store.Scorer, ID: "1", Name: "a/b c"}, false, true,
			[]string{"__user_1__ true scorer 1/a%2Fb%20c USE"}},
		{"gateway endpoint", "alice", store.Resource{Kind: store.GatewayEndpoint, ID: "ep1"}, false, true,
			[]string{"__user_1__ true gateway_endpoint ep1 USE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := grants(t, h.Reader, tt.user, tt.res)
			require.NoError(t, err)
			assert.Equal(t, store.LayoutRoles, g.Layout)
			assert.Equal(t, tt.exists, g.UserExists)
			assert.Equal(t, tt.admin, g.UserAdmin)
			assert.Nil(t, g.User, "the legacy snapshot is never read")
			assert.Nil(t, g.Groups)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			assert.Equal(t, want, roleRows(g))
		})
	}
}

// testRolesInvalidation revokes a grant in role_permissions with plain SQL
// while the legacy snapshot still holds the old row: the cache in front
// of the store must stop showing it within 1s.
func testRolesInvalidation(t *testing.T, open Opener) {
	h := openRoles(t, open)
	c := watchedCache(t, h)
	res := store.Resource{Kind: store.Experiment, ID: "1"}
	direct := func(g store.Grants) bool {
		return slices.Contains(roleRows(g), "__user_1__ true experiment 1 READ")
	}
	g, err := c.Grants(t.Context(), "alice", res)
	require.NoError(t, err)
	require.True(t, direct(g))

	start := time.Now()
	Must(t, h.ExecAuth, `DELETE FROM role_permissions WHERE resource_type = 'experiment' AND resource_pattern = '1'
		AND role_id = (SELECT id FROM roles WHERE name = '__user_1__')`)
	for {
		g, err := c.Grants(t.Context(), "alice", res)
		require.NoError(t, err)
		if !direct(g) {
			break
		}
		require.Less(t, time.Since(start), time.Second, "revoke not seen through the cache within 1s")
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("role revoke seen through the cache after %v", time.Since(start))
	assert.Equal(t, []string{"READ"}, query(t, h,
		`SELECT permission FROM experiment_permissions WHERE experiment_id = '1' AND user_id = 1`), "the snapshot still holds it")

	start = time.Now()
	Must(t, h.ExecAuth, `DELETE FROM user_role_assignments WHERE user_id = 3 AND role_id = 100`)
	for {
		g, err := c.Grants(t.Context(), "bob", res)
		require.NoError(t, err)
		if !slices.Contains(roleRows(g), "team true experiment 1 EDIT") {
			break
		}
		require.Less(t, time.Since(start), time.Second, "unassignment not seen through the cache within 1s")
		time.Sleep(5 * time.Millisecond)
	}
}

func rolesAdmin(t *testing.T, h Harness) (store.Admin, store.RoleAdmin) {
	t.Helper()
	a, ok := h.Reader.(store.Admin)
	require.True(t, ok)
	r, ok := h.Reader.(store.RoleAdmin)
	require.True(t, ok)
	return a, r
}

func testRolesSetGrant(t *testing.T, open Opener) {
	h := openRoles(t, open)
	a, _ := rolesAdmin(t, h)
	ctx := t.Context()

	// A user grant goes to the user's synthetic role, made and assigned
	// when missing (dave has no users row yet: it is created).
	before, changed, err := a.SetGrant(ctx, store.Grantee{User: "dave"}, exp("4"), store.Edit)
	require.NoError(t, err)
	assert.Nil(t, before)
	assert.True(t, changed)
	assert.Equal(t, []string{"EDIT"}, query(t, h, `SELECT rp.permission FROM role_permissions rp
		JOIN roles r ON r.id = rp.role_id JOIN user_role_assignments a ON a.role_id = r.id JOIN users u ON u.id = a.user_id
		WHERE u.username = 'dave' AND r.name = '__user_' || CAST(u.id AS TEXT) || '__' AND r.workspace = 'default'
		AND rp.resource_type = 'experiment' AND rp.resource_pattern = '4'`))
	assert.Empty(t, query(t, h, `SELECT experiment_id FROM experiment_permissions WHERE experiment_id = '4'`), "never the legacy table")

	// An existing grant is updated in place.
	before, changed, err = a.SetGrant(ctx, alice, exp("1"), store.Manage)
	require.NoError(t, err)
	assert.Equal(t, &store.GrantRow{Grantee: alice, Resource: exp("1"), Permission: "READ"}, before)
	assert.True(t, changed)
	_, changed, err = a.SetGrant(ctx, alice, exp("1"), store.Manage)
	require.NoError(t, err)
	assert.False(t, changed)

	// A group grant goes to the role of the group's name, made when missing.
	_, changed, err = a.SetGrant(ctx, store.Grantee{Group: "ml-ops"}, exp("4"), store.Read)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, []string{"READ"}, query(t, h, `SELECT rp.permission FROM role_permissions rp JOIN roles r ON r.id = rp.role_id
		WHERE r.name = 'ml-ops' AND r.workspace = 'default' AND rp.resource_pattern = '4'`))
	_, _, err = a.SetGrant(ctx, team, exp("1"), store.Manage)
	require.NoError(t, err)
	assert.Equal(t, []string{"MANAGE"}, query(t, h, `SELECT rp.permission FROM role_permissions rp
		WHERE rp.role_id = 100 AND rp.resource_type = 'experiment' AND rp.resource_pattern = '1'`), "the existing role of that name")

	// A scorer is keyed as MLflow keys it.
	_, _, err = a.SetGrant(ctx, alice, store.Resource{Kind: store.Scorer, ID: "2", Name: "x y"}, store.Read)
	require.NoError(t, err)
	assert.Equal(t, []string{"2/x%20y"}, query(t, h, `SELECT resource_pattern FROM role_permissions WHERE resource_type = 'scorer' AND resource_pattern LIKE '2/%'`))

	for _, bad := range []struct {
		name string
		g    store.Grantee
		p    store.Permission
	}{
		{"NO_PERMISSIONS has no place in the roles layout", alice, store.NoPermissions},
		{"a group never names a synthetic role", store.Grantee{Group: "__user_3__"}, store.Read},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, _, err := a.SetGrant(ctx, bad.g, exp("1"), bad.p)
			require.ErrorIs(t, err, store.ErrInvalid)
		})
	}

	rows, err := a.ListGrants(ctx, store.GrantFilter{Kind: store.Experiment, ID: "4"})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{
		{Grantee: store.Grantee{User: "dave"}, Resource: exp("4"), Permission: "EDIT"},
		{Grantee: store.Grantee{Group: "ml-ops"}, Resource: exp("4"), Permission: "READ"},
	}, rows)
	rows, err = a.ListGrants(ctx, store.GrantFilter{User: "alice", Kind: store.Scorer})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{
		{Grantee: alice, Resource: store.Resource{Kind: store.Scorer, ID: "1", Name: "a/b c"}, Permission: "USE"},
		{Grantee: alice, Resource: store.Resource{Kind: store.Scorer, ID: "2", Name: "x y"}, Permission: "READ"},
	}, rows)

	before, changed, err = a.DeleteGrant(ctx, store.Grantee{User: "dave"}, exp("4"))
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "EDIT", before.Permission)
	g, err := h.Reader.Grants(ctx, "dave", exp("4"))
	require.NoError(t, err)
	assert.NotContains(t, roleRows(g), "__user_5__ true experiment 4 EDIT")
	_, changed, err = a.DeleteGrant(ctx, store.Grantee{User: "dave"}, exp("4"))
	require.NoError(t, err)
	assert.False(t, changed)
}

func testRolesAdmin(t *testing.T, open Opener) {
	h := openRoles(t, open)
	a, ra := rolesAdmin(t, h)
	ctx := t.Context()

	created, err := ra.CreateRole(ctx, "", "viewers", "read everything")
	require.NoError(t, err)
	assert.True(t, created)
	created, err = ra.CreateRole(ctx, "", "viewers", "")
	require.NoError(t, err)
	assert.False(t, created)
	_, err = ra.CreateRole(ctx, "", "__user_9__", "")
	require.ErrorIs(t, err, store.ErrInvalid)

	_, _, err = a.SetGrant(ctx, store.Grantee{Group: "viewers"}, exp("*"), store.Read)
	require.NoError(t, err, "a wildcard grant, as MLflow's role API writes it")

	changed, err := ra.AssignRole(ctx, "", "alice", "viewers")
	require.NoError(t, err)
	assert.True(t, changed)
	changed, err = ra.AssignRole(ctx, "", "alice", "viewers")
	require.NoError(t, err)
	assert.False(t, changed)
	_, err = ra.AssignRole(ctx, "", "alice", "nope")
	require.ErrorIs(t, err, store.ErrNotFound)

	r, err := ra.Role(ctx, "", "viewers")
	require.NoError(t, err)
	assert.Equal(t, store.Role{Name: "viewers", Description: "read everything", Users: []string{"alice"},
		Permissions: []store.RolePermission{{Type: "experiment", Pattern: "*", Permission: "READ"}}}, r)
	r, err = ra.Role(ctx, "", "team")
	require.NoError(t, err)
	assert.Equal(t, store.Role{Name: "team", Description: "the team", Users: []string{"bob"}, Permissions: []store.RolePermission{
		{Type: "experiment", Pattern: "*", Permission: "READ"}, {Type: "experiment", Pattern: "1", Permission: "EDIT"}}}, r)
	_, err = ra.Role(ctx, "", "nope")
	require.ErrorIs(t, err, store.ErrNotFound)

	roles, err := ra.ListRoles(ctx, "")
	require.NoError(t, err)
	var names []string
	for _, r := range roles {
		names = append(names, r.Name)
	}
	assert.Equal(t, []string{"auditors", "runners", "team", "viewers"}, names, "named roles of the default workspace only")
	groups, err := a.ListGroups(ctx)
	require.NoError(t, err)
	assert.Equal(t, names, groups)

	changed, err = ra.UnassignRole(ctx, "", "alice", "viewers")
	require.NoError(t, err)
	assert.True(t, changed)
	require.NoError(t, ra.DeleteRole(ctx, "", "team"))
	assert.Empty(t, query(t, h, `SELECT CAST(role_id AS TEXT) FROM role_permissions WHERE role_id = 100`))
	assert.Empty(t, query(t, h, `SELECT CAST(role_id AS TEXT) FROM user_role_assignments WHERE role_id = 100`))
	assert.Empty(t, query(t, h, `SELECT CAST(role_id AS TEXT) FROM mutation_conditions WHERE role_id = 100`))
	assert.Equal(t, []string{"ws2"}, query(t, h, `SELECT workspace FROM roles WHERE name = 'team'`))
	require.ErrorIs(t, ra.DeleteRole(ctx, "", "team"), store.ErrNotFound)

	// Roles are per workspace: ws2's team outlived default's, a name of
	// default's is free in ws2, and each is managed where it is.
	r, err = ra.Role(ctx, "ws2", "team")
	require.NoError(t, err)
	assert.Equal(t, "team", r.Name)
	created, err = ra.CreateRole(ctx, "ws2", "viewers", "")
	require.NoError(t, err)
	assert.True(t, created, "default's viewers is another role")
	changed, err = ra.AssignRole(ctx, "ws2", "bob", "viewers")
	require.NoError(t, err)
	assert.True(t, changed)
	_, _, err = a.SetGrant(ctx, store.Grantee{Group: "viewers"}, store.Resource{Kind: store.Experiment, ID: "*", Workspace: "ws2"}, store.Edit)
	require.NoError(t, err)
	r, err = ra.Role(ctx, "ws2", "viewers")
	require.NoError(t, err)
	assert.Equal(t, store.Role{Name: "viewers", Users: []string{"bob"}, Permissions: []store.RolePermission{{Type: "experiment", Pattern: "*", Permission: "EDIT"}}}, r)
	roles, err = ra.ListRoles(ctx, "ws2")
	require.NoError(t, err)
	names = nil
	for _, r := range roles {
		names = append(names, r.Name)
	}
	assert.Equal(t, []string{"team", "viewers"}, names)
	changed, err = ra.UnassignRole(ctx, "", "bob", "viewers")
	require.NoError(t, err)
	assert.False(t, changed, "bob has ws2's viewers, not default's")
	require.NoError(t, ra.DeleteRole(ctx, "ws2", "viewers"))
	r, err = ra.Role(ctx, "", "viewers")
	require.NoError(t, err, "default's viewers stays")
	assert.Equal(t, []store.RolePermission{{Type: "experiment", Pattern: "*", Permission: "READ"}}, r.Permissions)

	require.NoError(t, a.DeleteUser(ctx, "alice"))
	assert.Empty(t, query(t, h, `SELECT name FROM roles WHERE name = '__user_1__'`), "the synthetic roles go with the user")
	assert.Empty(t, query(t, h, `SELECT username FROM users WHERE username = 'alice'`))
}

func testRolesRename(t *testing.T, open Opener) {
	h := openRoles(t, open)
	a, _ := rolesAdmin(t, h)
	ctx := t.Context()
	Must(t, h.ExecAuth, `INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission) VALUES (100, 'registered_model', 'm1', 'READ')`)
	require.NoError(t, a.RenameRegisteredModel(ctx, "", "m1", "m2"))
	assert.Equal(t, []string{"m2"}, query(t, h, `SELECT rp.resource_pattern FROM role_permissions rp JOIN roles r ON r.id = rp.role_id
		WHERE r.name = '__user_1__' AND rp.resource_type = 'registered_model'`))
	assert.Equal(t, []string{"m1"}, query(t, h, `SELECT resource_pattern FROM role_permissions WHERE role_id = 100 AND resource_type = 'registered_model'`),
		"named roles are the admin's, as in MLflow")
	require.NoError(t, a.DeleteResourceGrants(ctx, store.Resource{Kind: store.RegisteredModel, ID: "m2"}))
	assert.Empty(t, query(t, h, `SELECT resource_pattern FROM role_permissions WHERE resource_pattern = 'm2'`))
	assert.Equal(t, []string{"m1"}, query(t, h, `SELECT resource_pattern FROM role_permissions WHERE role_id = 100 AND resource_type = 'registered_model'`))
}

// testRolesWholeWorkspace: a workspace-wide grant of the roles layout is a
// (workspace, *) grant of the grantee's role in that workspace, USE or
// MANAGE only, as MLflow's _validate_permission_for_resource_type allows.
func testRolesWholeWorkspace(t *testing.T, open Opener) {
	h := openRoles(t, open)
	a, ra := rolesAdmin(t, h)
	ctx := t.Context()
	ws2 := store.Resource{Kind: store.WholeWorkspace, ID: "*", Workspace: "ws2"}
	_, changed, err := a.SetGrant(ctx, store.Grantee{Group: "team"}, ws2, store.Manage)
	require.NoError(t, err)
	assert.True(t, changed)
	r, err := ra.Role(ctx, "ws2", "team")
	require.NoError(t, err)
	assert.Contains(t, r.Permissions, store.RolePermission{Type: "workspace", Pattern: "*", Permission: "MANAGE"})
	_, changed, err = a.SetGrant(ctx, store.Grantee{User: "alice"}, ws2, store.Use)
	require.NoError(t, err)
	assert.True(t, changed)
	g, err := a.Grants(ctx, "alice", store.Resource{Kind: store.Experiment, ID: "*", Workspace: "ws2"})
	require.NoError(t, err)
	assert.Contains(t, roleRows(g), "__user_1__ true workspace * USE")
	_, _, err = a.SetGrant(ctx, store.Grantee{User: "alice"}, ws2, store.Edit)
	require.ErrorIs(t, err, store.ErrInvalid, "the workspace slot is USE or MANAGE")
	_, changed, err = a.DeleteGrant(ctx, store.Grantee{Group: "team"}, ws2)
	require.NoError(t, err)
	assert.True(t, changed)
	r, err = ra.Role(ctx, "ws2", "team")
	require.NoError(t, err)
	assert.NotContains(t, r.Permissions, store.RolePermission{Type: "workspace", Pattern: "*", Permission: "MANAGE"})
}
