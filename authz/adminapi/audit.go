package adminapi

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

// actions names every admin method in the audit log. The interceptor refuses
// a method missing here, so a new method cannot run unaudited.
var actions = map[string]string{
	v1.AdminService_CreateUser_FullMethodName:      "users.create",
	v1.AdminService_ListUsers_FullMethodName:       "users.list",
	v1.AdminService_DeleteUser_FullMethodName:      "users.delete",
	v1.AdminService_SetAdmin_FullMethodName:        "users.set-admin",
	v1.AdminService_CreateGroup_FullMethodName:     "groups.create",
	v1.AdminService_ListGroups_FullMethodName:      "groups.list",
	v1.AdminService_DeleteGroup_FullMethodName:     "groups.delete",
	v1.AdminService_Grant_FullMethodName:           "grant",
	v1.AdminService_Revoke_FullMethodName:          "revoke",
	v1.AdminService_ListPermissions_FullMethodName: "permissions.list",
	v1.AdminService_Explain_FullMethodName:         "explain",
	v1.AdminService_CreateRole_FullMethodName:      "roles.create",
	v1.AdminService_ListRoles_FullMethodName:       "roles.list",
	v1.AdminService_GetRole_FullMethodName:         "roles.show",
	v1.AdminService_DeleteRole_FullMethodName:      "roles.delete",
	v1.AdminService_AssignRole_FullMethodName:      "roles.assign",
	v1.AdminService_UnassignRole_FullMethodName:    "roles.unassign",
}

// auditLine is one call's audit record (the README's "Audit log" section).
type auditLine struct {
	actor, via, action, target string
	before, after              string
	changed                    bool
}

// audit writes l with the call's outcome and returns err unchanged.
func (s *Service) audit(ctx context.Context, l auditLine, err error) error {
	attrs := []slog.Attr{
		slog.String("actor", l.actor), slog.String("via", l.via), slog.String("action", l.action),
		slog.String("target", l.target), slog.String("before", l.before), slog.String("after", l.after),
		slog.Bool("changed", l.changed),
	}
	result := "ok"
	if err != nil {
		result = "error"
		if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
			result = "denied"
		}
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	attrs = append(attrs, slog.String("result", result))
	s.opts.Log.LogAttrs(ctx, slog.LevelInfo, "admin_audit", attrs...)
	return err
}

// auditTarget names what a call acts on, with the workspace a request
// names. It reads the request only, so a refused call names its target too.
func auditTarget(req any) string {
	t := requestTarget(req)
	if wr, ok := req.(workspaceRequest); ok && wr.GetWorkspace() != "" {
		t += " in workspace " + wr.GetWorkspace()
	}
	return t
}

func requestTarget(req any) string {
	switch r := req.(type) {
	case *v1.CreateUserRequest:
		return "user " + r.GetUsername()
	case *v1.DeleteUserRequest:
		return "user " + r.GetUsername()
	case *v1.SetAdminRequest:
		return "user " + r.GetUsername()
	case *v1.CreateGroupRequest:
		return "group " + authz.NormalizeGroup(r.GetName())
	case *v1.DeleteGroupRequest:
		return "group " + authz.NormalizeGroup(r.GetName())
	case *v1.GrantRequest:
		return targetString(r.GetTarget(), r.GetGrantee())
	case *v1.RevokeRequest:
		return targetString(r.GetTarget(), r.GetGrantee())
	case *v1.ListPermissionsRequest:
		return targetString(r.GetTarget(), nil)
	case *v1.ExplainRequest:
		return fmt.Sprintf("%s %s on %s as %s", r.GetMethod(), r.GetTarget(), r.GetHost(), explainWho(r))
	case *v1.CreateRoleRequest:
		return "role " + r.GetName()
	case *v1.GetRoleRequest:
		return "role " + r.GetName()
	case *v1.DeleteRoleRequest:
		return "role " + r.GetName()
	case *v1.AssignRoleRequest:
		return "role " + r.GetRole() + " user " + r.GetUsername()
	case *v1.UnassignRoleRequest:
		return "role " + r.GetRole() + " user " + r.GetUsername()
	}
	return ""
}

// explainWho names whom an explain request is decided as, never the token.
func explainWho(req *v1.ExplainRequest) string {
	switch {
	case req.GetUser() != "":
		return "user " + req.GetUser()
	case req.GetToken() != "":
		return "token bearer"
	}
	return "anonymous"
}

// auditChange reads what a successful call changed from its response, which
// is what the caller is told: the audit line and the answer cannot disagree.
// before and after are the row's state ("" for no row), "exists"/"admin=…"
// for users and groups, and the decision for explain.
func auditChange(req, resp any) (before, after string, changed bool) {
	switch p := resp.(type) {
	case *v1.CreateUserResponse:
		if !p.GetCreated() {
			return "exists", "exists", false
		}
		r, _ := req.(*v1.CreateUserRequest)
		return "", fmt.Sprintf("exists admin=%v", r.GetAdmin()), true
	case *v1.DeleteUserResponse:
		return "exists", "", true
	case *v1.SetAdminResponse:
		r, _ := req.(*v1.SetAdminRequest)
		after = fmt.Sprintf("admin=%v", r.GetAdmin())
		if !p.GetChanged() {
			return after, after, false
		}
		return fmt.Sprintf("admin=%v", !r.GetAdmin()), after, true
	case *v1.CreateGroupResponse:
		if !p.GetCreated() {
			return "exists", "exists", false
		}
		return "", "exists", true
	case *v1.DeleteGroupResponse:
		return "exists", "", true
	case *v1.GrantResponse:
		c := p.GetChange()
		return c.GetBefore(), c.GetAfter(), c.GetChanged()
	case *v1.RevokeResponse:
		c := p.GetChange()
		return c.GetBefore(), "", c.GetChanged()
	case *v1.CreateRoleResponse:
		if !p.GetCreated() {
			return "exists", "exists", false
		}
		return "", "exists", true
	case *v1.DeleteRoleResponse:
		return "exists", "", true
	case *v1.AssignRoleResponse:
		if !p.GetChanged() {
			return "assigned", "assigned", false
		}
		return "", "assigned", true
	case *v1.UnassignRoleResponse:
		if !p.GetChanged() {
			return "", "", false
		}
		return "assigned", "", true
	case *v1.ExplainResponse:
		if p == nil {
			return "", "", false
		}
		return "", fmt.Sprintf("allowed=%v status=%d reason=%s", p.GetAllowed(), p.GetStatus(), p.GetReason()), false
	}
	return "", "", false
}
