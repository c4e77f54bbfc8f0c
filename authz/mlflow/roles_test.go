package mlflow

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// role is one role_permissions row, as the store reads it.
func role(name string, assigned bool, typ, pattern, perm string) store.RoleGrant {
	r := store.RoleGrant{Role: name, Assigned: assigned, Type: typ, Pattern: pattern}
	switch perm {
	case "DENY":
		r.Deny, r.Grant = true, store.Grant{Permission: store.NoPermissions, Valid: true}
	case "condition":
		r.Condition = true
	default:
		p, ok := store.ParsePermission(perm)
		r.Grant = store.Grant{Permission: p, Valid: ok}
	}
	return r
}

func TestRolePermission(t *testing.T) {
	exp := store.Resource{Kind: store.Experiment, ID: "1"}
	model := store.Resource{Kind: store.RegisteredModel, ID: "m1"}
	const me = "__user_1__"
	tests := []struct {
		name       string
		res        store.Resource
		roles      []store.RoleGrant
		prompt     *bool // nil: the store could not tell
		groups     []string
		mapping    GroupRoles
		def        store.Permission
		want       store.Permission
		source     string
		unreadable string
	}{
		{"specific grant", exp, []store.RoleGrant{role(me, true, "experiment", "1", "EDIT")}, nil, nil, GroupRoles{}, store.NoPermissions, store.Edit, "role", ""},
		{"wildcard and specific: the highest", exp, []store.RoleGrant{
			role(me, true, "experiment", "1", "READ"), role("team", true, "experiment", "*", "MANAGE")}, nil, nil, GroupRoles{}, store.NoPermissions, store.Manage, "role", ""},
		{"a direct grant does not outrank a role's", exp, []store.RoleGrant{
			role(me, true, "experiment", "1", "MANAGE"), role("viewers", true, "experiment", "*", "READ")}, nil, nil, GroupRoles{}, store.NoPermissions, store.Manage, "role", ""},
		{"a lower direct grant does not cap a role's", exp, []store.RoleGrant{
			role(me, true, "experiment", "1", "READ"), role("editors", true, "experiment", "1", "EDIT")}, nil, nil, GroupRoles{}, store.NoPermissions, store.Edit, "role", ""},
		{"an unassigned role grants nothing", exp, []store.RoleGrant{role("team", false, "experiment", "*", "MANAGE")}, nil, nil, GroupRoles{}, store.NoPermissions, store.NoPermissions, "default", ""},
		{"group names its role", exp, []store.RoleGrant{role("team", false, "experiment", "*", "EDIT")}, nil, []string{"/team"}, GroupRoles{}, store.NoPermissions, store.Edit, "role", ""},
		{"group prefix stripped", exp, []store.RoleGrant{role("team", false, "experiment", "*", "EDIT")}, nil, []string{"/mlflow-team"}, GroupRoles{Prefix: "mlflow-"}, store.NoPermissions, store.Edit, "role", ""},
		{"group without the prefix names nothing", exp, []store.RoleGrant{role("team", false, "experiment", "*", "EDIT")}, nil, []string{"team"}, GroupRoles{Prefix: "mlflow-"}, store.NoPermissions, store.NoPermissions, "default", ""},
		{"last path segment", exp, []store.RoleGrant{role("team", false, "experiment", "*", "EDIT")}, nil, []string{"/org/team"}, GroupRoles{Path: GroupPathLast}, store.NoPermissions, store.Edit, "role", ""},
		{"full path by default", exp, []store.RoleGrant{role("team", false, "experiment", "*", "EDIT")}, nil, []string{"/org/team"}, GroupRoles{}, store.NoPermissions, store.NoPermissions, "default", ""},
		{"mapping off", exp, []store.RoleGrant{role("team", false, "experiment", "*", "EDIT")}, nil, []string{"team"}, GroupRoles{Off: true}, store.NoPermissions, store.NoPermissions, "default", ""},
		{"a group never names a synthetic role", exp, []store.RoleGrant{role("__user_2__", false, "experiment", "1", "MANAGE")}, nil, []string{"__user_2__"}, GroupRoles{}, store.NoPermissions, store.NoPermissions, "default", ""},
		{"DENY beats every grant", exp, []store.RoleGrant{
			role(me, true, "experiment", "1", "MANAGE"), role("auditors", true, "experiment", "*", "DENY")}, nil, nil, GroupRoles{}, store.Read, store.NoPermissions, "role", "a role grants DENY"},
		{"a workspace admin is not restricted by DENY", exp, []store.RoleGrant{
			role(me, true, "workspace", "*", "MANAGE"), role("auditors", true, "experiment", "1", "DENY")}, nil, nil, GroupRoles{}, store.NoPermissions, store.Manage, "role", ""},
		{"workspace USE grants nothing on a resource", exp, []store.RoleGrant{role(me, true, "workspace", "*", "USE")}, nil, nil, GroupRoles{}, store.Read, store.Read, "default", ""},
		{"a positive grant is floored at the default", exp, []store.RoleGrant{role(me, true, "experiment", "1", "READ")}, nil, nil, GroupRoles{}, store.Edit, store.Edit, "role", ""},
		{"NO_PERMISSIONS stays a deny", exp, []store.RoleGrant{role(me, true, "experiment", "1", "NO_PERMISSIONS")}, nil, nil, GroupRoles{}, store.Read, store.NoPermissions, "role", ""},
		{"an unknown permission denies", exp, []store.RoleGrant{
			role(me, true, "experiment", "1", "SUPERUSER"), role("team", true, "experiment", "*", "READ")}, nil, nil, GroupRoles{}, store.Read, store.NoPermissions, "role",
			`role "__user_1__" holds a permission on experiment "1" that is not one of MLflow's`},
		{"a sub-resource grant is not evaluated", exp, []store.RoleGrant{
			role(me, true, "experiment", "1", "MANAGE"), role("runners", true, "run", "*", "READ")}, nil, nil, GroupRoles{}, store.NoPermissions, store.NoPermissions, "role",
			`role "runners" grants on run "*", a sub-resource tier that MLflow may apply in place of the experiment grant and that this build does not evaluate`},
		{"a mutation condition leaves reads only", exp, []store.RoleGrant{
			role("team", true, "experiment", "*", "MANAGE"), role("team", true, "experiment", "*", "condition")}, nil, nil, GroupRoles{}, store.NoPermissions, store.Read, "role",
			"a mutation condition of one of the user's roles applies, which this build does not evaluate: reads only"},
		{"a prompt's grants are of type prompt", model, []store.RoleGrant{
			role(me, true, "registered_model", "m1", "MANAGE"), role(me, true, "prompt", "m1", "READ")}, ptr(true), nil, GroupRoles{}, store.NoPermissions, store.Read, "role", ""},
		{"a model's grants are of type registered_model", model, []store.RoleGrant{
			role(me, true, "registered_model", "m1", "MANAGE"), role(me, true, "prompt", "m1", "READ")}, ptr(false), nil, GroupRoles{}, store.NoPermissions, store.Manage, "role", ""},
		{"prompt or not unknown: the lower", model, []store.RoleGrant{
			role(me, true, "registered_model", "m1", "MANAGE"), role(me, true, "prompt", "m1", "READ")}, nil, nil, GroupRoles{}, store.NoPermissions, store.Read, "role", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := NewResolution("", nil, tt.def, nil)
			require.NoError(t, err)
			rs, err = rs.WithGroupRoles(tt.mapping)
			require.NoError(t, err)
			g := store.Grants{Layout: store.LayoutRoles, UserExists: true, Roles: tt.roles}
			if tt.prompt != nil {
				g.PromptKnown, g.Prompt = true, *tt.prompt
			}
			var lines []string
			r, err := rs.Permission(t.Context(), nil, "alice", tt.groups, tt.res, tt.res, g, func(s Source) { lines = append(lines, s.Describe("alice")) })
			require.NoError(t, err)
			assert.Equal(t, tt.want, r.Permission)
			assert.Equal(t, tt.source, r.Source)
			assert.Equal(t, tt.unreadable, r.Unreadable)
			assert.NotEmpty(t, lines, "explain hears every source")
			quiet, err := rs.Permission(t.Context(), nil, "alice", tt.groups, tt.res, tt.res, g, nil)
			require.NoError(t, err)
			assert.Equal(t, r, quiet, "the note must not change the result")
		})
	}
	require.Error(t, GroupRoles{Path: "middle"}.Validate())
}
