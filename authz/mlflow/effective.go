package mlflow

import (
	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Source is one permission source that EffectivePermission considered.
type Source struct {
	// Kind is "user", "group" or "default".
	Kind string
	// Group names the group (Kind "group"), without Keycloak's "/".
	Group string
	// Found is false for a group with no row on the resource.
	Found bool
	// Grant is the row (or, for "default", the default permission).
	Grant store.Grant
	// Outranked marks a group row that the user's own row outranks.
	Outranked bool
}

// EffectivePermission is the caller's permission on one resource, after the
// admin check: the user's own row (an explicit NO_PERMISSIONS, or a NULL or
// unknown row, denies), else the best of the groups' rows (an unreadable row
// denies), else def. It is MLflow's _get_permission_from_store_or_default
// (mlflow/server/auth/__init__.py) with mlflow-oidc-auth's group rows
// between the user's row and the default. The policy and the admin API's `permissions list`
// both call it, so what operators are shown is what is enforced. note, when
// not nil, hears every source considered, in order.
func EffectivePermission(g store.Grants, groups []string, def store.Permission, note func(Source)) store.Permission {
	if g.User != nil {
		if note != nil {
			note(Source{Kind: "user", Found: true, Grant: *g.User})
			for _, name := range groups {
				name = authz.NormalizeGroup(name)
				if gr, ok := g.Groups[name]; ok {
					note(Source{Kind: "group", Group: name, Found: true, Grant: gr, Outranked: true})
				}
			}
		}
		if !g.User.Valid {
			return store.NoPermissions
		}
		return g.User.Permission
	}
	best, found := store.NoPermissions, false
	for _, name := range groups {
		name = authz.NormalizeGroup(name)
		gr, ok := g.Groups[name]
		if note != nil {
			note(Source{Kind: "group", Group: name, Found: ok, Grant: gr})
		}
		if !ok {
			continue
		}
		if !gr.Valid {
			// An unreadable row is a deny, never a guess: it ends the search.
			return store.NoPermissions
		}
		if !found || gr.Permission > best {
			best, found = gr.Permission, true
		}
	}
	if found {
		return best
	}
	if note != nil {
		note(Source{Kind: "default", Found: true, Grant: store.Grant{Permission: def, Valid: true}})
	}
	return def
}
