package mlflow

import (
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// The roles layout (MLflow 3.12+): a caller's permission on a resource is
// what MLflow's newest auth code resolves (mlflow/server/auth/
// sqlalchemy_store.py get_role_permission_for_resource, and
// __init__.py _get_role_permission_or_default with workspaces off):
//
//   - the roles are those assigned to the user in the resource's workspace
//     ('default' while workspaces are off), plus, here, the roles the
//     caller's token groups name (GroupRoles);
//   - a grant on (type, "*") or (type, id) counts; the highest counts
//     over all roles (a direct grant, on the synthetic __user_<id>__ role,
//     does not outrank a role's);
//   - (workspace, "*", MANAGE) makes a workspace admin: MANAGE on
//     everything, and no DENY restricts it; other workspace grants (USE)
//     confer nothing on a resource;
//   - DENY on a matching key denies, whatever else matches;
//   - no grant at all: the default permission; a positive grant is never
//     below the default (a floor); NO_PERMISSIONS stays a deny.
//
// What this build cannot evaluate denies with a reason (fail closed): a
// grant whose permission is not one of MLflow's, a grant on a sub-resource
// type (run, trace, …) that MLflow's tier override may apply instead of
// the parent's, and a mutation condition, which leaves reads alone but
// denies every update.

// Group-to-role path modes (GroupRoles.Path).
const (
	GroupPathFull = "full" // "/team/sub" names role "team/sub"
	GroupPathLast = "last" // "/team/sub" names role "sub"
)

// GroupRoles says which MLflow role a token group names in the roles
// layout: the role of the group's name in the workspace, so a group grants
// what its role grants without per-user assignment rows.
type GroupRoles struct {
	// Prefix, when set, limits the mapping to groups that start with it,
	// and is stripped: with prefix "mlflow-", group "mlflow-editors" names
	// role "editors" and group "staff" names none.
	Prefix string `yaml:"prefix"`
	// Path is full (default: Keycloak's leading "/" stripped, the rest of
	// the path kept) or last (the last path segment only).
	Path string `yaml:"path"`
	// Off turns the mapping off: only assigned roles count.
	Off bool `yaml:"off"`
}

// Validate checks g.
func (g GroupRoles) Validate() error {
	switch g.Path {
	case "", GroupPathFull, GroupPathLast:
		return nil
	}
	return fmt.Errorf("mlflow: group_roles.path %q is not full or last", g.Path)
}

// Map returns the role each of groups names, keyed by role, with the
// group it came from. A role of MLflow's reserved per-user namespace
// (__user_…) is never named: that would hand a user's direct grants to a
// group.
func (g GroupRoles) Map(groups []string) map[string]string {
	if g.Off || len(groups) == 0 {
		return nil
	}
	out := make(map[string]string, len(groups))
	for _, grp := range groups {
		name := authz.NormalizeGroup(grp)
		if g.Path == GroupPathLast {
			if i := strings.LastIndexByte(name, '/'); i >= 0 {
				name = name[i+1:]
			}
		}
		if g.Prefix != "" {
			if !strings.HasPrefix(name, g.Prefix) {
				continue
			}
			name = strings.TrimPrefix(name, g.Prefix)
		}
		if name == "" || strings.HasPrefix(name, syntheticRolePrefix) {
			continue
		}
		if _, dup := out[name]; !dup {
			out[name] = grp
		}
	}
	return out
}

// syntheticRolePrefix starts MLflow's per-user roles (sqlalchemy_store.py
// _SYNTHETIC_ROLE_PREFIX).
const syntheticRolePrefix = "__user_"

// childTypes are the sub-resource types of a role type (MLflow's
// permissions.py TYPE, requirements.py).
var childTypes = map[string][]string{
	"experiment":       {"run", "trace", "assessment", "logged_model", "review_queue"},
	"registered_model": {"registered_model_version"},
	"prompt":           {"prompt_version"},
	"scorer":           {"scorer_version"},
}

// roleTypesOf returns the role types that may decide res given g: a
// registered model is a prompt or not (both when the store could not
// tell).
func roleTypesOf(res store.Resource, g store.Grants) []string {
	if res.Kind != store.RegisteredModel {
		return []string{string(res.Kind)}
	}
	switch {
	case !g.PromptKnown:
		return []string{"registered_model", "prompt"}
	case g.Prompt:
		return []string{"prompt"}
	}
	return []string{"registered_model"}
}

// rolePermission resolves the roles layout; see the comment at the top.
func (rs Resolution) rolePermission(g store.Grants, res store.Resource, groups []string, note func(Source)) Result {
	mapped := rs.groupRoles.Map(groups)
	types := roleTypesOf(res, g)
	var worst *Result
	for _, t := range types {
		r := rs.roleType(g, res, t, mapped, note)
		if worst == nil || r.Permission < worst.Permission {
			r := r
			worst = &r
		}
	}
	if len(types) > 1 && note != nil {
		note(Source{Kind: "role-type", Name: fmt.Sprintf("the tracking tables are not in the auth database, so %q may be a prompt: the lower of its registered_model and prompt grants decides", res.ID)})
	}
	return *worst
}

// roleType resolves the grants of one role type.
func (rs Resolution) roleType(g store.Grants, res store.Resource, t string, mapped map[string]string, note func(Source)) Result {
	fallback, fallbackSrc := rs.fallback(g, res)
	var (
		wsAdmin, denied, cond bool
		best                  store.Permission
		found                 bool
		unreadable, child     string
	)
	isChild := func(typ string) bool {
		for _, c := range childTypes[t] {
			if c == typ {
				return true
			}
		}
		return false
	}
	for _, r := range g.Roles {
		via := ""
		switch grp, ok := mapped[r.Role]; {
		case r.Assigned:
			via = "assigned"
		case ok && !strings.HasPrefix(r.Role, syntheticRolePrefix):
			via = "group " + authz.NormalizeGroup(grp)
		default:
			continue
		}
		src := Source{Kind: "role", Role: r.Role, Via: via, RoleType: r.Type, Pattern: r.Pattern, Found: true, Grant: r.Grant, Deny: r.Deny}
		switch {
		case r.Condition:
			if r.Type != t && !isChild(r.Type) {
				continue
			}
			cond = true
			src.Condition = true
		case r.Type == "workspace" && r.Pattern == "*":
			if r.Deny || !r.Grant.Valid || r.Grant.Permission != store.Manage {
				// USE is the member's tier: it lets one join and create,
				// and grants nothing on a resource.
				src.Outranked = true
				break
			}
			wsAdmin = true
			best, found = max(best, store.Manage), true
		case r.Type == t:
			switch {
			case r.Deny:
				denied = true
			case !r.Grant.Valid:
				if unreadable == "" {
					unreadable = fmt.Sprintf("role %q holds a permission on %s %q that is not one of MLflow's", r.Role, r.Type, r.Pattern)
				}
			default:
				if !found || r.Grant.Permission > best {
					best = r.Grant.Permission
				}
				found = true
			}
		case isChild(r.Type):
			if child == "" {
				child = fmt.Sprintf("role %q grants on %s %q, a sub-resource tier that MLflow may apply in place of the %s grant and that this build does not evaluate", r.Role, r.Type, r.Pattern, t)
			}
		default:
			continue
		}
		if note != nil {
			note(src)
		}
	}
	out := Result{Source: "role"}
	switch {
	case unreadable != "":
		out.Permission, out.Unreadable = store.NoPermissions, unreadable
	case wsAdmin:
		out.Permission = store.Manage
	case child != "":
		out.Permission, out.Unreadable = store.NoPermissions, child
	case denied:
		out.Permission, out.Unreadable = store.NoPermissions, "a role grants DENY"
	case !found:
		// No grant in the resource's workspace: with workspaces on, MLflow
		// denies unless the default workspace grants default_permission
		// (__init__.py _role_permission_for).
		out.Permission, out.Source = fallback, fallbackSrc
		if note != nil {
			note(Source{Kind: fallbackSrc, Name: res.WorkspaceOf(), Found: true, Grant: store.Grant{Permission: fallback, Valid: true}})
		}
	case best == store.NoPermissions:
		out.Permission = store.NoPermissions
	default:
		out.Permission = max(best, rs.def)
	}
	if cond && out.Permission > store.Read {
		out.Permission = store.Read
		out.Unreadable = "a mutation condition of one of the user's roles applies, which this build does not evaluate: reads only"
	}
	return out
}

// WithGroupRoles returns rs with the group-to-role mapping of the roles
// layout.
func (rs Resolution) WithGroupRoles(g GroupRoles) (Resolution, error) {
	if err := g.Validate(); err != nil {
		return rs, err
	}
	rs.groupRoles = g
	return rs, nil
}

// GroupRole returns the role a group names in the roles layout, as the
// check maps a token's groups; ok is false when it names none.
func (rs Resolution) GroupRole(group string) (role string, ok bool) {
	for r := range rs.groupRoles.Map([]string{group}) {
		return r, true
	}
	return "", false
}
