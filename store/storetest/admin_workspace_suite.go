package storetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// testAdminGroupRowsWorkspace pins the group rows of registered models to
// workspace default: their table keys a model by name alone, so a row
// written, renamed, deleted or read for another workspace would act on
// default's model of the same name.
func testAdminGroupRowsWorkspace(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	inB := func(name string) store.Resource {
		return store.Resource{Kind: store.RegisteredModel, ID: name, Workspace: "team-b"}
	}
	_, _, err := a.SetGrant(ctx, team, rm("m"), store.Edit)
	require.NoError(t, err)
	_, _, err = a.SetGrant(ctx, alice, inB("m"), store.Read)
	require.NoError(t, err)

	_, _, err = a.SetGrant(ctx, team, inB("m"), store.Read)
	require.ErrorIs(t, err, store.ErrInvalid, "a group row cannot hold team-b's model")
	assert.Contains(t, err.Error(), "roles layout")
	_, _, err = a.DeleteGrant(ctx, team, inB("m"))
	require.ErrorIs(t, err, store.ErrInvalid)

	g, err := a.Grants(ctx, "alice", inB("m"))
	require.NoError(t, err)
	assert.Equal(t, grant(store.Read), g.User)
	assert.Empty(t, g.Groups, "default's group row does not bear on team-b's model")
	g, err = a.Grants(ctx, "alice", rm("m"))
	require.NoError(t, err)
	assert.Nil(t, g.User, "team-b's row does not bear on default's model")

	rows, err := a.ListGrants(ctx, store.GrantFilter{Kind: store.RegisteredModel, Workspace: "team-b"})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{{Grantee: alice, Resource: inB("m"), Permission: "READ"}}, rows)

	require.NoError(t, a.RenameRegisteredModel(ctx, "team-b", "m", "n"))
	require.NoError(t, a.DeleteResourceGrants(ctx, inB("n")))
	rows, err = a.ListGrants(ctx, store.GrantFilter{Kind: store.RegisteredModel})
	require.NoError(t, err)
	assert.Equal(t, []store.GrantRow{{Grantee: team, Resource: rm("m"), Permission: "EDIT"}}, rows,
		"renaming and deleting team-b's model leave default's group row alone")
	assert.Empty(t, query(t, h, `SELECT name FROM registered_model_permissions WHERE workspace = 'team-b'`))
}

// testAdminWholeWorkspace: a workspace-wide grant of the legacy layout is
// MLflow 3.10's workspace_permissions row of a user, read back by Grants
// as the workspace's grant.
func testAdminWholeWorkspace(t *testing.T, open Opener) {
	h, a := openAdmin(t, open, Setup{})
	ctx := t.Context()
	teamB := store.Resource{Kind: store.WholeWorkspace, ID: "*", Workspace: "team-b"}
	before, changed, err := a.SetGrant(ctx, alice, teamB, store.Edit)
	require.NoError(t, err)
	assert.Nil(t, before)
	assert.True(t, changed)
	before, changed, err = a.SetGrant(ctx, alice, teamB, store.Manage)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "EDIT", before.Permission)
	_, changed, err = a.SetGrant(ctx, alice, teamB, store.Manage)
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, []string{"team-b MANAGE"}, query(t, h, `SELECT wp.workspace || ' ' || wp.permission FROM workspace_permissions wp
		JOIN users u ON u.id = wp.user_id WHERE u.username = 'alice'`))

	g, err := a.Grants(ctx, "alice", store.Resource{Kind: store.Experiment, ID: "1", Workspace: "team-b"})
	require.NoError(t, err)
	assert.Equal(t, grant(store.Manage), g.Workspace, "the workspace's grant, for a resource of team-b")
	g, err = a.Grants(ctx, "alice", store.Resource{Kind: store.Experiment, ID: "1"})
	require.NoError(t, err)
	assert.Nil(t, g.Workspace, "nothing in default")

	_, _, err = a.SetGrant(ctx, team, teamB, store.Read)
	require.ErrorIs(t, err, store.ErrInvalid, "workspace_permissions holds users only")
	_, _, err = a.SetGrant(ctx, alice, store.Resource{Kind: store.WholeWorkspace, ID: "1", Workspace: "team-b"}, store.Read)
	require.ErrorIs(t, err, store.ErrInvalid)

	before, changed, err = a.DeleteGrant(ctx, alice, teamB)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "MANAGE", before.Permission)
	_, changed, err = a.DeleteGrant(ctx, alice, teamB)
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Empty(t, query(t, h, `SELECT workspace FROM workspace_permissions`))
}
