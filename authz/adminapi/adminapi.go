// Package adminapi implements mlflow-authz's admin API
// (proto/mlflowauthz/v1): users, groups and grants in MLflow's own auth
// tables, and explanations of decisions by the live engine.
//
// The same Service runs in two places. Served on the gRPC port (Remote set),
// every call is authenticated through the engine's own authenticator chain
// and allowed only to admins. Run in process by the CLI against a database
// the operator already holds credentials for (Remote unset), the caller is
// the local operator. Either way every call writes one audit line. Both the
// admin check and the audit line live in one interceptor (interceptor.go),
// which Register puts in front of every method and of nothing else on the
// server; the handlers hold only their own logic.
//
//	svc := adminapi.New(adminapi.Options{Store: st, Engine: eng, Remote: true, Log: log})
//	svc.Register(grpcServer)
package adminapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/authz/pyregex"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Options configures a Service.
type Options struct {
	// Store is where users, groups and grants are read and written.
	Store store.Admin
	// Engine authenticates remote callers and decides explain requests.
	Engine *authz.Engine
	// EngineConfig returns the live engine configuration. Explaining a
	// request as a named user builds a throwaway engine from it whose only
	// authenticator yields that user. Nil disables explain-as-user.
	EngineConfig func() authz.Config
	// Resolution is the MLflow application's permission resolution (its
	// default_permission, and with compat oidc-auth mlflow-oidc-auth's
	// sources): permission listings show the rows it reads and resolve the
	// effective permission with it. The zero value is MLflow's, with
	// NO_PERMISSIONS as the default.
	Resolution mlflow.Resolution
	// Remote requires every call to come from an authenticated admin.
	Remote bool
	// LocalActor names the operator in audit lines when Remote is unset.
	LocalActor string
	// Log receives the audit lines.
	Log *slog.Logger
}

// Service is the admin API. Serve it with Register.
type Service struct {
	opts Options
}

// handlers implements the admin service's methods, each holding only its own
// logic: the interceptor that Register puts in front of them authenticates
// the caller and writes the audit line.
type handlers struct {
	v1.UnimplementedAdminServiceServer
	opts Options
}

var _ v1.AdminServiceServer = (*handlers)(nil)

// New returns a Service. Store must be set; Engine is needed for Remote and
// for Explain.
func New(opts Options) *Service {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.LocalActor == "" {
		opts.LocalActor = "local"
	}
	return &Service{opts: opts}
}

// storeErr turns a store error into a status whose message says what to do.
func storeErr(err error, notFound string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, notFound)
	case errors.Is(err, store.ErrUnavailable):
		return status.Error(codes.Unavailable, "the database is unavailable; retry")
	case errors.Is(err, store.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrNoRoleTables), errors.Is(err, store.ErrNoGroupTables):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Errorf(codes.Internal, "adminapi: %v", err)
}

func required(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", name)
	}
	return nil
}

// CreateUser inserts a users row with no password.
func (h *handlers) CreateUser(ctx context.Context, req *v1.CreateUserRequest) (*v1.CreateUserResponse, error) {
	if err := required("username", req.GetUsername()); err != nil {
		return nil, err
	}
	created, err := h.opts.Store.CreateUser(ctx, req.GetUsername(), req.GetAdmin())
	if err != nil {
		return nil, storeErr(err, "")
	}
	return &v1.CreateUserResponse{Created: created}, nil
}

// ListUsers lists MLflow's users.
func (h *handlers) ListUsers(ctx context.Context, _ *v1.ListUsersRequest) (*v1.ListUsersResponse, error) {
	rows, err := h.opts.Store.ListUsers(ctx)
	if err != nil {
		return nil, storeErr(err, "")
	}
	out := &v1.ListUsersResponse{}
	for _, u := range rows {
		out.Users = append(out.Users, &v1.User{Username: u.Username, Admin: u.Admin})
	}
	return out, nil
}

// DeleteUser removes a user and its grant rows.
func (h *handlers) DeleteUser(ctx context.Context, req *v1.DeleteUserRequest) (*v1.DeleteUserResponse, error) {
	if err := required("username", req.GetUsername()); err != nil {
		return nil, err
	}
	if err := h.opts.Store.DeleteUser(ctx, req.GetUsername()); err != nil {
		return nil, storeErr(err, fmt.Sprintf("user %q not found; list users with: mlflow-authz users list", req.GetUsername()))
	}
	return &v1.DeleteUserResponse{}, nil
}

// SetAdmin sets users.is_admin.
func (h *handlers) SetAdmin(ctx context.Context, req *v1.SetAdminRequest) (*v1.SetAdminResponse, error) {
	if err := required("username", req.GetUsername()); err != nil {
		return nil, err
	}
	changed, err := h.opts.Store.SetAdmin(ctx, req.GetUsername(), req.GetAdmin())
	if err != nil {
		return nil, storeErr(err, fmt.Sprintf("user %q not found; create it with: mlflow-authz users create %s", req.GetUsername(), req.GetUsername()))
	}
	return &v1.SetAdminResponse{Changed: changed}, nil
}

// CreateGroup inserts a groups row.
func (h *handlers) CreateGroup(ctx context.Context, req *v1.CreateGroupRequest) (*v1.CreateGroupResponse, error) {
	name, err := h.groupName(req.GetName())
	if err != nil {
		return nil, err
	}
	created, err := h.opts.Store.CreateGroup(ctx, name)
	if err != nil {
		return nil, storeErr(err, "")
	}
	return &v1.CreateGroupResponse{Created: created}, nil
}

// ListGroups lists the groups table.
func (h *handlers) ListGroups(ctx context.Context, _ *v1.ListGroupsRequest) (*v1.ListGroupsResponse, error) {
	names, err := h.opts.Store.ListGroups(ctx)
	if err != nil {
		return nil, storeErr(err, "")
	}
	return &v1.ListGroupsResponse{Groups: names}, nil
}

// DeleteGroup removes a group and its grant rows.
func (h *handlers) DeleteGroup(ctx context.Context, req *v1.DeleteGroupRequest) (*v1.DeleteGroupResponse, error) {
	name, err := h.groupName(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := h.opts.Store.DeleteGroup(ctx, name); err != nil {
		return nil, storeErr(err, fmt.Sprintf("group %q not found; list groups with: mlflow-authz groups list", name))
	}
	return &v1.DeleteGroupResponse{}, nil
}

// resolveTarget turns a Target into a store resource of workspace ws. An
// experiment, by id or by name, must exist in MLflow's tracking tables and
// live in ws: a grant on a typo would silently protect nothing, and one on
// another workspace's experiment would reach past ws (the legacy layout
// keeps experiment rows without a workspace).
func (h *handlers) resolveTarget(ctx context.Context, t *v1.Target, ws string) (store.Resource, error) {
	switch x := t.GetTarget().(type) {
	case *v1.Target_ExperimentId:
		if err := required("experiment id", x.ExperimentId); err != nil {
			return store.Resource{}, err
		}
		res := store.Resource{Kind: store.Experiment, ID: x.ExperimentId, Workspace: ws}
		return res, h.checkResourceWorkspace(ctx, res, ws)
	case *v1.Target_ExperimentName:
		if err := required("experiment name", x.ExperimentName); err != nil {
			return store.Resource{}, err
		}
		ids, err := h.opts.Store.Resolve(ctx, store.ExperimentByNameIn, store.WorkspaceKey(ws, x.ExperimentName))
		if err == nil && len(ids) != 1 {
			err = store.ErrNotFound
		}
		if err != nil {
			return store.Resource{}, storeErr(err, fmt.Sprintf("experiment %q not found%s; list experiments with: mlflow experiments search", x.ExperimentName, inWorkspace(ws)))
		}
		return store.Resource{Kind: store.Experiment, ID: ids[0], Workspace: ws}, nil
	case *v1.Target_RegisteredModel:
		if err := required("registered model", x.RegisteredModel); err != nil {
			return store.Resource{}, err
		}
		return store.Resource{Kind: store.RegisteredModel, ID: x.RegisteredModel, Workspace: ws}, nil
	case *v1.Target_WholeWorkspace:
		if !x.WholeWorkspace {
			break
		}
		if h.opts.Remote && !h.opts.Resolution.Workspaces() {
			return store.Resource{}, status.Error(codes.FailedPrecondition,
				"a workspace-wide grant counts only with apps[].mlflow.workspaces on, which this server has off")
		}
		return store.Resource{Kind: store.WholeWorkspace, ID: "*", Workspace: ws}, nil
	}
	return store.Resource{}, status.Error(codes.InvalidArgument, "a target is required: --experiment ID, --experiment-name NAME, --registered-model NAME or --whole-workspace")
}

func (h *handlers) grantee(g *v1.Grantee) (store.Grantee, error) {
	switch x := g.GetGrantee().(type) {
	case *v1.Grantee_User:
		if err := required("user", x.User); err != nil {
			return store.Grantee{}, err
		}
		return store.Grantee{User: x.User}, nil
	case *v1.Grantee_Group:
		name, err := h.groupName(x.Group)
		if err != nil {
			return store.Grantee{}, err
		}
		return store.Grantee{Group: name}, nil
	}
	return store.Grantee{}, status.Error(codes.InvalidArgument, "a grantee is required: --user NAME or --group NAME")
}

func targetString(t *v1.Target, g *v1.Grantee) string {
	var b strings.Builder
	switch x := t.GetTarget().(type) {
	case *v1.Target_ExperimentId:
		b.WriteString("experiment " + x.ExperimentId)
	case *v1.Target_ExperimentName:
		b.WriteString(fmt.Sprintf("experiment name %q", x.ExperimentName))
	case *v1.Target_RegisteredModel:
		b.WriteString(fmt.Sprintf("registered model %q", x.RegisteredModel))
	case *v1.Target_WholeWorkspace:
		b.WriteString("the whole workspace")
	}
	switch x := g.GetGrantee().(type) {
	case *v1.Grantee_User:
		b.WriteString(" user " + x.User)
	case *v1.Grantee_Group:
		b.WriteString(" group " + authz.NormalizeGroup(x.Group))
	}
	return b.String()
}

func change(g store.Grantee, r store.Resource, before *store.GrantRow, after string, changed bool) *v1.Change {
	c := &v1.Change{ResourceKind: string(r.Kind), ResourceId: r.ID, After: after, Changed: changed}
	if r.WorkspaceOf() != store.DefaultWorkspace {
		c.Workspace = r.Workspace
	}
	c.GranteeKind, c.Grantee = "user", g.User
	if g.Group != "" {
		c.GranteeKind, c.Grantee = "group", g.Group
	}
	if before != nil {
		c.Before = before.Permission
		if c.Before == "" {
			c.Before = "NULL"
		}
	}
	return c
}

// Grant sets a grantee's permission on a target, creating a missing users
// (or groups) row as MLflow does.
func (h *handlers) Grant(ctx context.Context, req *v1.GrantRequest) (*v1.GrantResponse, error) {
	p, ok := store.ParsePermission(strings.ToUpper(strings.TrimSpace(req.GetPermission())))
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "permission %q is not one of READ, USE, EDIT, MANAGE, NO_PERMISSIONS", req.GetPermission())
	}
	g, err := h.grantee(req.GetGrantee())
	if err != nil {
		return nil, err
	}
	ws, err := h.workspace(req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	res, err := h.resolveTarget(ctx, req.GetTarget(), ws)
	if err != nil {
		return nil, err
	}
	before, changed, err := h.opts.Store.SetGrant(ctx, g, res, p)
	if err != nil {
		return nil, storeErr(err, "")
	}
	return &v1.GrantResponse{Change: change(g, res, before, p.String(), changed)}, nil
}

// Revoke removes a grantee's row on a target.
func (h *handlers) Revoke(ctx context.Context, req *v1.RevokeRequest) (*v1.RevokeResponse, error) {
	g, err := h.grantee(req.GetGrantee())
	if err != nil {
		return nil, err
	}
	ws, err := h.workspace(req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	res, err := h.resolveTarget(ctx, req.GetTarget(), ws)
	if err != nil {
		return nil, err
	}
	before, changed, err := h.opts.Store.DeleteGrant(ctx, g, res)
	if err != nil {
		return nil, storeErr(err, "")
	}
	return &v1.RevokeResponse{Change: change(g, res, before, "", changed)}, nil
}

// ListPermissions lists stored rows and, for a target and a user, the
// effective permission with every source behind it. Each row names its
// source: user or group, and with compat oidc-auth also regex and
// group-regex (mlflow-oidc-auth's rows that match by name).
func (h *handlers) ListPermissions(ctx context.Context, req *v1.ListPermissionsRequest) (*v1.ListPermissionsResponse, error) {
	rs := h.opts.Resolution
	ws, err := h.workspace(req.GetWorkspace())
	if err != nil {
		return nil, err
	}
	if err := h.requireWorkspaceRows(ctx, req); err != nil {
		return nil, err
	}
	f := store.GrantFilter{User: req.GetUser(), Group: authz.NormalizeGroup(req.GetGroup()), Workspace: ws}
	res := store.Resource{Workspace: ws}
	hasTarget := req.GetTarget().GetTarget() != nil
	if hasTarget {
		if req.GetTarget().GetWholeWorkspace() {
			return nil, status.Error(codes.InvalidArgument,
				"workspace-wide grants are not listed here: see them with roles show (roles layout) or in workspace_permissions (legacy layout)")
		}
		if res, err = h.resolveTarget(ctx, req.GetTarget(), ws); err != nil {
			return nil, err
		}
		f.Kind, f.ID = res.Kind, res.ID
	}
	rows, err := h.opts.Store.ListGrants(ctx, f)
	if err != nil {
		return nil, storeErr(err, "")
	}
	// A user's view includes the rows of the groups it is said to belong
	// to: they are sources of its effective permission too.
	var viewGroups []string
	if f.User != "" && f.Group == "" {
		for _, g := range req.GetGroups() {
			viewGroups = append(viewGroups, authz.NormalizeGroup(g))
		}
	}
	if rows, err = withGroups(ctx, rows, f, viewGroups, h.opts.Store.ListGrants); err != nil {
		return nil, storeErr(err, "")
	}
	out := &v1.ListPermissionsResponse{}
	for _, r := range rows {
		if !rs.Compat() && r.Grantee.Group != "" && r.Resource.Kind != store.Experiment && r.Resource.Kind != store.RegisteredModel {
			continue // mlflow-oidc-auth's scorer group rows, which MLflow's model ignores
		}
		pr := &v1.PermissionRow{ResourceKind: string(r.Resource.Kind), ResourceId: r.Resource.ID, Permission: r.Permission}
		switch {
		case r.Grantee.Group != "" && rs.Compat():
			pr.GranteeKind, pr.Grantee, pr.SourceKind = "group", r.Grantee.Group, string(store.SourceGroup)
			pr.Source = "group row (source group; NO_PERMISSIONS in any of the user's groups outranks the others, else the highest)"
		case r.Grantee.Group != "":
			pr.GranteeKind, pr.Grantee, pr.SourceKind = "group", r.Grantee.Group, string(store.SourceGroup)
			pr.Source = "group row (applies to members with no user row)"
		case rs.Compat():
			pr.GranteeKind, pr.Grantee, pr.SourceKind = "user", r.Grantee.User, string(store.SourceUser)
			pr.Source = "user row (source user)"
		default:
			pr.GranteeKind, pr.Grantee, pr.SourceKind = "user", r.Grantee.User, string(store.SourceUser)
			pr.Source = "user row (outranks every group row)"
		}
		if _, ok := store.ParsePermission(r.Permission); !ok {
			pr.Source += "; NULL or unknown: denies"
		}
		out.Rows = append(out.Rows, pr)
	}
	if rs.Compat() {
		patterns, err := h.patternRows(ctx, f, viewGroups, res, hasTarget)
		if err != nil {
			return nil, err
		}
		out.Rows = append(out.Rows, patterns...)
	}
	slices.SortStableFunc(out.Rows, func(x, y *v1.PermissionRow) int {
		return strings.Compare(x.ResourceKind+"\x00"+x.ResourceId+"\x00"+x.GranteeKind+"\x00"+x.Grantee,
			y.ResourceKind+"\x00"+y.ResourceId+"\x00"+y.GranteeKind+"\x00"+y.Grantee)
	})
	if hasTarget {
		out.Rows = append(out.Rows, &v1.PermissionRow{ResourceKind: string(res.Kind), ResourceId: res.ID,
			GranteeKind: "default", Permission: rs.Default().String(), SourceKind: "default",
			Source: "default_permission (when neither the user nor any of its groups has a row)"})
		if req.GetUser() != "" {
			eff, err := h.effective(ctx, req.GetUser(), req.GetGroups(), res)
			if err != nil {
				return nil, err
			}
			out.Effective = eff
		}
	}
	return out, nil
}

// withGroups appends to rows, for a user's view, the rows list gives for
// each of its groups (f narrowed to the group).
func withGroups[R any](ctx context.Context, rows []R, f store.GrantFilter, groups []string, list func(context.Context, store.GrantFilter) ([]R, error)) ([]R, error) {
	for _, g := range groups {
		gf := f
		gf.User, gf.Group = "", g
		more, err := list(ctx, gf)
		if err != nil {
			return nil, err
		}
		rows = append(rows, more...)
	}
	return rows, nil
}

// patternRows lists mlflow-oidc-auth's regex and group-regex rows in f's
// scope (and of the view's groups); for a target, only those whose regex
// matches its name, or cannot be evaluated, which bear on it.
func (h *handlers) patternRows(ctx context.Context, f store.GrantFilter, viewGroups []string, res store.Resource, hasTarget bool) ([]*v1.PermissionRow, error) {
	pf := f
	pf.ID = ""
	rows, err := h.opts.Store.ListPatterns(ctx, pf)
	if err == nil {
		rows, err = withGroups(ctx, rows, pf, viewGroups, h.opts.Store.ListPatterns)
	}
	if err != nil {
		return nil, storeErr(err, "")
	}
	var name string
	if hasTarget {
		name = res.ID
		if res.Kind == store.Experiment {
			names, err := h.opts.Store.Resolve(ctx, store.NameOfExperiment, res.ID)
			if err != nil || len(names) != 1 {
				return nil, storeErr(cmp.Or(err, store.ErrNotFound), fmt.Sprintf("experiment %s not found", res.ID))
			}
			name = names[0]
		}
	}
	var out []*v1.PermissionRow
	for _, r := range rows {
		pr := &v1.PermissionRow{ResourceKind: string(r.Kind), Permission: r.Permission, Regex: &r.Regex, Priority: &r.Priority}
		pr.GranteeKind, pr.Grantee, pr.SourceKind = "user", r.Grantee.User, string(store.SourceRegex)
		if r.Grantee.Group != "" {
			pr.GranteeKind, pr.Grantee, pr.SourceKind = "group", r.Grantee.Group, string(store.SourceGroupRegex)
		}
		pr.Source = fmt.Sprintf("%s row %d, priority %d (the lowest-numbered matching row of the source decides)", pr.SourceKind, r.ID, r.Priority)
		if hasTarget {
			m, err := pyregex.Compile(r.Regex)
			var matched bool
			if err == nil {
				matched, err = m.Match(name)
			}
			switch {
			case err != nil:
				pr.Source += fmt.Sprintf("; cannot be evaluated (%v): denies when reached", err)
			case !matched:
				continue
			default:
				pr.Source += fmt.Sprintf("; matches %q", name)
			}
		}
		if _, ok := store.ParsePermission(r.Permission); !ok {
			pr.Source += "; NULL or unknown: denies"
		}
		out = append(out, pr)
	}
	return out, nil
}

// effective resolves the user's permission as the MLflow policy does
// (mlflow.Resolution): users.is_admin, then MLflow's order
// (mlflow.EffectivePermission: the user's own row, else the best of its
// groups' rows, else the default; an unreadable row denies) or, with compat
// oidc-auth, mlflow-oidc-auth's sources. Token admin groups are not known
// here; explain shows them.
func (h *handlers) effective(ctx context.Context, user string, groups []string, res store.Resource) (*v1.Effective, error) {
	rs := h.opts.Resolution
	eff := &v1.Effective{User: user}
	for _, g := range groups {
		eff.Groups = append(eff.Groups, authz.NormalizeGroup(g))
	}
	exists, admin, err := h.opts.Store.User(ctx, user)
	if err != nil {
		return nil, storeErr(err, "")
	}
	if !exists {
		eff.Sources = append(eff.Sources, fmt.Sprintf("user %q has no users row", user))
	}
	if admin {
		eff.Permission = store.Manage.String()
		eff.Sources = append(eff.Sources, "users.is_admin = true → every permission")
		return eff, nil
	}
	key, err := rs.GrantKey(ctx, h.opts.Store, res)
	if err != nil {
		return nil, storeErr(err, fmt.Sprintf("%s %s not found", res.Kind, res.ID))
	}
	g, err := h.opts.Store.Grants(ctx, user, key)
	if err != nil {
		return nil, storeErr(err, "")
	}
	if rs.Compat() || g.Layout == store.LayoutRoles {
		if g.Layout == store.LayoutRoles {
			eff.Sources = append(eff.Sources, "MLflow's roles layout: the highest grant over the user's roles and its groups' roles")
		}
		r, err := rs.Permission(ctx, h.opts.Store, user, eff.Groups, res, key, g, func(src mlflow.Source) {
			eff.Sources = append(eff.Sources, src.Describe(user))
		})
		if err != nil {
			return nil, storeErr(err, "")
		}
		line := fmt.Sprintf("%s decides: %s", r.Source, r.Permission)
		if r.Unreadable != "" {
			line += " (" + r.Unreadable + ")"
		}
		eff.Sources = append(eff.Sources, line)
		eff.Permission = r.Permission.String()
		return eff, nil
	}
	if g.User == nil {
		eff.Sources = append(eff.Sources, "no user row")
	}
	var best store.Permission
	var foundGroup, invalidGroup bool
	r, err := rs.Permission(ctx, h.opts.Store, user, eff.Groups, res, key, g, func(src mlflow.Source) {
		var line string
		switch {
		case src.Kind == "default":
			line = "default_permission: " + src.Grant.Permission.String()
		case src.Kind == "user" && !src.Grant.Valid:
			line = "user row is NULL or unknown → deny"
		case src.Kind == "user":
			line = "user row: " + src.Grant.Permission.String()
		case src.Outranked:
			line = fmt.Sprintf("group %q row: %s (outranked by the user row)", src.Group, grantString(src.Grant))
		case !src.Found:
			line = fmt.Sprintf("group %q: no row", src.Group)
		case !src.Grant.Valid:
			line = fmt.Sprintf("group %q row is NULL or unknown → deny", src.Group)
			invalidGroup = true
		default:
			line = fmt.Sprintf("group %q row: %s", src.Group, src.Grant.Permission)
			best, foundGroup = max(best, src.Grant.Permission), true
		}
		eff.Sources = append(eff.Sources, line)
	})
	if err != nil {
		return nil, storeErr(err, "")
	}
	if g.User == nil && foundGroup && !invalidGroup {
		eff.Sources = append(eff.Sources, "best group row: "+best.String())
	}
	eff.Permission = r.Permission.String()
	return eff, nil
}

func grantString(g store.Grant) string {
	if !g.Valid {
		return "NULL or unknown"
	}
	return g.Permission.String()
}
