package mlflowdb

import (
	"strconv"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// The roles layout, as MLflow's newest auth store reads it
// (mlflow/server/auth/sqlalchemy_store.py, get_role_permission_for_resource
// and _scorer_pattern; mlflow/server/auth/permissions.py TYPE).

// DefaultWorkspace is the workspace every resource is in while workspaces
// are off.
const DefaultWorkspace = store.DefaultWorkspace

// SyntheticRolePrefix starts the name of the hidden per-user role,
// __user_<users.id>__, that holds a user's direct grants. MLflow reserves
// the whole prefix (_reject_synthetic_role_name), so no group ever maps to
// such a role.
const SyntheticRolePrefix = "__user_"

// SyntheticRole is the name of the hidden role of the user with id uid.
func SyntheticRole(uid int64) string {
	return SyntheticRolePrefix + strconv.FormatInt(uid, 10) + "__"
}

// Resource types of role_permissions.resource_type.
const (
	TypeWorkspace = "workspace"
	TypePrompt    = "prompt"
)

// RoleTypes returns the resource_type values whose grants decide a
// resource of kind k: a registered model's grants are of type
// registered_model, or prompt for a prompt (migration f1a2b3c4d5e6).
func RoleTypes(k store.ResourceKind) []string {
	if k == store.RegisteredModel {
		return []string{string(store.RegisteredModel), TypePrompt}
	}
	return []string{string(k)}
}

// ChildTypes are the sub-resource types whose grants MLflow's newest code
// consults before the parent's for some operations (permissions.py TYPE,
// requirements.py fallback_if_no_grant): a grant there can override the
// parent's either way. This build does not evaluate them, so a caller
// holding one is denied on the parent (fail closed).
var ChildTypes = map[string][]string{
	string(store.Experiment):      {"run", "trace", "assessment", "logged_model", "review_queue"},
	string(store.RegisteredModel): {"registered_model_version"},
	TypePrompt:                    {"prompt_version"},
	string(store.Scorer):          {"scorer_version"},
}

// RoleKey is the resource_pattern a grant on res names: the id, or for a
// scorer <experiment_id>/<the name quoted as Python's
// urllib.parse.quote(name, safe="") quotes it> (SqlAlchemyStore._scorer_pattern).
func RoleKey(res store.Resource) string {
	if res.Kind == store.Scorer && res.ID != "*" {
		return res.ID + "/" + PyQuote(res.Name)
	}
	return res.ID
}

// PyQuote percent-encodes s as Python's urllib.parse.quote(s, safe="")
// does: every UTF-8 byte but ASCII letters, digits and "_.-~", with
// upper-case hex.
func PyQuote(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// Kinds of row in a roles-layout Grants query (its first column; User is
// shared with the legacy layout).
const (
	RoleRow      = 4 // a role_permissions row
	ConditionRow = 5 // a mutation_conditions row
	PromptRow    = 6 // the registered model's is_prompt tag says true
)

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

// assignedOrNamed keeps the roles that are the user's or that a group may
// map to. r is the roles alias; $1 is the username.
const assignedOrNamed = `(r.id IN (SELECT a.role_id FROM user_role_assignments a JOIN users uu ON uu.id = a.user_id WHERE uu.username = $1)
		OR r.name NOT LIKE '\_\_user\_%' ESCAPE '\')`

const assignedCol = `r.id IN (SELECT a.role_id FROM user_role_assignments a JOIN users uu ON uu.id = a.user_id WHERE uu.username = $1)`

// rolesGrantsSQL is the roles-layout Grants query for kind k: one UNION
// ALL, arguments (username, RoleKey, workspace). Its rows are (kind, role name,
// assigned, permission, resource_type, resource_pattern).
func rolesGrantsSQL(s Schema, k store.ResourceKind) string {
	types := RoleTypes(k)
	var children []string
	for _, t := range types {
		children = append(children, ChildTypes[t]...)
	}
	typeCond := `(rp.resource_type IN (` + quoteList(types) + `) AND rp.resource_pattern IN ('*', $2))
		OR (rp.resource_type = '` + TypeWorkspace + `' AND rp.resource_pattern = '*')`
	if len(children) > 0 {
		typeCond += `
		OR rp.resource_type IN (` + quoteList(children) + `)`
	}
	sql := `WITH u AS (SELECT id, is_admin FROM users WHERE username = $1)
SELECT 0, '', COALESCE(u.is_admin, false), CAST(NULL AS TEXT), '', '' FROM u
UNION ALL
SELECT ` + strconv.Itoa(RoleRow) + `, r.name, ` + assignedCol + `, rp.permission, rp.resource_type, rp.resource_pattern
	FROM role_permissions rp JOIN roles r ON r.id = rp.role_id
	WHERE r.workspace = $3 AND (` + typeCond + `)
	AND ` + assignedOrNamed
	if s.Tables["mutation_conditions"] {
		sql += `
UNION ALL
SELECT ` + strconv.Itoa(ConditionRow) + `, r.name, ` + assignedCol + `, CAST(NULL AS TEXT), mc.resource_type, mc.resource_pattern
	FROM mutation_conditions mc JOIN roles r ON r.id = mc.role_id
	WHERE r.workspace = $3 AND mc.resource_type IN (` + quoteList(append(types, children...)) + `)
	AND ` + assignedOrNamed
	}
	if k == store.RegisteredModel && s.Tracking && s.Tables["registered_model_tags"] {
		ws := ""
		if s.Workspace["registered_model_tags"] {
			ws = ` AND t.workspace = $3`
		}
		// mlflow.prompt.is_prompt, compared as f1a2b3c4d5e6 compares it.
		sql += `
UNION ALL
SELECT ` + strconv.Itoa(PromptRow) + `, '', false, CAST(NULL AS TEXT), '', '' FROM registered_model_tags t
	WHERE t.name = $2 AND t.key = 'mlflow.prompt.is_prompt' AND LOWER(t.value) = 'true'` + ws
	}
	return sql
}

// addRole folds one roles-layout row into g.
func addRole(g *store.Grants, kind int, role string, assigned bool, perm *string, rtype, pattern string) {
	switch kind {
	case RoleRow:
		rg := store.RoleGrant{Role: role, Assigned: assigned, Type: rtype, Pattern: pattern}
		if perm != nil && *perm == "DENY" {
			rg.Deny, rg.Grant = true, store.Grant{Permission: store.NoPermissions, Valid: true}
		} else {
			rg.Grant = ParseGrant(perm)
		}
		g.Roles = append(g.Roles, rg)
	case ConditionRow:
		g.Roles = append(g.Roles, store.RoleGrant{Role: role, Assigned: assigned, Type: rtype, Pattern: pattern, Condition: true})
	case PromptRow:
		g.Prompt = true
	}
}
