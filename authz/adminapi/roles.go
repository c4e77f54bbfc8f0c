package adminapi

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// rolesLayout reports whether the store reads MLflow 3.12+'s roles.
func (h *handlers) rolesLayout() bool {
	l, ok := h.opts.Store.(store.LayoutReporter)
	return ok && l.Layout().Layout == store.LayoutRoles
}

// groupName is the name a group's rows are stored under: the group
// without Keycloak's leading "/" in the legacy layout; in the roles layout
// the role the group names, as the check maps a token's groups
// (mlflow.group_roles), so a grant to a group is what its members get.
func (h *handlers) groupName(group string) (string, error) {
	name := authz.NormalizeGroup(group)
	if err := required("group", name); err != nil {
		return "", err
	}
	if !h.rolesLayout() {
		return name, nil
	}
	role, ok := h.opts.Resolution.GroupRole(group)
	if !ok {
		return "", status.Errorf(codes.InvalidArgument, "group %q names no MLflow role under mlflow.group_roles (prefix, path, or a reserved __user_ name)", group)
	}
	return role, nil
}

func (h *handlers) roleAdmin() (store.RoleAdmin, error) {
	ra, ok := h.opts.Store.(store.RoleAdmin)
	if !ok || !h.rolesLayout() {
		return nil, status.Error(codes.FailedPrecondition, "roles exist in MLflow 3.12+'s auth database (the roles layout); this one keeps per-user tables: use grant --user or --group")
	}
	return ra, nil
}

// roleAdminIn is roleAdmin with the workspace req names.
func (h *handlers) roleAdminIn(req workspaceRequest) (store.RoleAdmin, string, error) {
	ra, err := h.roleAdmin()
	if err != nil {
		return nil, "", err
	}
	ws, err := h.workspace(req.GetWorkspace())
	return ra, ws, err
}

func roleMessage(r store.Role) *v1.Role {
	out := &v1.Role{Name: r.Name, Description: r.Description, Users: r.Users}
	for _, p := range r.Permissions {
		out.Permissions = append(out.Permissions, &v1.RolePermission{ResourceType: p.Type, ResourcePattern: p.Pattern, Permission: p.Permission})
	}
	return out
}

// CreateRole creates a role in the request's workspace.
func (h *handlers) CreateRole(ctx context.Context, req *v1.CreateRoleRequest) (*v1.CreateRoleResponse, error) {
	ra, ws, err := h.roleAdminIn(req)
	if err != nil {
		return nil, err
	}
	if err := required("name", req.GetName()); err != nil {
		return nil, err
	}
	created, err := ra.CreateRole(ctx, ws, req.GetName(), req.GetDescription())
	if err != nil {
		return nil, storeErr(err, "")
	}
	return &v1.CreateRoleResponse{Created: created}, nil
}

// ListRoles lists the named roles of the request's workspace.
func (h *handlers) ListRoles(ctx context.Context, req *v1.ListRolesRequest) (*v1.ListRolesResponse, error) {
	ra, ws, err := h.roleAdminIn(req)
	if err != nil {
		return nil, err
	}
	roles, err := ra.ListRoles(ctx, ws)
	if err != nil {
		return nil, storeErr(err, "")
	}
	out := &v1.ListRolesResponse{}
	for _, r := range roles {
		out.Roles = append(out.Roles, roleMessage(r))
	}
	return out, nil
}

// GetRole shows one role with its grants and users.
func (h *handlers) GetRole(ctx context.Context, req *v1.GetRoleRequest) (*v1.GetRoleResponse, error) {
	ra, ws, err := h.roleAdminIn(req)
	if err != nil {
		return nil, err
	}
	r, err := ra.Role(ctx, ws, req.GetName())
	if err != nil {
		return nil, storeErr(err, fmt.Sprintf("role %q not found%s; list roles with: mlflow-authz roles list", req.GetName(), inWorkspace(ws)))
	}
	return &v1.GetRoleResponse{Role: roleMessage(r)}, nil
}

// DeleteRole deletes a role with its grants and assignments.
func (h *handlers) DeleteRole(ctx context.Context, req *v1.DeleteRoleRequest) (*v1.DeleteRoleResponse, error) {
	ra, ws, err := h.roleAdminIn(req)
	if err != nil {
		return nil, err
	}
	if err := ra.DeleteRole(ctx, ws, req.GetName()); err != nil {
		return nil, storeErr(err, fmt.Sprintf("role %q not found%s; list roles with: mlflow-authz roles list", req.GetName(), inWorkspace(ws)))
	}
	return &v1.DeleteRoleResponse{}, nil
}

// AssignRole assigns a role to a user.
func (h *handlers) AssignRole(ctx context.Context, req *v1.AssignRoleRequest) (*v1.AssignRoleResponse, error) {
	ra, ws, err := h.roleAdminIn(req)
	if err != nil {
		return nil, err
	}
	if err := required("username", req.GetUsername()); err != nil {
		return nil, err
	}
	changed, err := ra.AssignRole(ctx, ws, req.GetUsername(), req.GetRole())
	if err != nil {
		return nil, storeErr(err, fmt.Sprintf("role %q not found%s; list roles with: mlflow-authz roles list", req.GetRole(), inWorkspace(ws)))
	}
	return &v1.AssignRoleResponse{Changed: changed}, nil
}

// UnassignRole removes a role from a user.
func (h *handlers) UnassignRole(ctx context.Context, req *v1.UnassignRoleRequest) (*v1.UnassignRoleResponse, error) {
	ra, ws, err := h.roleAdminIn(req)
	if err != nil {
		return nil, err
	}
	changed, err := ra.UnassignRole(ctx, ws, req.GetUsername(), req.GetRole())
	if err != nil {
		return nil, storeErr(err, "")
	}
	return &v1.UnassignRoleResponse{Changed: changed}, nil
}
