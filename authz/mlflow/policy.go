package mlflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Identity-integrity modes.
const (
	IntegrityOff     = "off"
	IntegrityWarn    = "warn"
	IntegrityEnforce = "enforce"
)

// Config configures the MLflow policy (YAML keys in the tags).
type Config struct {
	// DefaultPermission applies when neither the user nor any of its groups
	// has a row: NO_PERMISSIONS (default), READ, USE, EDIT or MANAGE.
	DefaultPermission string `yaml:"default_permission"`
	// IdentityIntegrity says what to do when a request claims another user
	// in runs/create user_id or an mlflow.user tag: off, warn (default), enforce.
	IdentityIntegrity string `yaml:"identity_integrity"`
	// CreateGroups, when set, limits creating experiments and registered
	// models to members of these groups. Empty lets any authenticated caller.
	CreateGroups []string `yaml:"create_groups"`
	// StaticPrefix is MLflow's --static-prefix ("" or "/something").
	StaticPrefix string `yaml:"static_prefix"`
	// StaticPrefixMode says which routes the prefix moves, as the MLflow
	// version behind this app does: "api" (default; MLflow 3.12 and later,
	// /api/... too) or "ajax" (before 3.12, /api/... at the root).
	StaticPrefixMode string `yaml:"static_prefix_mode"`
	// CreatorGrants gives the creator of an experiment, registered model,
	// scorer or gateway secret, endpoint or model definition MANAGE once
	// MLflow's row exists, makes registered-model permission rows follow
	// renames, and removes a registered model's or scorer's rows with it
	// (MLflow's after-request handlers).
	// Default true; it needs a Recorder (the server wires one when the
	// store can write).
	CreatorGrants *bool `yaml:"creator_grants"`
	// PendingTTL is how long an allowed create, rename or delete waits for
	// MLflow's tables to show it before it expires without effect (default 2m).
	PendingTTL time.Duration `yaml:"pending_ttl"`
	// ExtProcFilter says that Envoy's ext_proc filter (package
	// authz/extproc) is deployed in front of this MLflow, so search
	// responses are filtered row by row and runs/search narrowed as MLflow
	// does after the request. The check then leaves to the filter the READ
	// it enforces itself (Need.FilterEnforced) and allows a ListScorers
	// across experiments. Default false: every named experiment needs READ,
	// as when only ext_authz sees the request.
	ExtProcFilter bool `yaml:"ext_proc_filter"`
	// Workspaces decides each request in the MLflow workspace it names
	// (X-MLFLOW-WORKSPACE, MLflow 3.10+ with MLFLOW_ENABLE_WORKSPACES),
	// passes the header on to MLflow, and denies a resource of another
	// workspace. Default false: everything is decided in workspace
	// default and the header is removed.
	Workspaces bool `yaml:"workspaces"`
	// GrantDefaultWorkspaceAccess is MLflow's grant_default_workspace_access
	// (basic_auth.ini): with workspaces on, a caller without any grant in the
	// default workspace gets default_permission there. Default false.
	GrantDefaultWorkspaceAccess bool `yaml:"grant_default_workspace_access"`
	// Recorder receives the allowed creates, renames and deletes. It is set
	// by the code that builds the service, never by YAML; nil records nothing.
	Recorder Recorder `yaml:"-"`
	// CompatConfig selects MLflow's or mlflow-oidc-auth's resolution.
	CompatConfig `yaml:",inline"`
}

// Recorder hears about requests we allowed whose effect on permission rows
// must follow once MLflow has carried them out. We see requests, never
// responses, so it must check MLflow's tables before acting
// (authz/ownership). Calls happen on the check's path and must be quick.
type Recorder interface {
	// RecordCreate: user was allowed to create the object n names.
	RecordCreate(ctx context.Context, n store.TrackedName, user string, ttl time.Duration)
	// RecordRename: a registered model may be renamed from → to (in from's
	// workspace).
	RecordRename(ctx context.Context, from store.TrackedName, to string, ttl time.Duration)
	// RecordDelete: a registered model or a scorer may be deleted.
	RecordDelete(ctx context.Context, n store.TrackedName, ttl time.Duration)
}

// DefaultPendingTTL is PendingTTL's default.
const DefaultPendingTTL = 2 * time.Minute

// Policy decides MLflow requests. It implements authz.Policy.
type Policy struct {
	store        store.Reader
	log          *slog.Logger
	cls          *Classifier
	defaultPerm  store.Permission
	resolution   Resolution
	integrity    string
	createGroups []string
	recorder     Recorder // nil when creator grants are off
	pendingTTL   time.Duration
	filter       bool // Config.ExtProcFilter
	workspaces   bool // Config.Workspaces
}

var _ authz.Policy = (*Policy)(nil)

// New validates cfg and returns a policy reading grants through r.
func New(r store.Reader, cfg Config, log *slog.Logger) (*Policy, error) {
	if r == nil {
		return nil, errors.New("mlflow: no store reader")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Policy{store: r, log: log, defaultPerm: store.NoPermissions, integrity: IntegrityWarn}
	if cfg.DefaultPermission != "" {
		perm, ok := store.ParsePermission(cfg.DefaultPermission)
		if !ok {
			return nil, fmt.Errorf("mlflow: default_permission %q is not one of NO_PERMISSIONS, READ, USE, EDIT, MANAGE", cfg.DefaultPermission)
		}
		p.defaultPerm = perm
	}
	var err error
	if p.resolution, err = NewResolution(cfg.Compat, cfg.PermissionSourceOrder, p.defaultPerm, log); err != nil {
		return nil, err
	}
	if p.resolution, err = p.resolution.WithGroupRoles(cfg.GroupRoles); err != nil {
		return nil, err
	}
	if cfg.Workspaces && p.resolution.Compat() {
		return nil, errors.New("mlflow: workspaces need MLflow's own resolution; mlflow-oidc-auth (compat: oidc-auth) has no workspaces")
	}
	if cfg.GrantDefaultWorkspaceAccess && !cfg.Workspaces {
		return nil, errors.New("mlflow: grant_default_workspace_access needs workspaces: true")
	}
	p.workspaces = cfg.Workspaces
	p.resolution = p.resolution.WithWorkspaces(cfg.Workspaces, cfg.GrantDefaultWorkspaceAccess)
	switch cfg.IdentityIntegrity {
	case "":
	case IntegrityOff, IntegrityWarn, IntegrityEnforce:
		p.integrity = cfg.IdentityIntegrity
	default:
		return nil, fmt.Errorf("mlflow: identity_integrity %q is not one of off, warn, enforce", cfg.IdentityIntegrity)
	}
	sp := cfg.StaticPrefix
	if sp != "" {
		if canon, why := authz.CanonicalPath(sp); why != "" || canon != sp || sp == "/" || sp[len(sp)-1] == '/' {
			return nil, fmt.Errorf("mlflow: static_prefix %q must be a canonical path like /mlflow", sp)
		}
	}
	mode, ok := ParseStaticPrefixMode(cfg.StaticPrefixMode)
	if !ok {
		return nil, fmt.Errorf("mlflow: static_prefix_mode %q is not one of api (MLflow 3.12 and later), ajax (before 3.12)", cfg.StaticPrefixMode)
	}
	if sp != "" {
		noteStaticPrefixEra(log, r, sp, mode, cfg.StaticPrefixMode == "")
	}
	for _, g := range cfg.CreateGroups {
		if authz.NormalizeGroup(g) == "" {
			return nil, errors.New("mlflow: create_groups holds an empty group name")
		}
		p.createGroups = append(p.createGroups, authz.NormalizeGroup(g))
	}
	if cfg.PendingTTL < 0 {
		return nil, fmt.Errorf("mlflow: pending_ttl %s must not be negative", cfg.PendingTTL)
	}
	p.filter = cfg.ExtProcFilter
	p.pendingTTL = cfg.PendingTTL
	if p.pendingTTL == 0 {
		p.pendingTTL = DefaultPendingTTL
	}
	if cfg.CreatorGrants == nil || *cfg.CreatorGrants {
		p.recorder = cfg.Recorder
	}
	p.cls = NewClassifier(sp, mode)
	return p, nil
}

// Decide implements authz.Policy. It walks the request down the steps the
// package doc lists, each in its own file; a step either refuses or hands
// on, and none calls back into an earlier one.
func (p *Policy) Decide(ctx context.Context, req *authz.Request, id *authz.Identity) authz.Decision {
	if id == nil {
		id = authz.Anonymous
	}
	tr := authz.TraceFrom(ctx)

	// Route, parameters, needs (classify.go): pure, no store.
	op, d := p.cls.Classify(req)
	if op.Route != nil && tr != nil {
		tr.Addf("route", "%s (%s, permission %s)", op.Route.Name, op.Route.Access, op.Route.Permission)
	}
	// An anonymous caller is told to authenticate before any other refusal,
	// so that a client with credentials retries with them.
	if op.Route != nil && op.Route.Access != AccessAnyone && !id.Authenticated() {
		return unauthenticated()
	}
	if d != nil {
		return *d
	}
	if op.Workspace, d = p.requestWorkspace(req, op); d != nil {
		return *d
	}
	if op.Workspace != "" && tr != nil {
		tr.Addf("workspace", "decided in workspace %q", op.Workspace)
	}
	if op, d = p.withFilter(op); d != nil {
		return *d
	}
	if tr != nil {
		traceNeeds(tr, op)
	}

	// Resources and permission (permission.go): the store.
	dec := p.checkAccess(ctx, op, id)
	if !dec.Allowed {
		return dec
	}

	// After an allow: the users the request records, then ownership.
	if d := p.checkClaims(ctx, req, op, id); d != nil {
		return *d
	}
	if p.recorder != nil {
		p.record(ctx, op, id)
	}
	return dec
}

// withFilter applies ExtProcFilter to a classified operation: with the
// filter deployed, the Needs it enforces itself are dropped (an operation
// left with none needs only an authenticated caller); without it, an
// operation that is safe only behind the filter is refused.
func (p *Policy) withFilter(op Operation) (Operation, *authz.Decision) {
	if !p.filter {
		if op.NeedsFilter {
			return op, deny(http.StatusBadRequest, ReasonMissingParameter, "missing required parameter experiment_id (listing across experiments needs the ext_proc filter; see apps[].mlflow.ext_proc_filter)")
		}
		return op, nil
	}
	kept := op.Needs[:0:0]
	for _, n := range op.Needs {
		if !n.FilterEnforced {
			kept = append(kept, n)
		}
	}
	if len(kept) == len(op.Needs) {
		return op, nil
	}
	if op.Note == "" {
		op.Note = "experiment ids narrowed by the ext_proc filter"
	}
	op.Needs = kept
	if op.Access == AccessResource && len(kept) == 0 {
		op.Access = AccessAuthenticated
	}
	return op, nil
}

// checkClaims compares the user names a run-writing request asks MLflow to
// record with the caller: MLflow without auth believes them. Depending on
// identity_integrity a mismatch is ignored, logged, or refused.
func (p *Policy) checkClaims(ctx context.Context, req *authz.Request, op Operation, id *authz.Identity) *authz.Decision {
	if p.integrity == IntegrityOff {
		return nil
	}
	for _, u := range op.ClaimedUsers {
		if u == id.Username {
			continue
		}
		if p.integrity == IntegrityEnforce {
			if tr := authz.TraceFrom(ctx); tr != nil {
				tr.Addf("decision", "request records user %q but the caller is %q", u, id.Username)
			}
			return deny(http.StatusForbidden, authz.ReasonIdentityMismatch, fmt.Sprintf("the request records the run as user %q but you are %q", u, id.Username))
		}
		p.log.WarnContext(ctx, "mlflow request records another user", slog.String("request_id", req.ID), slog.String("route", op.Route.Name), slog.String("claimed_user", u), slog.String("caller", id.Username))
	}
	return nil
}

// unauthenticated asks for credentials: a 401 with a Bearer challenge.
func unauthenticated() authz.Decision {
	d := authz.Deny(http.StatusUnauthorized, authz.ReasonUnauthenticated, "authentication required")
	d.ResponseHeaders = []authz.Header{{Name: "www-authenticate", Value: "Bearer"}}
	return d
}

// traceNeeds writes what Classify found to the explain trace.
func traceNeeds(tr *authz.Trace, op Operation) {
	for _, n := range op.Needs {
		cond := ""
		if n.IfExists {
			cond = " if it exists"
		}
		if n.MovedTo != "" {
			cond += fmt.Sprintf(" (%s where it leaves for %s)", permDelete, n.MovedTo)
		}
		tr.Addf("params", "%s=%q from %s → %s on %s%s", n.Param, n.Key+n.Resource.ID, n.Source, n.Permission, needTarget(n), cond)
	}
	if op.Note != "" {
		tr.Addf("params", "%s: %s required", op.Note, op.Access)
	}
}

// needTarget names what a Need is checked on, for the explain trace.
func needTarget(n Need) string {
	if n.Lookup != "" {
		return string(n.Lookup) + " " + n.Key
	}
	return string(n.Resource.Kind) + " " + n.Resource.ID
}

// noteStaticPrefixEra says at start which MLflow era decides the routes
// under staticPrefix, and warns when the auth database contradicts it. The
// layout alone cannot choose the era: behind mlflow-authz MLflow runs
// without its auth app, which alone migrates the auth database, so a legacy
// layout is as likely under MLflow 3.18 as under 3.11. A roles layout was
// written by MLflow 3.12 or later, though, so "ajax" beside it is almost
// certainly stale.
func noteStaticPrefixEra(log *slog.Logger, r store.Reader, prefix string, mode StaticPrefixMode, defaulted bool) {
	var layout store.Layout
	if l, ok := r.(store.LayoutReporter); ok {
		layout = l.Layout().Layout
	}
	switch {
	case mode == StaticPrefixAjax && layout == store.LayoutRoles:
		log.Warn("mlflow: static_prefix_mode ajax (MLflow before 3.12) beside an auth database in MLflow 3.12's roles layout; "+
			"if MLflow is 3.12 or later, set static_prefix_mode: api, or /api/... under the prefix is refused", "static_prefix", prefix)
	case defaulted:
		log.Info("mlflow: static_prefix routes decided as MLflow 3.12 and later serves them (/api/... under the prefix); "+
			"for an older MLflow set static_prefix_mode: ajax", "static_prefix", prefix, "auth_layout", layout)
	}
}
