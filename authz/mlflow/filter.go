package mlflow

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// What the ext_proc filter (package authz/extproc) needs from the policy:
// which route a request is, and which rows of a response the caller may
// read. MLflow answers the second question in its after-request handlers
// (mlflow/server/auth/__init__.py: filter_search_experiments and the other
// filter_* and redact_* functions, all built on _role_based_read_predicate).

// Route returns the route table row for method and a canonical path, or nil
// when no row matches. It reads nothing else of the request: the ext_proc
// filter picks what to do with a response from the route alone.
func (p *Policy) Route(method, path string) *Route {
	var vars pathVars
	return p.cls.match(method, path, &vars)
}

// DefaultPermission is the permission of a caller with no row on a resource.
func (p *Policy) DefaultPermission() store.Permission { return p.defaultPerm }

// Rows answers, row by row, whether the caller may read the resource a row
// of a listing stands for: MLflow's _role_based_read_predicate. A row is
// readable exactly when the point route for it would be allowed, from the
// same grants, groups, default and resolution (mlflow.compat) as Decide,
// read through the same grant cache (a warm lookup allocates nothing, so a
// page asks it per row). One Rows serves one response; it is not safe for
// concurrent use.
type Rows struct {
	p   *Policy
	id  *authz.Identity
	all bool
	// ws is the workspace the request names (Config.Workspaces), whose
	// grants decide every row; "" while workspaces are off. MLflow's
	// workspace-scoped stores list only that workspace's rows.
	ws string
}

// Rows returns the row predicate of id for req. An admin, by token or by
// users.is_admin, reads every row without any further lookup, as MLflow's
// filters return at once for sender_is_admin(). With workspaces on, rows
// are judged with the grants of the workspace req names; a name MLflow
// would refuse is an error (the check denies such a request before it
// reaches MLflow). An error is an infrastructure failure or such a
// refusal, never an answer: callers fail closed.
func (p *Policy) Rows(ctx context.Context, id *authz.Identity, req *authz.Request) (*Rows, error) {
	if id == nil {
		id = authz.Anonymous
	}
	ws, d := p.requestWorkspace(req, Operation{})
	if d != nil {
		return nil, fmt.Errorf("mlflow: rows: %s", d.Message)
	}
	r := &Rows{p: p, id: id, ws: ws}
	if id.Admin {
		r.all = true
		return r, nil
	}
	if id.Username != "" {
		_, admin, err := p.store.User(ctx, id.Username)
		if err != nil {
			return nil, fmt.Errorf("mlflow: rows: %w", err)
		}
		r.all = admin
	}
	return r, nil
}

// All reports whether the caller reads every row (an admin).
func (r *Rows) All() bool { return r.all }

// CanRead reports whether the caller may read res: READ or better by the
// policy's Resolution (MLflow's EffectivePermission, or mlflow-oidc-auth's
// resolution under compat), exactly as checkOne resolves it. Experiments
// are keyed by id, registered models (and the versions under them) by
// name, scorers by experiment id and name, gateway objects by id (looked
// up to the name their rows are keyed by under compat; an id that names
// nothing is not readable, as the point route answers 404).
func (r *Rows) CanRead(ctx context.Context, res store.Resource) (bool, error) {
	if r.all {
		return true, nil
	}
	res.Workspace = r.ws
	key, err := r.p.resolution.GrantKey(ctx, r.p.store, res)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("mlflow: rows: %w", err)
	}
	g, err := r.p.store.Grants(ctx, r.id.Username, key)
	if err != nil {
		return false, fmt.Errorf("mlflow: rows: %w", err)
	}
	if g.UserAdmin {
		r.all = true
		return true, nil
	}
	got, err := r.p.resolution.Permission(ctx, r.p.store, r.id.Username, r.id.Groups, res, key, g, nil)
	if err != nil {
		return false, fmt.Errorf("mlflow: rows: %w", err)
	}
	return got.Permission.CanRead(), nil
}

// CanViewWorkspace reports whether the caller sees workspace name, as
// GetWorkspace's check decides it (MLflow's filter_list_workspaces keeps
// exactly the workspaces validate_can_view_workspace lets a caller read).
func (r *Rows) CanViewWorkspace(ctx context.Context, name string) (bool, error) {
	if r.all {
		return true, nil
	}
	ok, err := r.p.canViewWorkspace(ctx, r.id, name)
	if err != nil {
		return false, fmt.Errorf("mlflow: rows: %w", err)
	}
	return ok, nil
}

// AllWorkspaces reports whether the caller sees every workspace without a
// lookup: an admin, or any caller while workspaces are off.
func (r *Rows) AllWorkspaces() bool { return r.all || !r.p.workspaces }

// ParseJSONBody reads a request body as MLflow's parser does, with the
// strictness of Decide: a duplicate key, invalid UTF-8 or anything but one
// JSON object is a 400 deny, the same deny the check gives.
func ParseJSONBody(body []byte) (map[string]any, *authz.Decision) {
	rd := reader{req: &authz.Request{Body: body}}
	defer rd.release()
	obj, d := rd.loadBody(false)
	if d != nil {
		return nil, d
	}
	m, err := obj.tree()
	if err != nil {
		return nil, deny(http.StatusBadRequest, ReasonInvalidJSON, "the body is not a JSON object MLflow could read")
	}
	return m, nil
}

// LookupKey reads key from a parsed JSON object in snake or camel case, as
// protobuf's JSON parser (and so MLflow) accepts both: spelled is the
// spelling found. Both spellings at once is a 400 deny.
func LookupKey(obj map[string]any, key string) (v any, spelled string, present bool, d *authz.Decision) {
	v, present, d = lookupMapKey(obj, key)
	if d != nil || !present {
		return nil, "", false, d
	}
	if _, snake := obj[key]; snake {
		return v, key, true, nil
	}
	return v, camel(key), true, nil
}

// ParseGraphQL parses a GraphQL document with the limits of Decide.
func ParseGraphQL(query string) (*ast.QueryDocument, *authz.Decision) {
	if len(query) > maxGraphQLBytes {
		return nil, badParam("GraphQL document too large")
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Name: graphqlSourceName, Input: query}, maxGraphQLTokens)
	if err != nil {
		return nil, badParam("GraphQL document does not parse")
	}
	return doc, nil
}

// ValidID reports whether s is an id the check would accept.
func ValidID(s string) bool { return validID(s) }

// CanReadOwned reports whether the caller may read the experiments that
// own key through l (a trace's, a run's): every one of them, as the check
// requires. A key that resolves to nothing is not readable.
func (r *Rows) CanReadOwned(ctx context.Context, l store.Lookup, key string) (bool, error) {
	if r.all {
		return true, nil
	}
	ids, err := r.p.store.Resolve(ctx, l, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("mlflow: rows: %w", err)
	case len(ids) == 0:
		return false, nil
	}
	for _, id := range ids {
		if ok, err := r.CanRead(ctx, store.Resource{Kind: store.Experiment, ID: id}); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}
