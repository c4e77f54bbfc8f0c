package mlflowdb

import (
	"context"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// checkWholeWorkspace validates a workspace-wide grant's resource
// (store.WholeWorkspace).
func checkWholeWorkspace(r store.Resource) error {
	if r.ID != "*" || r.Name != "" {
		return invalid("a workspace-wide grant names no resource: its id is \"*\"")
	}
	return nil
}

// workspaceGrantee returns the users row a workspace_permissions row is
// keyed by, created when missing and create is set. The table holds users
// only.
func workspaceGrantee(ctx context.Context, tx Tx, g store.Grantee, create bool) (int64, bool, error) {
	if g.User == "" || g.Group != "" {
		return 0, false, invalid("workspace_permissions holds users only; a group takes a workspace-wide grant through its role in MLflow's roles layout")
	}
	have, err := tx.Tables(ctx)
	if err != nil {
		return 0, false, err
	}
	if !have["workspace_permissions"] {
		return 0, false, invalid("this auth database has no workspace_permissions table (MLflow before 3.10)")
	}
	return subject(ctx, tx, g, create)
}

// SetWorkspaceGrant implements store.Admin.SetGrant for a workspace-wide
// grant in the legacy layout: MLflow 3.10's workspace_permissions row
// (set_workspace_permission), which decides a resource of the workspace
// on which the user has no row of its own.
func SetWorkspaceGrant(ctx context.Context, tx Tx, g store.Grantee, r store.Resource, p store.Permission) (*store.GrantRow, bool, error) {
	if err := checkWholeWorkspace(r); err != nil {
		return nil, false, err
	}
	if err := validPermission(p); err != nil {
		return nil, false, err
	}
	uid, _, err := workspaceGrantee(ctx, tx, g, true)
	if err != nil {
		return nil, false, err
	}
	ws, want := r.WorkspaceOf(), p.String()
	var prev *string
	found, err := queryOne(ctx, tx, `SELECT permission FROM workspace_permissions WHERE workspace = $1 AND user_id = $2`, []any{ws, uid}, &prev)
	if err != nil {
		return nil, false, err
	}
	if !found {
		_, err = tx.Exec(ctx, `INSERT INTO workspace_permissions (workspace, user_id, permission) VALUES ($1, $2, $3)`, ws, uid, want)
		return nil, err == nil, err
	}
	before := &store.GrantRow{Grantee: g, Resource: r, Permission: deref(prev)}
	if deref(prev) == want {
		return before, false, nil
	}
	_, err = tx.Exec(ctx, `UPDATE workspace_permissions SET permission = $1 WHERE workspace = $2 AND user_id = $3`, want, ws, uid)
	return before, err == nil, err
}

// DeleteWorkspaceGrant implements store.Admin.DeleteGrant for a
// workspace-wide grant in the legacy layout.
func DeleteWorkspaceGrant(ctx context.Context, tx Tx, g store.Grantee, r store.Resource) (*store.GrantRow, bool, error) {
	if err := checkWholeWorkspace(r); err != nil {
		return nil, false, err
	}
	uid, found, err := workspaceGrantee(ctx, tx, g, false)
	if err != nil || !found {
		return nil, false, err
	}
	var prev *string
	found, err = queryOne(ctx, tx, `SELECT permission FROM workspace_permissions WHERE workspace = $1 AND user_id = $2`, []any{r.WorkspaceOf(), uid}, &prev)
	if err != nil || !found {
		return nil, false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM workspace_permissions WHERE workspace = $1 AND user_id = $2`, r.WorkspaceOf(), uid); err != nil {
		return nil, false, err
	}
	return &store.GrantRow{Grantee: g, Resource: r, Permission: deref(prev)}, true, nil
}
