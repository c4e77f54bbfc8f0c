package mlflow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Workspaces (MLflow 3.10+, MLFLOW_ENABLE_WORKSPACES). With
// Config.Workspaces on, a request is decided in the workspace it names, as
// MLflow resolves it (mlflow/server/workspace_helpers.py
// resolve_workspace_for_request_if_enabled and resolve_workspace_from_header,
// read at commit a89bed67):
//
//   - the X-MLFLOW-WORKSPACE header, trimmed; empty or absent means the
//     default workspace, "default" is taken as it is, anything else must be
//     a valid workspace name (WorkspaceNameValidator) or MLflow answers 400;
//   - server-info skips the resolution (MLflow keeps it reachable whatever
//     the header says);
//   - a resource's own workspace is the workspace column of its tracking
//     row (experiments, secrets, endpoints, model_definitions). MLflow's
//     workspace-scoped stores do not find a resource of another workspace,
//     so its permission there is NO_PERMISSIONS (__init__.py
//     _get_resource_workspace, _role_permission_for); we deny it with
//     ReasonWorkspaceMismatch. Registered models, and names, are unique
//     per workspace and are looked up in the request's.

// Reasons of the workspace checks.
const (
	// ReasonInvalidWorkspace: the X-MLFLOW-WORKSPACE header is not a
	// workspace name MLflow accepts (400).
	ReasonInvalidWorkspace authz.Reason = "invalid_workspace"
	// ReasonWorkspaceMismatch: the resource lives in another workspace than
	// the one the request names (403).
	ReasonWorkspaceMismatch authz.Reason = "workspace_mismatch"
)

// Workspace-name rules of MLflow's WorkspaceNameValidator
// (mlflow/store/workspace/abstract_store.py): Kubernetes-style names.
const (
	workspaceMinLen = 2
	workspaceMaxLen = 63
)

// reservedWorkspaces are names MLflow refuses (WorkspaceNameValidator._RESERVED).
var reservedWorkspaces = map[string]bool{"workspaces": true, "api": true, "ajax-api": true, "static-files": true}

// ParseWorkspace returns the workspace a request's X-MLFLOW-WORKSPACE value
// names: store.DefaultWorkspace when it is empty, else the trimmed name,
// which must be a name MLflow accepts. Only ASCII white space is trimmed:
// Python's str.strip trims more, and a name that needs it is refused
// rather than read differently.
func ParseWorkspace(header string) (string, error) {
	name := strings.Trim(header, " \t\n\v\f\r")
	if name == "" || name == store.DefaultWorkspace {
		return store.DefaultWorkspace, nil
	}
	if len(name) < workspaceMinLen || len(name) > workspaceMaxLen {
		return "", fmt.Errorf("workspace name %q must be between %d and %d characters", name, workspaceMinLen, workspaceMaxLen)
	}
	// ^(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i > 0 && i < len(name)-1 && name[i-1] != '-':
		default:
			return "", fmt.Errorf("workspace name %q must be lower-case letters, digits and single inner hyphens", name)
		}
	}
	if reservedWorkspaces[name] {
		return "", fmt.Errorf("workspace name %q is reserved", name)
	}
	return name, nil
}

// requestWorkspace resolves the workspace req is decided in; "" with
// workspaces off.
func (p *Policy) requestWorkspace(req *authz.Request, op Operation) (string, *authz.Decision) {
	if !p.workspaces {
		return "", nil
	}
	if op.Route != nil && op.Route.Name == "ServerInfo" {
		return store.DefaultWorkspace, nil
	}
	ws, err := ParseWorkspace(req.Headers[WorkspaceHeader])
	if err != nil {
		return "", deny(http.StatusBadRequest, ReasonInvalidWorkspace, "X-MLFLOW-WORKSPACE: "+err.Error())
	}
	return ws, nil
}

// workspaceLookups find the workspace of a resource of each kind by its id.
// A scorer lives in its experiment's.
var workspaceLookups = map[store.ResourceKind]store.Lookup{
	store.Experiment:             store.WorkspaceOfExperiment,
	store.Scorer:                 store.WorkspaceOfExperiment,
	store.GatewaySecret:          store.WorkspaceOfGatewaySecret,
	store.GatewayEndpoint:        store.WorkspaceOfGatewayEndpoint,
	store.GatewayModelDefinition: store.WorkspaceOfGatewayModelDefinition,
}

// checkWorkspace denies res when it lives in another workspace than ws,
// the one the request names. A resource that does not exist is MLflow's to
// answer (404), as with workspaces off; a failed lookup denies.
func (p *Policy) checkWorkspace(ctx context.Context, res store.Resource, ws string) *authz.Decision {
	l, ok := workspaceLookups[res.Kind]
	if !ok || res.ID == "*" {
		return nil // registered models are looked up by name in ws itself
	}
	got, err := p.store.Resolve(ctx, l, res.ID)
	if errors.Is(err, store.ErrNotFound) {
		if tr := authz.TraceFrom(ctx); tr != nil {
			tr.Addf("workspace", "%s not found: no workspace to compare", describe(res))
		}
		return nil
	}
	if err != nil {
		d := storeDeny(err)
		return &d
	}
	if len(got) != 1 {
		return deny(http.StatusForbidden, ReasonWorkspaceMismatch, describe(res)+" has no single workspace")
	}
	if tr := authz.TraceFrom(ctx); tr != nil {
		tr.Addf("workspace", "%s lives in workspace %q; the request names %q", describe(res), got[0], ws)
	}
	if got[0] != ws {
		return deny(http.StatusForbidden, ReasonWorkspaceMismatch,
			fmt.Sprintf("%s is not in workspace %q, which the request names (X-MLFLOW-WORKSPACE)", describe(res), ws))
	}
	return nil
}

// scopedLookups are the by-name lookups that a workspace scopes.
var scopedLookups = map[store.Lookup]store.Lookup{
	store.ExperimentByName:      store.ExperimentByNameIn,
	store.GatewayEndpointByName: store.GatewayEndpointByNameIn,
}

// inWorkspace returns the lookup and key that find n's key in ws: names
// are unique per workspace.
func inWorkspace(l store.Lookup, key, ws string) (store.Lookup, string) {
	if in, ok := scopedLookups[l]; ok && ws != "" {
		return in, store.WorkspaceKey(ws, key)
	}
	return l, key
}

// fallback is what MLflow gives when no grant on the resource decides, in
// res's workspace: with workspaces off, default_permission; on, the
// workspace-wide grant (legacy layout: the workspace_permissions row,
// __init__.py _workspace_permission), else default_permission in the
// default workspace when grant_default_workspace_access is set
// (_user_inherits_default_workspace_grant), else NO_PERMISSIONS. The
// source is "default" or "workspace".
func (rs Resolution) fallback(g store.Grants, res store.Resource) (store.Permission, string) {
	if !rs.workspaces {
		return rs.def, "default"
	}
	if g.Workspace != nil && g.Layout != store.LayoutRoles {
		if !g.Workspace.Valid {
			return store.NoPermissions, "workspace"
		}
		return g.Workspace.Permission, "workspace"
	}
	if rs.defaultWorkspaceAccess && res.WorkspaceOf() == store.DefaultWorkspace {
		return rs.def, "default"
	}
	return store.NoPermissions, "workspace"
}

// workspacePermission is the caller's workspace-wide permission in ws, which
// a create there needs (__init__.py _user_can_create_in_workspace): its own
// workspace-wide grant (explicitWorkspaceGrant), else the default-workspace
// grant.
func (rs Resolution) workspacePermission(g store.Grants, groups []string, ws string) store.Permission {
	if p, found := rs.explicitWorkspaceGrant(g, groups); found {
		return p
	}
	if rs.defaultWorkspaceAccess && ws == store.DefaultWorkspace {
		return rs.def
	}
	return store.NoPermissions
}

// explicitWorkspaceGrant is the workspace-wide grant that g (read for a
// resource of one workspace) holds for its user and groups: the roles
// layout's highest (workspace, "*") grant of the user's roles and of the
// roles its groups name (NO_PERMISSIONS when one of them denies), or the
// legacy layout's workspace_permissions row. found is false when there is
// none.
func (rs Resolution) explicitWorkspaceGrant(g store.Grants, groups []string) (p store.Permission, found bool) {
	if g.Layout != store.LayoutRoles {
		if g.Workspace == nil {
			return store.NoPermissions, false
		}
		if !g.Workspace.Valid {
			return store.NoPermissions, true
		}
		return g.Workspace.Permission, true
	}
	mapped := rs.groupRoles.Map(groups)
	best := store.NoPermissions
	for _, r := range g.Roles {
		if r.Type != "workspace" || r.Pattern != "*" || r.Condition {
			continue
		}
		if _, ok := mapped[r.Role]; !r.Assigned && (!ok || strings.HasPrefix(r.Role, syntheticRolePrefix)) {
			continue
		}
		if r.Deny || !r.Grant.Valid {
			return store.NoPermissions, true
		}
		best, found = max(best, r.Grant.Permission), true
	}
	return best, found
}

// WorkspaceAdmin reports whether g, the grants of a user on a resource of
// one workspace (store.Reader.Grants with Resource.Workspace set), make
// that user, with its token groups, the workspace's admin: an explicit
// workspace-wide MANAGE (a workspace_permissions row in the legacy layout,
// a role holding (workspace, *, MANAGE) in the roles layout), never the
// default permission. Only with workspaces on; users.is_admin is the
// caller's to check.
func (rs Resolution) WorkspaceAdmin(g store.Grants, groups []string) bool {
	if !rs.workspaces {
		return false
	}
	p, found := rs.explicitWorkspaceGrant(g, groups)
	return found && p >= store.Manage
}

// Workspaces reports whether the resolution decides in MLflow's
// workspaces (Config.Workspaces).
func (rs Resolution) Workspaces() bool { return rs.workspaces }

// checkCreateIn checks that the caller may create in ws: MLflow's newest
// code asks for USE on the workspace (roles layout); 3.10 and 3.11, whose
// auth database has the legacy layout, ask for MANAGE
// (validate_can_create_experiment at the 3.11 baseline).
func (p *Policy) checkCreateIn(ctx context.Context, id *authz.Identity, ws string) *authz.Decision {
	g, err := p.store.Grants(ctx, id.Username, store.Resource{Kind: store.Experiment, ID: "*", Workspace: ws})
	if err != nil {
		d := storeDeny(err)
		if errors.Is(err, store.ErrNotFound) {
			d = authz.Deny(http.StatusServiceUnavailable, authz.ReasonUnavailable, "permissions could not be read right now; retry")
		}
		return &d
	}
	if g.UserAdmin {
		return nil
	}
	need := store.Manage
	if g.Layout == store.LayoutRoles {
		need = store.Use
	}
	got := p.resolution.workspacePermission(g, id.Groups, ws)
	if tr := authz.TraceFrom(ctx); tr != nil {
		tr.Addf("workspace", "creating in workspace %q needs %s on it; the caller has %s", ws, need, got)
	}
	if got < need {
		return deny(http.StatusForbidden, authz.ReasonPermissionDenied, fmt.Sprintf("creating in workspace %q requires %s on the workspace", ws, need))
	}
	return nil
}

// canViewWorkspace reports whether id sees workspace ws, as MLflow's
// validate_can_view_workspace and filter_list_workspaces decide it
// (mlflow/server/auth/__init__.py, read at 000d336a): with workspaces off,
// every caller; else a signed-in user that store.VisibleWorkspaces names
// (a READ workspace_permissions row in the legacy layout, any role
// assignment in the roles layout), or whose token group names a role of
// ws (as an assignment would), or anyone in the default workspace with
// grant_default_workspace_access. Admins are the caller's to check.
func (p *Policy) canViewWorkspace(ctx context.Context, id *authz.Identity, ws string) (bool, error) {
	if !p.workspaces {
		return true, nil
	}
	if id.Username == "" {
		return false, nil
	}
	if p.resolution.defaultWorkspaceAccess && ws == store.DefaultWorkspace {
		return true, nil
	}
	visible := func(l store.Lookup, key string) (bool, error) {
		names, err := p.store.Resolve(ctx, l, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		return slices.Contains(names, ws), nil
	}
	if ok, err := visible(store.VisibleWorkspaces, id.Username); ok || err != nil {
		return ok, err
	}
	for role := range p.resolution.groupRoles.Map(id.Groups) {
		if strings.HasPrefix(role, syntheticRolePrefix) {
			continue
		}
		if ok, err := visible(store.WorkspacesOfRole, role); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}
