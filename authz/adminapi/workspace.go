package adminapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Workspaces (MLflow 3.10+). Every grant and role belongs to one workspace,
// named in the request ("" is default). A caller who is not an admin may
// still manage the grants and roles of a workspace it administers, as
// MLflow lets a workspace's MANAGE holder manage its permissions and roles
// (mlflow/server/auth/__init__.py: validate_can_modify_workspace_permission,
// validate_can_manage_roles): with apps[].mlflow.workspaces on, a workspace
// admin is the holder of an explicit workspace-wide MANAGE there (a
// workspace_permissions row, or a role with (workspace, *, MANAGE) that is
// assigned to it or named by one of its token groups), never of the
// default permission. It may call the workspaceScoped methods naming that
// workspace only, and a grant's resource must live there.

// workspaceScoped are the methods a workspace admin may call, each on the
// workspace its request names.
var workspaceScoped = map[string]bool{
	"/mlflowauthz.v1.AdminService/Grant":           true,
	"/mlflowauthz.v1.AdminService/Revoke":          true,
	"/mlflowauthz.v1.AdminService/ListPermissions": true,
	"/mlflowauthz.v1.AdminService/CreateRole":      true,
	"/mlflowauthz.v1.AdminService/ListRoles":       true,
	"/mlflowauthz.v1.AdminService/GetRole":         true,
	"/mlflowauthz.v1.AdminService/DeleteRole":      true,
	"/mlflowauthz.v1.AdminService/AssignRole":      true,
	"/mlflowauthz.v1.AdminService/UnassignRole":    true,
}

// workspaceRequest is a request that names a workspace.
type workspaceRequest interface{ GetWorkspace() string }

// scopeKey marks a call authorized for one workspace only.
type scopeKey struct{}

// workspaceAdminOf returns the workspace a call is limited to, when its
// caller is a workspace admin rather than an admin.
func workspaceAdminOf(ctx context.Context) (string, bool) {
	ws, ok := ctx.Value(scopeKey{}).(string)
	return ws, ok
}

// parseWorkspace reads a request's workspace: "" is default, anything else
// must be a name MLflow accepts.
func parseWorkspace(name string) (string, error) {
	ws, err := mlflow.ParseWorkspace(name)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "workspace: %v", err)
	}
	return ws, nil
}

// workspace returns the workspace a request names. A server whose MLflow
// application has workspaces off decides everything in default, so a
// grant anywhere else would never count there: refused.
func (h *handlers) workspace(name string) (string, error) {
	ws, err := parseWorkspace(name)
	if err != nil {
		return "", err
	}
	if ws != store.DefaultWorkspace && h.opts.Remote && !h.opts.Resolution.Workspaces() {
		return "", status.Errorf(codes.FailedPrecondition,
			"workspace %q: apps[].mlflow.workspaces is off on this server, which decides every request in workspace %q", ws, store.DefaultWorkspace)
	}
	return ws, nil
}

// authorizeWorkspaceAdmin admits id, which is not an admin, to a
// workspaceScoped method when it administers the workspace req names; the
// returned context carries that limit.
func (s *Service) authorizeWorkspaceAdmin(ctx context.Context, method string, req any, id *authz.Identity) (context.Context, bool, error) {
	wr, ok := req.(workspaceRequest)
	if !ok || !workspaceScoped[method] || !s.opts.Resolution.Workspaces() || id.Username == "" {
		return ctx, false, nil
	}
	ws, err := parseWorkspace(wr.GetWorkspace())
	if err != nil {
		return ctx, false, err
	}
	g, err := s.opts.Store.Grants(ctx, id.Username, store.Resource{Kind: store.Experiment, ID: "*", Workspace: ws})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return ctx, false, status.Error(codes.Unavailable, "could not read the caller's workspace grants; retry")
	}
	if err != nil || !s.opts.Resolution.WorkspaceAdmin(g, id.Groups) {
		return ctx, false, nil
	}
	return context.WithValue(ctx, scopeKey{}, ws), true, nil
}

// checkResourceWorkspace requires res, a grant's resource, to live in ws:
// experiment (and scorer) grants of the legacy layout have no workspace
// column, so a grant on another workspace's experiment would reach it.
// Registered models are keyed by name within ws itself.
func (h *handlers) checkResourceWorkspace(ctx context.Context, res store.Resource, ws string) error {
	if res.Kind != store.Experiment && res.Kind != store.Scorer {
		return nil
	}
	got, err := h.opts.Store.Resolve(ctx, store.WorkspaceOfExperiment, res.ID)
	if err == nil && len(got) != 1 {
		err = store.ErrNotFound
	}
	if err != nil {
		return storeErr(err, fmt.Sprintf("experiment %s not found; list experiments with: mlflow experiments search", res.ID))
	}
	if got[0] != ws {
		return status.Errorf(codes.FailedPrecondition, "experiment %s lives in workspace %q, not %q (--workspace)", res.ID, got[0], ws)
	}
	return nil
}

// inWorkspace says " in workspace ws" in messages, or nothing for default.
func inWorkspace(ws string) string {
	if ws == store.DefaultWorkspace {
		return ""
	}
	return fmt.Sprintf(" in workspace %q", ws)
}

// requireWorkspaceRows refuses a workspace admin a listing that could show
// another workspace's rows: the legacy layout keeps experiment rows
// without a workspace, so a workspace admin lists one resource's rows.
func (h *handlers) requireWorkspaceRows(ctx context.Context, req *v1.ListPermissionsRequest) error {
	if _, limited := workspaceAdminOf(ctx); !limited || h.rolesLayout() || req.GetTarget().GetTarget() != nil {
		return nil
	}
	return status.Error(codes.PermissionDenied,
		"a workspace admin lists the rows of one resource of its workspace (--experiment or --registered-model): this auth database keeps experiment rows without a workspace")
}
