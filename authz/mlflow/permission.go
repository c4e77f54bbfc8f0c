package mlflow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// The permission check: after Classify, the Operation's Access and Needs are
// checked against the store. Ids are resolved to the resources that own them
// (checkNeeds), then the caller's grants on each are read and ranked
// (checkOne, Resolution).

// checkAccess checks op's Access for id: the Needs against the store for
// AccessResource, the users table for admin-only and self routes.
func (p *Policy) checkAccess(ctx context.Context, op Operation, id *authz.Identity) authz.Decision {
	tr := authz.TraceFrom(ctx)
	if id.Admin {
		if tr != nil {
			tr.Addf("permission", "admin by token")
		}
		return authz.Allow(authz.ReasonAllowed)
	}
	switch op.Access {
	case AccessAnyone, AccessAuthenticated:
		return authz.Allow(authz.ReasonAllowed)
	case AccessCreate:
		if op.Workspace != "" {
			if d := p.checkCreateIn(ctx, id, op.Workspace); d != nil {
				return *d
			}
		}
		if len(p.createGroups) == 0 {
			return authz.Allow(authz.ReasonAllowed)
		}
		for _, g := range p.createGroups {
			if id.InGroup(g) {
				return authz.Allow(authz.ReasonAllowed)
			}
		}
		return p.adminOr(ctx, id, authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, "creating this requires membership in one of the configured create groups"))
	case AccessSelf:
		if op.Username != "" && op.Username == id.Username {
			return authz.Allow(authz.ReasonAllowed)
		}
		return p.adminOr(ctx, id, authz.Deny(http.StatusForbidden, authz.ReasonAdminRequired, "only the user themself or an admin may do this"))
	case AccessWorkspace:
		ok, err := p.canViewWorkspace(ctx, id, op.ViewWorkspace)
		if err != nil {
			return storeDeny(err)
		}
		if ok {
			return authz.Allow(authz.ReasonAllowed)
		}
		return p.adminOr(ctx, id, authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied,
			fmt.Sprintf("workspace %q is not visible to the caller: no role and no workspace grant there", op.ViewWorkspace)))
	case AccessAdmin:
		msg := "admin required"
		if op.Note != "" {
			msg = "admin required: " + op.Note
		}
		return p.adminOr(ctx, id, authz.Deny(http.StatusForbidden, authz.ReasonAdminRequired, msg))
	case AccessResource:
		return p.checkNeeds(ctx, op, id)
	}
	return authz.Deny(http.StatusForbidden, authz.ReasonForbidden, "route has no access rule")
}

// adminOr allows the caller if the users table says it is an admin, and
// answers no otherwise; a store failure is a deny either way.
func (p *Policy) adminOr(ctx context.Context, id *authz.Identity, no authz.Decision) authz.Decision {
	admin, d := p.userAdmin(ctx, id)
	if d != nil {
		return *d
	}
	if admin {
		return authz.Allow(authz.ReasonAllowed)
	}
	return no
}

// userAdmin reads users.is_admin for the caller.
func (p *Policy) userAdmin(ctx context.Context, id *authz.Identity) (bool, *authz.Decision) {
	if id.Username == "" {
		return false, nil
	}
	_, admin, err := p.store.User(ctx, id.Username)
	if err != nil {
		d := storeDeny(err)
		return false, &d
	}
	if admin {
		if tr := authz.TraceFrom(ctx); tr != nil {
			tr.Addf("permission", "admin by users.is_admin")
		}
	}
	return admin, nil
}

// storeDeny turns a store failure into a deny: a missing resource is a
// 404, anything else a 503 the caller can retry; never an allow.
func storeDeny(err error) authz.Decision {
	if errors.Is(err, store.ErrNotFound) {
		return authz.Deny(http.StatusNotFound, authz.ReasonResourceNotFound, "resource not found")
	}
	return authz.Deny(http.StatusServiceUnavailable, authz.ReasonUnavailable, "permissions could not be read right now; retry")
}

// checkNeeds resolves each Need to the resources that own it and checks the
// permission on each. One admin answer from the users table allows all.
func (p *Policy) checkNeeds(ctx context.Context, op Operation, id *authz.Identity) authz.Decision {
	tr := authz.TraceFrom(ctx)
	if len(op.Needs) == 0 {
		// An AccessResource operation with nothing to check is a table or
		// classification bug: fail closed.
		return authz.Deny(http.StatusForbidden, authz.ReasonForbidden, "nothing to check permission on")
	}
	var memo map[store.Resource]Result
	if len(op.Needs) > 1 {
		memo = make(map[store.Resource]Result, len(op.Needs))
	}
	var seen map[Need]bool
	if len(op.Needs) > 1 {
		seen = make(map[Need]bool, len(op.Needs))
	}
	for _, n := range op.Needs {
		if seen != nil {
			if seen[n] {
				continue
			}
			seen[n] = true
		}
		if n.Lookup == "" {
			res := n.Resource
			res.Workspace = op.Workspace
			if d, admin := p.checkOne(ctx, id, res, n, memo); d != nil || admin {
				if d != nil {
					return *d
				}
				return authz.Allow(authz.ReasonAllowed)
			}
			continue
		}
		ids, err := p.resolve(ctx, n, op.Workspace)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) && n.IfExists {
				// MLflow creates it: nothing of anyone else's is touched.
				if tr != nil {
					tr.Addf("resource", "%s %q does not exist yet: MLflow creates it, no further need", n.Lookup, n.Key)
				}
				continue
			}
			if errors.Is(err, store.ErrNotFound) {
				if tr != nil {
					tr.Addf("resource", "%s %q not found", n.Lookup, n.Key)
				}
				return authz.Deny(http.StatusNotFound, authz.ReasonResourceNotFound, fmt.Sprintf("%s %s not found", lookupNoun(n.Lookup), n.Key))
			}
			return storeDeny(err)
		}
		if len(ids) == 0 {
			if tr != nil {
				tr.Addf("resource", "%s %q owned by no %s", n.Lookup, n.Key, n.Resource.Kind)
			}
			return authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, fmt.Sprintf("%s %s belongs to no %s, so nobody but an admin may use it", lookupNoun(n.Lookup), n.Key, n.Resource.Kind))
		}
		if tr != nil {
			tr.Addf("resource", "%s %q → %s %v", n.Lookup, n.Key, n.Resource.Kind, ids)
		}
		for _, rid := range ids {
			res := store.Resource{Kind: n.Resource.Kind, ID: rid, Workspace: op.Workspace}
			need := n
			if n.MovedTo != "" && rid != n.MovedTo {
				// The merge takes it out of rid: a delete there.
				need.Permission = permDelete
				if tr != nil {
					tr.Addf("resource", "%s %q moves from %s %s to %s: %s there", n.Lookup, n.Key, n.Resource.Kind, rid, n.MovedTo, permDelete)
				}
			}
			if d, admin := p.checkOne(ctx, id, res, need, memo); d != nil || admin {
				if d != nil {
					if need.Permission != n.Permission {
						d.Message += fmt.Sprintf(": the request moves %s %s out of it", lookupNoun(n.Lookup), n.Key)
					}
					return *d
				}
				return authz.Allow(authz.ReasonAllowed)
			}
		}
	}
	return authz.Allow(authz.ReasonAllowed)
}

// resolve finds the owners of n's key; a name in workspace ws ("" while
// workspaces are off). A key that MLflow merges into is read past the
// cache (store.FreshResolver), when the store has one.
func (p *Policy) resolve(ctx context.Context, n Need, ws string) ([]string, error) {
	l, key := inWorkspace(n.Lookup, n.Key, ws)
	if fr, ok := p.store.(store.FreshResolver); ok && n.IfExists {
		return fr.ResolveFresh(ctx, l, key)
	}
	return p.store.Resolve(ctx, l, key)
}

// lookupNoun names what a Lookup's key is, for deny messages.
func lookupNoun(l store.Lookup) string {
	switch l {
	case store.RunExperiment:
		return "run"
	case store.TraceExperiment:
		return "trace"
	case store.AssessmentExperiment:
		return "assessment"
	case store.LoggedModelExperiment:
		return "logged model"
	case store.ExperimentByName:
		return "experiment named"
	case store.ExperimentByID:
		return "experiment"
	case store.JobExperiment:
		return "job"
	case store.IssueExperiment:
		return "issue"
	case store.DatasetExperiments:
		return "dataset"
	case store.GatewayEndpointByName:
		return "gateway endpoint named"
	}
	return string(l)
}

// checkOne checks one resource. It returns a deny, or admin=true when the
// users table says the caller is an admin (then nothing else is checked).
func (p *Policy) checkOne(ctx context.Context, id *authz.Identity, res store.Resource, n Need, memo map[store.Resource]Result) (*authz.Decision, bool) {
	r, ok := memo[res]
	if !ok {
		if res.Workspace != "" {
			if d := p.checkWorkspace(ctx, res, res.Workspace); d != nil {
				return d, false
			}
		}
		key, err := p.resolution.GrantKey(ctx, p.store, res)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				// mlflow-oidc-auth keys gateway rows by name and denies when
				// the id names nothing (validators/gateway.py).
				if tr := authz.TraceFrom(ctx); tr != nil {
					tr.Addf("resource", "%s has no name in the tracking tables", describe(res))
				}
				d := authz.Deny(http.StatusNotFound, authz.ReasonResourceNotFound, describe(res)+" not found")
				return &d, false
			}
			d := storeDeny(err)
			return &d, false
		}
		g, err := p.store.Grants(ctx, id.Username, key)
		if err != nil {
			d := storeDeny(err)
			if errors.Is(err, store.ErrNotFound) {
				d = authz.Deny(http.StatusServiceUnavailable, authz.ReasonUnavailable, "permissions could not be read right now; retry")
			}
			return &d, false
		}
		if g.UserAdmin {
			if tr := authz.TraceFrom(ctx); tr != nil {
				tr.Addf("permission", "admin by users.is_admin")
			}
			return nil, true
		}
		if r, err = p.effective(ctx, id, res, key, g); err != nil {
			d := authz.Deny(http.StatusServiceUnavailable, authz.ReasonUnavailable, "permissions could not be read right now; retry")
			return &d, false
		}
		if memo != nil {
			memo[res] = r
		}
	}
	if r.Permission < n.Permission {
		msg := n.Permission.String() + " on " + describe(res) + " required"
		if r.Unreadable != "" {
			msg += "; denied because " + r.Unreadable
		}
		d := authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, msg)
		return &d, false
	}
	return nil, false
}

// describe names a resource in deny messages and the explain trace.
func describe(r store.Resource) string {
	switch r.Kind {
	case store.Scorer:
		return "scorer " + strconv.Quote(r.Name) + " of experiment " + r.ID
	case store.RegisteredModel:
		return "registered model " + strconv.Quote(r.ID)
	}
	return string(r.Kind) + " " + r.ID
}

// effective resolves the caller's permission on res from g, the rows read
// for key, recording each source considered in the explain trace when
// there is one.
func (p *Policy) effective(ctx context.Context, id *authz.Identity, res, key store.Resource, g store.Grants) (Result, error) {
	tr := authz.TraceFrom(ctx)
	if tr == nil {
		return p.resolution.Permission(ctx, p.store, id.Username, id.Groups, res, key, g, nil)
	}
	if l, ok := p.store.(store.LayoutReporter); ok {
		info := l.Layout()
		tr.Addf("permission", "auth database layout %s (alembic revision %q)%s", info.Layout, info.Revision, layoutNote(info))
	}
	if g.Layout == store.LayoutRoles && !p.resolution.Compat() {
		tr.Addf("permission", "MLflow's roles: the highest grant over the roles of user %q and of its groups on %s; DENY denies; no grant: the default %s",
			id.Username, describe(res), p.resolution.Default())
		r, err := p.resolution.Permission(ctx, p.store, id.Username, id.Groups, res, key, g, func(src Source) {
			tr.Addf("permission", "%s", src.Describe(id.Username))
		})
		if err == nil {
			line := fmt.Sprintf("%s decides: %s", r.Source, r.Permission)
			if r.Unreadable != "" {
				line += " (" + r.Unreadable + ")"
			}
			tr.Addf("permission", "%s", line)
		}
		return r, err
	}
	if !p.resolution.Compat() {
		return p.resolution.Permission(ctx, p.store, id.Username, id.Groups, res, key, g, func(src Source) {
			switch {
			case src.Kind == "default":
				tr.Addf("permission", "no row for user %q or its groups on %s: default %s", id.Username, describe(res), src.Grant.Permission)
			case !src.Found || src.Outranked:
			case !src.Grant.Valid && src.Kind == "user":
				tr.Addf("permission", "user %q row on %s is NULL or unknown → deny", id.Username, describe(res))
			case !src.Grant.Valid:
				tr.Addf("permission", "group %q row on %s is NULL or unknown → deny", src.Group, describe(res))
			case src.Kind == "user":
				tr.Addf("permission", "user %q row on %s: %s", id.Username, describe(res), src.Grant.Permission)
			default:
				tr.Addf("permission", "group %q row on %s: %s", src.Group, describe(res), src.Grant.Permission)
			}
		})
	}
	order := make([]string, len(p.resolution.Order()))
	for i, s := range p.resolution.Order() {
		order[i] = string(s)
	}
	keyed := ""
	if key.ID != res.ID {
		keyed = fmt.Sprintf(" (rows keyed by its name %q)", key.ID)
	}
	tr.Addf("permission", "mlflow-oidc-auth resolution on %s%s, sources in order %s; the first with a row decides",
		describe(res), keyed, strings.Join(order, ", "))
	r, err := p.resolution.Permission(ctx, p.store, id.Username, id.Groups, res, key, g, func(src Source) {
		tr.Addf("permission", "%s", src.Describe(id.Username))
	})
	if err == nil {
		tr.Addf("permission", "%s decides: %s", r.Source, r.Permission)
	}
	return r, err
}

// layoutNote explains how the layout was decided.
func layoutNote(l store.LayoutInfo) string {
	switch {
	case l.Unknown:
		return ": a revision this build does not know, read by its tables"
	case l.Forced:
		return ": set by mlflow.layout"
	}
	return ""
}
