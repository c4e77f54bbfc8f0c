package mlflowdb

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Schema is what a backend found in the auth database when it opened: the
// tables that exist, and whether registered_model_permissions has MLflow
// 3.10's workspace column (mlflow-oidc-auth's has none). The read queries
// are built from it once; tables created later are read after a restart.
type Schema struct {
	Tables map[string]bool
	// Workspace names the tables with MLflow 3.10's workspace column.
	Workspace      map[string]bool
	ModelWorkspace bool
	// Layout is the layout the backend decided on (DetectLayout).
	Layout store.LayoutInfo
	// Tracking says that MLflow's tracking tables are in the auth database
	// too (one database, or one SQLite file).
	Tracking bool
}

// SchemaSQL lists the auth database's tables, each with whether it has a
// workspace column, as rows of (name, has workspace column).
var SchemaSQL = map[store.Dialect]string{
	store.PostgreSQL: `SELECT c.relname::text, EXISTS (
			SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'workspace' AND NOT a.attisdropped)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))`,
	store.SQLite: `SELECT m.name, EXISTS (SELECT 1 FROM pragma_table_info(m.name) p WHERE p.name = 'workspace')
		FROM sqlite_master m WHERE m.type = 'table'`,
}

// AddTable records one row of SchemaSQL in s.
func (s *Schema) AddTable(name string, workspace bool) {
	if s.Tables == nil {
		s.Tables = map[string]bool{}
	}
	if s.Workspace == nil {
		s.Workspace = map[string]bool{}
	}
	s.Tables[name] = true
	s.Workspace[name] = workspace
	if name == "registered_model_permissions" {
		s.ModelWorkspace = workspace
	}
}

// Queries are a backend's read queries for one Schema.
type Queries struct {
	// Grants holds one query per resource kind, bound with GrantArgs; its
	// rows fold with Add.
	Grants map[store.ResourceKind]string
	// experimentName: the experiments Grants query also reads the
	// experiment's name (a third argument, its canonical integer id).
	experimentName bool
	// Patterns holds one query per kind that has regex tables, arguments
	// (username, GroupsArg(groups)); its rows fold with AddPattern.
	Patterns map[store.ResourceKind]string
	// layout is the layout the queries read.
	layout store.LayoutInfo
	// promptKnown: the roles-layout registered-model query reads the
	// is_prompt tag (the tracking tables are in the auth database).
	promptKnown bool
	// workspaceArg: the legacy Grants query of the kind binds the
	// resource's workspace as its last argument (registered-model rows and
	// workspace_permissions are per workspace; without either there is
	// nothing to bind it to). The roles-layout queries always bind it, as $3.
	workspaceArg map[store.ResourceKind]bool
	// visibility holds the queries of store.VisibleWorkspaces and
	// store.WorkspacesOfRole; a lookup without one sees no workspace.
	visibility map[store.Lookup]string
}

// VisibilitySQL returns the query of a workspace-visibility lookup
// (store.VisibleWorkspaces, store.WorkspacesOfRole), which reads the auth
// database with the key as $1 and answers one workspace name per row; ""
// when the database has nothing that could make a workspace visible.
func (q Queries) VisibilitySQL(l store.Lookup) string { return q.visibility[l] }

// Layout returns the layout the queries read.
func (q Queries) Layout() store.LayoutInfo { return q.layout }

// NewGrants returns the empty Grants that rows of a Grants query fold
// into; Layout is set in the roles layout only (empty means legacy).
func (q Queries) NewGrants(k store.ResourceKind) store.Grants {
	if q.layout.Layout == store.LayoutRoles {
		return store.Grants{Layout: store.LayoutRoles, PromptKnown: k == store.RegisteredModel && q.promptKnown}
	}
	return store.Grants{}
}

// Kinds of row in a Patterns query (its first column).
const (
	UserPattern  = iota // a regex row of the user
	GroupPattern        // a group-regex row
)

// BuildQueries builds the read queries for s in dialect d. Each is one
// UNION ALL, so a read is one round trip; the SQL is portable but for the
// list of groups, which arrives as one JSON array argument. "$2" used
// twice binds one argument in both (PostgreSQL and SQLite alike).
func BuildQueries(s Schema, d store.Dialect) Queries {
	q := Queries{Grants: map[store.ResourceKind]string{}, Patterns: map[store.ResourceKind]string{}, layout: s.Layout,
		workspaceArg: map[store.ResourceKind]bool{}}
	if s.Layout.Layout == "" {
		q.layout.Layout = store.LayoutLegacy
	}
	if q.layout.Layout == store.LayoutRoles {
		// MLflow reads role_permissions only; the legacy tables, and
		// mlflow-oidc-auth's, are not consulted.
		for _, k := range kinds {
			q.Grants[k.kind] = rolesGrantsSQL(s, k.kind)
		}
		q.promptKnown = s.Tracking && s.Tables["registered_model_tags"]
		// list_accessible_workspace_names: being assigned any role of a
		// workspace makes it visible, whatever the role grants.
		q.visibility = map[store.Lookup]string{
			store.VisibleWorkspaces: `SELECT DISTINCT r.workspace FROM roles r
	JOIN user_role_assignments a ON a.role_id = r.id JOIN users u ON u.id = a.user_id
	WHERE u.username = $1`,
			store.WorkspacesOfRole: `SELECT DISTINCT workspace FROM roles
	WHERE name = $1 AND name NOT LIKE '\_\_user\_%' ESCAPE '\'`,
		}
		return q
	}
	have := func(t string) bool { return t != "" && s.Tables[t] }
	if have("workspace_permissions") {
		// list_accessible_workspace_names at 3.10: the rows that can_read.
		q.visibility = map[store.Lookup]string{store.VisibleWorkspaces: `SELECT DISTINCT wp.workspace FROM workspace_permissions wp
	JOIN users u ON u.id = wp.user_id
	WHERE u.username = $1 AND wp.permission IN ('READ', 'USE', 'EDIT', 'MANAGE')`}
	}
	for _, k := range kinds {
		on := func(alias string) string {
			c := alias + "." + k.idCol + " = $2"
			if k.nameCol != "" {
				c += " AND " + alias + "." + k.nameCol + " = $3"
			}
			return c
		}
		cond, gcond := on("p"), on("g")
		// The workspace is bound after the id, the scorer's name, or the
		// experiment's integer id (GrantArgs).
		nargs := 2
		if k.nameCol != "" || (k.kind == store.Experiment && s.Tracking && have("experiments")) {
			nargs = 3
		}
		ws := "$" + strconv.Itoa(nargs+1)
		if k.scope != "" && s.ModelWorkspace {
			cond += " AND p." + k.scope + " = " + ws
			// The group tables key registered models by name alone, with
			// no workspace: a name means default's model, never a model
			// of the same name in another workspace.
			gcond += " AND " + ws + " = '" + DefaultWorkspace + "'"
			q.workspaceArg[k.kind] = true
		}
		sql := `WITH u AS (SELECT id, is_admin FROM users WHERE username = $1)
SELECT 0, '', COALESCE(u.is_admin, false), CAST(NULL AS TEXT), '', '' FROM u
UNION ALL
SELECT 1, '', false, p.permission, '', '' FROM ` + k.table + ` p JOIN u ON p.user_id = u.id WHERE ` + cond
		if have("workspace_permissions") {
			// MLflow 3.10's workspace-wide grant of the user
			// (SqlAlchemyStore.get_workspace_permission); only a policy with
			// workspaces on applies it.
			sql += `
UNION ALL
SELECT ` + strconv.Itoa(WorkspaceRow) + `, '', false, wp.permission, '', '' FROM workspace_permissions wp JOIN u ON wp.user_id = u.id WHERE wp.workspace = ` + ws
			q.workspaceArg[k.kind] = true
		}
		for _, gt := range []string{k.groupTable, k.compatGroupTable} {
			if have(gt) && have("groups") {
				sql += `
UNION ALL
SELECT 2, gr.group_name, false, g.permission, '', '' FROM ` + gt + ` g JOIN groups gr ON gr.id = g.group_id WHERE ` + gcond
			}
		}
		if k.kind == store.Experiment && s.Tracking && have("experiments") {
			// One round trip for the grants and the name that
			// mlflow-oidc-auth's regex rows match.
			sql += `
UNION ALL
SELECT 3, e.name, false, CAST(NULL AS TEXT), '', '' FROM experiments e WHERE e.experiment_id = $3`
			q.experimentName = true
		}
		q.Grants[k.kind] = sql

		var userPart, groupPart string
		scope := ""
		if k.regexScope != "" {
			scope = " AND r." + k.regexScope
		}
		if have(k.regexTable) {
			userPart = fmt.Sprintf(`SELECT %d, '', r.id, r.regex, r.priority, r.permission FROM %s r
	JOIN users u ON u.id = r.user_id WHERE u.username = $1%s`, UserPattern, k.regexTable, scope)
		}
		if have(k.groupRegexTable) && have("groups") {
			groupPart = fmt.Sprintf(`SELECT %d, gr.group_name, r.id, r.regex, r.priority, r.permission FROM %s r
	JOIN groups gr ON gr.id = r.group_id WHERE gr.group_name IN (%s)%s`, GroupPattern, k.groupRegexTable, groupsIn[d], scope)
		}
		switch {
		case userPart == "" && groupPart == "":
			continue
		case groupPart == "":
			// Both arguments must appear in the SQL, or PostgreSQL cannot
			// type the missing one.
			sql = userPart + " AND CAST($2 AS TEXT) IS NOT NULL"
		case userPart == "":
			sql = groupPart + " AND CAST($1 AS TEXT) IS NOT NULL"
		default:
			sql = userPart + "\nUNION ALL\n" + groupPart
		}
		q.Patterns[k.kind] = sql + "\nORDER BY 1, 5, 3"
	}
	return q
}

// GrantArgs are the arguments of the Grants query for res: (username, id),
// then a scorer's name, or an experiment's canonical integer id (NULL when
// the id is not one) when the query reads its name, then res's workspace
// when the query reads rows per workspace (always in the roles layout).
func (q Queries) GrantArgs(username string, res store.Resource) []any {
	if q.layout.Layout == store.LayoutRoles {
		return []any{username, RoleKey(res), res.WorkspaceOf()}
	}
	args := []any{username, res.ID}
	switch {
	case res.Kind == store.Scorer:
		args = append(args, res.Name)
	case res.Kind == store.Experiment && q.experimentName:
		var id any
		if n, ok := CanonicalExperimentID(res.ID); ok {
			id = int64(n)
		}
		args = append(args, id)
	}
	if q.workspaceArg[res.Kind] {
		args = append(args, res.WorkspaceOf())
	}
	return args
}

// GrantArgTypes are the SQL types of GrantArgs(…, res) for a resource of
// kind k, in order: "text", or "bigint" for an experiment's canonical id
// (which may be NULL). A reader that binds many keys' arguments as arrays
// needs them, since a column of NULLs has no type of its own. They are read
// off GrantArgs itself, for a resource whose every argument has a value (an
// integer id), so the two cannot disagree.
func (q Queries) GrantArgTypes(k store.ResourceKind) []string {
	args := q.GrantArgs("", store.Resource{Kind: k, ID: "1", Name: "n"})
	types := make([]string, len(args))
	for i, a := range args {
		if _, ok := a.(int64); ok {
			types[i] = "bigint"
		} else {
			types[i] = "text"
		}
	}
	return types
}

// groupsIn expands the JSON array of group names bound as $2.
var groupsIn = map[store.Dialect]string{
	store.PostgreSQL: `SELECT json_array_elements_text(CAST($2 AS json))`,
	store.SQLite:     `SELECT value FROM json_each($2)`,
}

// GroupsArg is the argument a Patterns query takes for groups: a JSON
// array with each name both as the identity carries it and with
// Keycloak's leading "/", the two forms mlflow-oidc-auth's groups table
// may hold (see NormalizeGroup).
func GroupsArg(groups []string) string {
	names := make([]string, 0, 2*len(groups))
	for _, g := range groups {
		g = NormalizeGroup(g)
		names = append(names, g, "/"+g)
	}
	b, _ := json.Marshal(names)
	return string(b)
}

// AddPattern folds one row of a Patterns query into p; the query's order
// is kept.
func AddPattern(p *store.Patterns, kind int, group string, id int64, regex string, priority int64, perm *string) {
	row := store.PatternGrant{ID: id, Group: group, Regex: regex, Priority: priority, Grant: ParseGrant(perm)}
	if kind == UserPattern {
		p.User = append(p.User, row)
		return
	}
	p.Groups = append(p.Groups, row)
}
