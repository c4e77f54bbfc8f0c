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
