// Package adminapi implements mlflow-authz's admin API
// (proto/mlflowauthz/v1): users, groups and grants in MLflow's own auth
// tables, and explanations of decisions by the live engine.
//
// The same Service runs in two places. Served on the gRPC port (Remote set),
// every call is authenticated through the engine's own authenticator chain
// and allowed only to admins. Run in process by the CLI against a database
// the operator already holds credentials for (Remote unset), the caller is
// the local operator. Either way every call writes one audit line.
//
//	svc := adminapi.New(adminapi.Options{Store: st, Engine: eng, Remote: true, Log: log})
//	mlflowauthzv1.RegisterAdminServiceServer(grpcServer, svc)
package adminapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
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
	// DefaultPermission is the MLflow application's default_permission,
	// shown as the last source in permission listings.
	DefaultPermission store.Permission
	// Remote requires every call to come from an authenticated admin.
	Remote bool
	// LocalActor names the operator in audit lines when Remote is unset.
	LocalActor string
	// Log receives the audit lines.
	Log *slog.Logger
}

// Service implements v1.AdminServiceServer.
type Service struct {
	v1.UnimplementedAdminServiceServer
	opts Options
}

var _ v1.AdminServiceServer = (*Service)(nil)

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

// audit is one call's audit record, logged once when the call ends.
type audit struct {
	s       *Service
	ctx     context.Context
	action  string
	actor   string
	via     string
	target  string
	before  string
	after   string
	changed bool
}

func (a *audit) done(err error) error {
	attrs := []slog.Attr{
		slog.String("actor", a.actor), slog.String("via", a.via), slog.String("action", a.action),
		slog.String("target", a.target), slog.String("before", a.before), slog.String("after", a.after),
		slog.Bool("changed", a.changed),
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
	a.s.opts.Log.LogAttrs(a.ctx, slog.LevelInfo, "admin_audit", attrs...)
	return err
}

// begin authorizes the call and starts its audit record. On a refused
// caller the returned error is already audited.
func (s *Service) begin(ctx context.Context, action, target string) (*audit, error) {
	a := &audit{s: s, ctx: ctx, action: action, target: target, actor: s.opts.LocalActor, via: "local"}
	if !s.opts.Remote {
		return a, nil
	}
	a.via = "grpc"
	actor, err := s.authorize(ctx)
	a.actor = actor
	if err != nil {
		return nil, a.done(err)
	}
	return a, nil
}

// authorize applies Check's identity rules to an admin call: the same
// authenticator chain on the call's authorization metadata and mTLS peer,
// then admin by token (admin group or role) or by users.is_admin.
func (s *Service) authorize(ctx context.Context) (actor string, err error) {
	if s.opts.Engine == nil {
		return "", status.Error(codes.Unavailable, "adminapi: no engine to authenticate with")
	}
	headers := map[string]string{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) == 1 {
			headers["authorization"] = v[0]
		} else if len(v) > 1 {
			// Two credentials are ambiguous: refuse rather than pick one.
			return "", status.Error(codes.Unauthenticated, "more than one authorization value")
		}
	}
	method, _ := grpc.Method(ctx)
	if method == "" {
		method = "/mlflowauthz.v1.AdminService/unknown"
	}
	r, deny := authz.NewRequest(authz.RequestInput{
		ID: "admin-api", Method: http.MethodPost, Host: "mlflow-authz-admin", Target: method,
		Headers: headers, Principal: peerSPIFFEID(ctx),
	})
	if deny != nil {
		return "", status.Error(codes.InvalidArgument, deny.Message)
	}
	id, d := s.opts.Engine.Authenticate(ctx, r)
	if d != nil {
		code := codes.Unauthenticated
		if d.Status == http.StatusServiceUnavailable {
			code = codes.Unavailable
		}
		return "", status.Errorf(code, "%s: %s", d.Reason, d.Message)
	}
	if !id.Authenticated() {
		return "anonymous", status.Error(codes.Unauthenticated,
			"the admin API needs a Bearer token: set MLFLOW_AUTHZ_TOKEN or pass --token-file")
	}
	actor = id.Username
	if actor == "" {
		actor = cmp.Or(id.SPIFFEID, id.Subject)
	}
	if id.Admin {
		return actor, nil
	}
	if id.Username != "" {
		_, admin, err := s.opts.Store.User(ctx, id.Username)
		if err != nil {
			return actor, status.Error(codes.Unavailable, "could not read users.is_admin; retry")
		}
		if admin {
			return actor, nil
		}
	}
	return actor, status.Errorf(codes.PermissionDenied,
		"%s is not an admin: the admin API needs an admin group or role in the token, or users.is_admin (mlflow-authz users set-admin)", actor)
}

// peerSPIFFEID returns the URI SAN of a TLS peer's leaf certificate. Without
// TLS there is no verified peer identity, and none is assumed.
func peerSPIFFEID(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range ti.State.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// storeErr turns a store error into a status whose message says what to do.
func storeErr(err error, notFound string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, notFound)
	case errors.Is(err, store.ErrUnavailable):
		return status.Error(codes.Unavailable, "the database is unavailable; retry")
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
func (s *Service) CreateUser(ctx context.Context, req *v1.CreateUserRequest) (*v1.CreateUserResponse, error) {
	a, err := s.begin(ctx, "users.create", "user "+req.GetUsername())
	if err != nil {
		return nil, err
	}
	if err := required("username", req.GetUsername()); err != nil {
		return nil, a.done(err)
	}
	created, err := s.opts.Store.CreateUser(ctx, req.GetUsername(), req.GetAdmin())
	if err != nil {
		return nil, a.done(storeErr(err, ""))
	}
	if created {
		a.after = fmt.Sprintf("exists admin=%v", req.GetAdmin())
	} else {
		a.before, a.after = "exists", "exists"
	}
	a.changed = created
	return &v1.CreateUserResponse{Created: created}, a.done(nil)
}

// ListUsers lists MLflow's users.
func (s *Service) ListUsers(ctx context.Context, _ *v1.ListUsersRequest) (*v1.ListUsersResponse, error) {
	a, err := s.begin(ctx, "users.list", "")
	if err != nil {
		return nil, err
	}
	rows, err := s.opts.Store.ListUsers(ctx)
	if err != nil {
		return nil, a.done(storeErr(err, ""))
	}
	out := &v1.ListUsersResponse{}
	for _, u := range rows {
		out.Users = append(out.Users, &v1.User{Username: u.Username, Admin: u.Admin})
	}
	return out, a.done(nil)
}

// DeleteUser removes a user and its grant rows.
func (s *Service) DeleteUser(ctx context.Context, req *v1.DeleteUserRequest) (*v1.DeleteUserResponse, error) {
	a, err := s.begin(ctx, "users.delete", "user "+req.GetUsername())
	if err != nil {
		return nil, err
	}
	if err := required("username", req.GetUsername()); err != nil {
		return nil, a.done(err)
	}
	if err := s.opts.Store.DeleteUser(ctx, req.GetUsername()); err != nil {
		return nil, a.done(storeErr(err, fmt.Sprintf("user %q not found; list users with: mlflow-authz users list", req.GetUsername())))
	}
	a.before, a.after, a.changed = "exists", "", true
	return &v1.DeleteUserResponse{}, a.done(nil)
}

// SetAdmin sets users.is_admin.
func (s *Service) SetAdmin(ctx context.Context, req *v1.SetAdminRequest) (*v1.SetAdminResponse, error) {
	a, err := s.begin(ctx, "users.set-admin", "user "+req.GetUsername())
	if err != nil {
		return nil, err
	}
	if err := required("username", req.GetUsername()); err != nil {
		return nil, a.done(err)
	}
	changed, err := s.opts.Store.SetAdmin(ctx, req.GetUsername(), req.GetAdmin())
	if err != nil {
		return nil, a.done(storeErr(err, fmt.Sprintf("user %q not found; create it with: mlflow-authz users create %s", req.GetUsername(), req.GetUsername())))
	}
	a.after = fmt.Sprintf("admin=%v", req.GetAdmin())
	a.before = a.after
	if changed {
		a.before = fmt.Sprintf("admin=%v", !req.GetAdmin())
	}
	a.changed = changed
	return &v1.SetAdminResponse{Changed: changed}, a.done(nil)
}

// CreateGroup inserts a groups row.
func (s *Service) CreateGroup(ctx context.Context, req *v1.CreateGroupRequest) (*v1.CreateGroupResponse, error) {
	name := authz.NormalizeGroup(req.GetName())
	a, err := s.begin(ctx, "groups.create", "group "+name)
	if err != nil {
		return nil, err
	}
	if err := required("name", name); err != nil {
		return nil, a.done(err)
	}
	created, err := s.opts.Store.CreateGroup(ctx, name)
	if err != nil {
		return nil, a.done(storeErr(err, ""))
	}
	a.after, a.changed = "exists", created
	if !created {
		a.before = "exists"
	}
	return &v1.CreateGroupResponse{Created: created}, a.done(nil)
}

// ListGroups lists the groups table.
func (s *Service) ListGroups(ctx context.Context, _ *v1.ListGroupsRequest) (*v1.ListGroupsResponse, error) {
	a, err := s.begin(ctx, "groups.list", "")
	if err != nil {
		return nil, err
	}
	names, err := s.opts.Store.ListGroups(ctx)
	if err != nil {
		return nil, a.done(storeErr(err, ""))
	}
	return &v1.ListGroupsResponse{Groups: names}, a.done(nil)
}

// DeleteGroup removes a group and its grant rows.
func (s *Service) DeleteGroup(ctx context.Context, req *v1.DeleteGroupRequest) (*v1.DeleteGroupResponse, error) {
	name := authz.NormalizeGroup(req.GetName())
	a, err := s.begin(ctx, "groups.delete", "group "+name)
	if err != nil {
		return nil, err
	}
	if err := required("name", name); err != nil {
		return nil, a.done(err)
	}
	if err := s.opts.Store.DeleteGroup(ctx, name); err != nil {
		return nil, a.done(storeErr(err, fmt.Sprintf("group %q not found; list groups with: mlflow-authz groups list", name)))
	}
	a.before, a.changed = "exists", true
	return &v1.DeleteGroupResponse{}, a.done(nil)
}

// resolveTarget turns a Target into a store resource. An experiment, by id
// or by name, must exist in MLflow's tracking tables: a grant on a typo
// would silently protect nothing.
func (s *Service) resolveTarget(ctx context.Context, t *v1.Target) (store.Resource, error) {
	switch x := t.GetTarget().(type) {
	case *v1.Target_ExperimentId:
		if err := required("experiment id", x.ExperimentId); err != nil {
			return store.Resource{}, err
		}
		if _, err := s.opts.Store.Resolve(ctx, store.ExperimentByID, x.ExperimentId); err != nil {
			return store.Resource{}, storeErr(err, fmt.Sprintf("experiment %s not found; list experiments with: mlflow experiments search", x.ExperimentId))
		}
		return store.Resource{Kind: store.Experiment, ID: x.ExperimentId}, nil
	case *v1.Target_ExperimentName:
		if err := required("experiment name", x.ExperimentName); err != nil {
			return store.Resource{}, err
		}
		ids, err := s.opts.Store.Resolve(ctx, store.ExperimentByName, x.ExperimentName)
		if err == nil && len(ids) != 1 {
			err = store.ErrNotFound
		}
		if err != nil {
			return store.Resource{}, storeErr(err, fmt.Sprintf("experiment %q not found; list experiments with: mlflow experiments search", x.ExperimentName))
		}
		return store.Resource{Kind: store.Experiment, ID: ids[0]}, nil
	case *v1.Target_RegisteredModel:
		if err := required("registered model", x.RegisteredModel); err != nil {
			return store.Resource{}, err
		}
		return store.Resource{Kind: store.RegisteredModel, ID: x.RegisteredModel}, nil
	}
	return store.Resource{}, status.Error(codes.InvalidArgument, "a target is required: --experiment ID, --experiment-name NAME or --registered-model NAME")
}

func grantee(g *v1.Grantee) (store.Grantee, error) {
	switch x := g.GetGrantee().(type) {
	case *v1.Grantee_User:
		if err := required("user", x.User); err != nil {
			return store.Grantee{}, err
		}
		return store.Grantee{User: x.User}, nil
	case *v1.Grantee_Group:
		name := authz.NormalizeGroup(x.Group)
		if err := required("group", name); err != nil {
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
func (s *Service) Grant(ctx context.Context, req *v1.GrantRequest) (*v1.GrantResponse, error) {
	a, err := s.begin(ctx, "grant", targetString(req.GetTarget(), req.GetGrantee()))
	if err != nil {
		return nil, err
	}
	p, ok := store.ParsePermission(strings.ToUpper(strings.TrimSpace(req.GetPermission())))
	if !ok {
		return nil, a.done(status.Errorf(codes.InvalidArgument, "permission %q is not one of READ, USE, EDIT, MANAGE, NO_PERMISSIONS", req.GetPermission()))
	}
	g, err := grantee(req.GetGrantee())
	if err != nil {
		return nil, a.done(err)
	}
	res, err := s.resolveTarget(ctx, req.GetTarget())
	if err != nil {
		return nil, a.done(err)
	}
	before, changed, err := s.opts.Store.SetGrant(ctx, g, res, p)
	if err != nil {
		return nil, a.done(storeErr(err, ""))
	}
	c := change(g, res, before, p.String(), changed)
	a.before, a.after, a.changed = c.Before, c.After, changed
	return &v1.GrantResponse{Change: c}, a.done(nil)
}

// Revoke removes a grantee's row on a target.
func (s *Service) Revoke(ctx context.Context, req *v1.RevokeRequest) (*v1.RevokeResponse, error) {
	a, err := s.begin(ctx, "revoke", targetString(req.GetTarget(), req.GetGrantee()))
	if err != nil {
		return nil, err
	}
	g, err := grantee(req.GetGrantee())
	if err != nil {
		return nil, a.done(err)
	}
	res, err := s.resolveTarget(ctx, req.GetTarget())
	if err != nil {
		return nil, a.done(err)
	}
	before, changed, err := s.opts.Store.DeleteGrant(ctx, g, res)
	if err != nil {
		return nil, a.done(storeErr(err, ""))
	}
	c := change(g, res, before, "", changed)
	a.before, a.after, a.changed = c.Before, "", changed
	return &v1.RevokeResponse{Change: c}, a.done(nil)
}

// ListPermissions lists stored rows and, for a target and a user, the
// effective permission with every source behind it.
func (s *Service) ListPermissions(ctx context.Context, req *v1.ListPermissionsRequest) (*v1.ListPermissionsResponse, error) {
	a, err := s.begin(ctx, "permissions.list", targetString(req.GetTarget(), nil))
	if err != nil {
		return nil, err
	}
	f := store.GrantFilter{User: req.GetUser(), Group: authz.NormalizeGroup(req.GetGroup())}
	var res store.Resource
	hasTarget := req.GetTarget().GetTarget() != nil
	if hasTarget {
		if res, err = s.resolveTarget(ctx, req.GetTarget()); err != nil {
			return nil, a.done(err)
		}
		f.Kind, f.ID = res.Kind, res.ID
	}
	rows, err := s.opts.Store.ListGrants(ctx, f)
	if err != nil {
		return nil, a.done(storeErr(err, ""))
	}
	// A user's view includes the rows of the groups it is said to belong
	// to: they are sources of its effective permission too.
	if f.User != "" && f.Group == "" {
		for _, g := range req.GetGroups() {
			gf := f
			gf.User, gf.Group = "", authz.NormalizeGroup(g)
			more, err := s.opts.Store.ListGrants(ctx, gf)
			if err != nil {
				return nil, a.done(storeErr(err, ""))
			}
			rows = append(rows, more...)
		}
	}
	out := &v1.ListPermissionsResponse{}
	for _, r := range rows {
		pr := &v1.PermissionRow{ResourceKind: string(r.Resource.Kind), ResourceId: r.Resource.ID, Permission: r.Permission}
		if r.Grantee.Group != "" {
			pr.GranteeKind, pr.Grantee, pr.Source = "group", r.Grantee.Group, "group row (applies to members with no user row)"
		} else {
			pr.GranteeKind, pr.Grantee, pr.Source = "user", r.Grantee.User, "user row (outranks every group row)"
		}
		if _, ok := store.ParsePermission(r.Permission); !ok {
			pr.Source += "; NULL or unknown: denies"
		}
		out.Rows = append(out.Rows, pr)
	}
	slices.SortStableFunc(out.Rows, func(x, y *v1.PermissionRow) int {
		return strings.Compare(x.ResourceKind+"\x00"+x.ResourceId+"\x00"+x.GranteeKind+"\x00"+x.Grantee,
			y.ResourceKind+"\x00"+y.ResourceId+"\x00"+y.GranteeKind+"\x00"+y.Grantee)
	})
	if hasTarget {
		out.Rows = append(out.Rows, &v1.PermissionRow{ResourceKind: string(res.Kind), ResourceId: res.ID,
			GranteeKind: "default", Permission: s.opts.DefaultPermission.String(),
			Source: "default_permission (when neither the user nor any of its groups has a row)"})
		if req.GetUser() != "" {
			eff, err := s.effective(ctx, req.GetUser(), req.GetGroups(), res)
			if err != nil {
				return nil, a.done(err)
			}
			out.Effective = eff
		}
	}
	return out, a.done(nil)
}

// effective follows MLflow's order (mlflow-permissions.md A.5), as the MLflow
// policy does: users.is_admin, else the user's own row (an unreadable row
// denies), else the best of its groups' rows (an unreadable row denies),
// else the default. Token admin groups are not known here; explain shows them.
func (s *Service) effective(ctx context.Context, user string, groups []string, res store.Resource) (*v1.Effective, error) {
	eff := &v1.Effective{User: user}
	for _, g := range groups {
		eff.Groups = append(eff.Groups, authz.NormalizeGroup(g))
	}
	exists, admin, err := s.opts.Store.User(ctx, user)
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
	g, err := s.opts.Store.Grants(ctx, user, res)
	if err != nil {
		return nil, storeErr(err, "")
	}
	if g.User == nil {
		eff.Sources = append(eff.Sources, "no user row")
	}
	var best store.Permission
	var foundGroup, invalidGroup bool
	p := mlflow.EffectivePermission(g, eff.Groups, s.opts.DefaultPermission, func(src mlflow.Source) {
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
	if g.User == nil && foundGroup && !invalidGroup {
		eff.Sources = append(eff.Sources, "best group row: "+best.String())
	}
	eff.Permission = p.String()
	return eff, nil
}

func grantString(g store.Grant) string {
	if !g.Valid {
		return "NULL or unknown"
	}
	return g.Permission.String()
}
