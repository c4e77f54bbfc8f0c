package mlflowdb

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Tx is one transaction of a backend, as the shared Admin logic below uses
// it. The SQL it is given is portable: "$1" placeholders, false and true,
// RETURNING and subqueries run as is on PostgreSQL and SQLite (3.35+).
// Backends serialize write transactions (an advisory lock, BEGIN
// IMMEDIATE), so the read-then-write steps below do not race each other.
type Tx interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	// Query runs a query. Scan must accept **string, **bool and *int64.
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	// Tables returns the names of the tables of the auth database.
	Tables(ctx context.Context) (map[string]bool, error)
	// Dialect is the backend's SQL dialect.
	Dialect() store.Dialect
}

// Rows is the part of pgx.Rows and *sql.Rows that Tx.Query returns.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// kindSpec says where the rows of one resource kind live.
type kindSpec struct {
	kind    store.ResourceKind
	table   string // per-user rows
	idCol   string // resource id column (also in the group table)
	nameCol string // scorer name column, "" for other kinds
	// scope restricts the user table's rows to the ones mlflow-authz reads
	// (registered models: workspace 'default'); insertCol and insertVal
	// are written on insert to match it.
	scope, insertCol, insertVal string
	// groupTable holds mlflow-oidc-auth's group rows, "" when the kind has
	// none; groupInsertCol and groupInsertVal are written on insert.
	groupTable, groupInsertCol, groupInsertVal string

	// The rest is mlflow-oidc-auth's layout, read (never written) when its
	// tables exist. compatGroupTable holds group rows that only
	// mlflow.compat: oidc-auth applies (its scorer group table).
	compatGroupTable string
	// regexTable and groupRegexTable hold its regex and group-regex rows
	// (regex, priority, permission); regexScope restricts both to the rows
	// its resolver reads for the kind.
	regexTable, groupRegexTable, regexScope string
}

// kinds in ListGrants order (the order of store.ResourceKind's constants).
// The table names of mlflow-oidc-auth's layout are those of its alembic
// migrations (mlflow_oidc_auth/db/migrations/versions, revisions
// 1ddf23934b63, 3c3272527ade and 6a7b8c9def01).
var kinds = []kindSpec{
	{kind: store.Experiment, table: "experiment_permissions", idCol: "experiment_id",
		groupTable: "experiment_group_permissions",
		regexTable: "experiment_regex_permissions", groupRegexTable: "experiment_group_regex_permissions"},
	{kind: store.RegisteredModel, table: "registered_model_permissions", idCol: "name",
		scope: "workspace = 'default'", insertCol: "workspace", insertVal: "'default'",
		// The prompt flag only sorts rows for mlflow-oidc-auth's listings;
		// the grant is by name either way, so a new row says false.
		groupTable: "registered_model_group_permissions", groupInsertCol: "prompt", groupInsertVal: "false",
		// Prompts are registered models. Its request validators resolve
		// every registered-model request, prompts included, with the
		// prompt = false regex rows (utils/permissions.py
		// _build_registered_model_sources); the prompt = true rows serve
		// only its admin UI's listings.
		regexTable: "registered_model_regex_permissions", groupRegexTable: "registered_model_group_regex_permissions",
		regexScope: "prompt = false"},
	{kind: store.Scorer, table: "scorer_permissions", idCol: "experiment_id", nameCol: "scorer_name",
		regexTable: "scorer_regex_permissions", groupRegexTable: "scorer_group_regex_permissions",
		compatGroupTable: "scorer_group_permissions"},
	// Its gateway group rows are never applied: its resolver passes the
	// username where the group name belongs
	// (sqlalchemy_store.get_user_groups_gateway_*_permission), so they are
	// not read here either.
	{kind: store.GatewaySecret, table: "gateway_secret_permissions", idCol: "secret_id",
		regexTable: "gateway_secret_regex_permissions", groupRegexTable: "gateway_secret_group_regex_permissions"},
	{kind: store.GatewayEndpoint, table: "gateway_endpoint_permissions", idCol: "endpoint_id",
		regexTable: "gateway_endpoint_regex_permissions", groupRegexTable: "gateway_endpoint_group_regex_permissions"},
	{kind: store.GatewayModelDefinition, table: "gateway_model_definition_permissions", idCol: "model_definition_id",
		regexTable: "gateway_model_definition_regex_permissions", groupRegexTable: "gateway_model_definition_group_regex_permissions"},
}

// scoped returns spec as the auth database holds its rows: without the
// workspace scope when registered_model_permissions has no workspace column
// (MLflow before 3.10, and mlflow-oidc-auth's layout), where every row is
// in the one default workspace.
func scoped(ctx context.Context, tx Tx, spec kindSpec) (kindSpec, error) {
	if spec.scope == "" {
		return spec, nil
	}
	var exists, ws bool
	if _, err := queryOne(ctx, tx, WorkspaceSQL[tx.Dialect()], []any{spec.table}, &exists, &ws); err != nil {
		return spec, err
	}
	if !ws {
		spec.scope, spec.insertCol, spec.insertVal = "", "", ""
	}
	return spec, nil
}

func specOf(k store.ResourceKind) (kindSpec, int, bool) {
	for i, s := range kinds {
		if s.kind == k {
			return s, i, true
		}
	}
	return kindSpec{}, 0, false
}

// userRefTables reference users.id through user_id. MLflow's foreign keys
// have no ON DELETE, so DeleteUser removes these rows first. Only those
// that exist are touched (workspace_permissions and the RBAC and
// mlflow-oidc-auth tables depend on the version and the plugin).
var userRefTables = []string{
	"experiment_permissions", "registered_model_permissions", "scorer_permissions",
	"gateway_secret_permissions", "gateway_endpoint_permissions", "gateway_model_definition_permissions",
	"workspace_permissions", "user_role_assignments", "user_groups",
}

// groupRefTables reference groups.id through group_id.
var groupRefTables = []string{"experiment_group_permissions", "registered_model_group_permissions", "user_groups"}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{store.ErrInvalid}, args...)...)
}

func validPermission(p store.Permission) error {
	if _, ok := store.ParsePermission(p.String()); !ok {
		return invalid("permission %d is not one of MLflow's five levels", int(p))
	}
	return nil
}

// checkGrantee validates g and, for a group, that r's kind has group rows
// and that the group tables exist.
func checkGrantee(ctx context.Context, tx Tx, g store.Grantee, spec kindSpec) error {
	if (g.User == "") == (g.Group == "") {
		return invalid("a grantee is exactly one of a user and a group")
	}
	if g.Group == "" {
		return nil
	}
	if spec.groupTable == "" {
		return store.ErrGroupKind
	}
	return requireGroupTables(ctx, tx, spec.groupTable)
}

func requireGroupTables(ctx context.Context, tx Tx, tables ...string) error {
	have, err := tx.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range append(tables, "groups") {
		if !have[t] {
			return fmt.Errorf("%w (table %s is missing)", store.ErrNoGroupTables, t)
		}
	}
	return nil
}

func checkResource(r store.Resource) (kindSpec, error) {
	spec, _, ok := specOf(r.Kind)
	if !ok {
		return spec, invalid("unknown resource kind %q", r.Kind)
	}
	if r.ID == "" {
		return spec, invalid("empty %s id", r.Kind)
	}
	if (spec.nameCol != "") != (r.Name != "") {
		return spec, invalid("a %s resource needs a name exactly when it is a scorer", r.Kind)
	}
	return spec, nil
}

// target is where g's rows on r live: table, row condition and its args.
type target struct {
	table, subjCol, cond string
	args                 []any
	insertCol, insertVal string
}

// targetOf returns the rows of r for subject id subj (a users.id or a
// groups.id, bound as the last argument).
func targetOf(spec kindSpec, group bool, r store.Resource, subj int64) target {
	t := target{table: spec.table, subjCol: "user_id", insertCol: spec.insertCol, insertVal: spec.insertVal}
	if group {
		t = target{table: spec.groupTable, subjCol: "group_id", insertCol: spec.groupInsertCol, insertVal: spec.groupInsertVal}
	}
	t.cond, t.args = resourceCond(spec, group, r)
	t.args = append(t.args, subj)
	t.cond += fmt.Sprintf(" AND %s = $%d", t.subjCol, len(t.args))
	return t
}

// resourceCond matches every row on r in the user (or group) table.
func resourceCond(spec kindSpec, group bool, r store.Resource) (string, []any) {
	cond, args := spec.idCol+" = $1", []any{r.ID}
	if spec.nameCol != "" {
		cond += " AND " + spec.nameCol + " = $2"
		args = append(args, r.Name)
	}
	if spec.scope != "" && !group {
		cond += " AND " + spec.scope
	}
	return cond, args
}

// subject returns the users.id or groups.id of g; found is false when
// there is no row and create is false.
func subject(ctx context.Context, tx Tx, g store.Grantee, create bool) (id int64, found bool, err error) {
	sel, ins, name := `SELECT id FROM users WHERE username = $1`,
		`INSERT INTO users (username, password_hash, is_admin) VALUES ($1, NULL, false) RETURNING id`, g.User
	if g.Group != "" {
		sel, ins, name = `SELECT id FROM groups WHERE group_name = $1`,
			`INSERT INTO groups (group_name) VALUES ($1) RETURNING id`, g.Group
	}
	found, err = queryOne(ctx, tx, sel, []any{name}, &id)
	if err != nil || found || !create {
		return id, found, err
	}
	found, err = queryOne(ctx, tx, ins, []any{name}, &id)
	if err == nil && !found {
		err = fmt.Errorf("insert of %q returned no id", name)
	}
	return id, found, err
}

func queryOne(ctx context.Context, tx Tx, q string, args []any, dest ...any) (bool, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	if err := rows.Scan(dest...); err != nil {
		return false, err
	}
	return true, rows.Err()
}

// permissions returns the permission column of t's rows (oldest first; a
// table without a unique key, registered_model_group_permissions, may hold
// several). NULL reads as "".
func permissions(ctx context.Context, tx Tx, t target) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT permission FROM `+t.table+` WHERE `+t.cond+` ORDER BY id`, t.args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p *string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, deref(p))
	}
	return out, rows.Err()
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// SetGrant implements store.Admin.SetGrant in tx.
func SetGrant(ctx context.Context, tx Tx, g store.Grantee, r store.Resource, p store.Permission) (*store.GrantRow, bool, error) {
	spec, err := checkResource(r)
	if err == nil {
		spec, err = scoped(ctx, tx, spec)
	}
	if err != nil {
		return nil, false, err
	}
	if (r.Kind == store.Experiment || r.Kind == store.Scorer) && !canonical(r.ID) {
		// A row keyed "007" would never match experiment 7's requests.
		return nil, false, invalid("experiment id %q is not canonical", r.ID)
	}
	if err := validPermission(p); err != nil {
		return nil, false, err
	}
	if err := checkGrantee(ctx, tx, g, spec); err != nil {
		return nil, false, err
	}
	subj, _, err := subject(ctx, tx, g, true)
	if err != nil {
		return nil, false, err
	}
	t := targetOf(spec, g.Group != "", r, subj)
	prev, err := permissions(ctx, tx, t)
	if err != nil {
		return nil, false, err
	}
	want := p.String()
	if len(prev) == 0 {
		cols := spec.idCol
		if spec.nameCol != "" {
			cols += ", " + spec.nameCol
		}
		args := append(t.args[:len(t.args):len(t.args)], want)
		ph := ""
		for i := range args {
			if i > 0 {
				ph += ", "
			}
			ph += fmt.Sprintf("$%d", i+1)
		}
		cols += ", " + t.subjCol + ", permission"
		if t.insertCol != "" {
			cols += ", " + t.insertCol
			ph += ", " + t.insertVal
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+t.table+` (`+cols+`) VALUES (`+ph+`)`, args...)
		return nil, err == nil, err
	}
	before := &store.GrantRow{Grantee: g, Resource: r, Permission: prev[0]}
	if !slices.ContainsFunc(prev, func(s string) bool { return s != want }) {
		return before, false, nil
	}
	args := append(t.args[:len(t.args):len(t.args)], want)
	_, err = tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET permission = $%d WHERE %s`, t.table, len(args), t.cond), args...)
	return before, err == nil, err
}

func canonical(id string) bool {
	_, ok := CanonicalExperimentID(id)
	return ok
}

// DeleteGrant implements store.Admin.DeleteGrant in tx.
func DeleteGrant(ctx context.Context, tx Tx, g store.Grantee, r store.Resource) (*store.GrantRow, bool, error) {
	spec, err := checkResource(r)
	if err == nil {
		spec, err = scoped(ctx, tx, spec)
	}
	if err != nil {
		return nil, false, err
	}
	if err := checkGrantee(ctx, tx, g, spec); err != nil {
		return nil, false, err
	}
	subj, found, err := subject(ctx, tx, g, false)
	if err != nil || !found {
		return nil, false, err
	}
	t := targetOf(spec, g.Group != "", r, subj)
	prev, err := permissions(ctx, tx, t)
	if err != nil || len(prev) == 0 {
		return nil, false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+t.table+` WHERE `+t.cond, t.args...); err != nil {
		return nil, false, err
	}
	return &store.GrantRow{Grantee: g, Resource: r, Permission: prev[0]}, true, nil
}

// CreateUser implements store.Admin.CreateUser in tx. The password hash
// is NULL: MLflow's basic auth can never log such a user in, and
// mlflow-authz authenticates with Keycloak or SPIFFE.
func CreateUser(ctx context.Context, tx Tx, username string, admin bool) (bool, error) {
	if username == "" {
		return false, invalid("empty username")
	}
	_, found, err := subject(ctx, tx, store.Grantee{User: username}, false)
	if err != nil || found {
		return false, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO users (username, password_hash, is_admin) VALUES ($1, NULL, $2)`, username, admin)
	return err == nil, err
}

// DeleteUser implements store.Admin.DeleteUser in tx.
func DeleteUser(ctx context.Context, tx Tx, username string) error {
	id, found, err := subject(ctx, tx, store.Grantee{User: username}, false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("user %q: %w", username, store.ErrNotFound)
	}
	return deleteSubject(ctx, tx, "users", "user_id", userRefTables, id)
}

func deleteSubject(ctx context.Context, tx Tx, table, col string, refs []string, id int64) error {
	have, err := tx.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range refs {
		if have[t] {
			if _, err := tx.Exec(ctx, `DELETE FROM `+t+` WHERE `+col+` = $1`, id); err != nil {
				return fmt.Errorf("delete from %s: %w", t, err)
			}
		}
	}
	_, err = tx.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1`, id)
	return err
}

// SetAdmin implements store.Admin.SetAdmin in tx. A missing user is
// ErrNotFound rather than created: making a mistyped name an admin should
// not pass silently. A NULL is_admin counts as false.
func SetAdmin(ctx context.Context, tx Tx, username string, admin bool) (bool, error) {
	var cur *bool
	found, err := queryOne(ctx, tx, `SELECT is_admin FROM users WHERE username = $1`, []any{username}, &cur)
	if err != nil {
		return false, err
	}
	if !found {
		return false, fmt.Errorf("user %q: %w", username, store.ErrNotFound)
	}
	if (cur != nil && *cur) == admin {
		return false, nil
	}
	_, err = tx.Exec(ctx, `UPDATE users SET is_admin = $1 WHERE username = $2`, admin, username)
	return err == nil, err
}

// ListUsers implements store.Admin.ListUsers in tx, sorted by username
// (bytewise, the same on both backends whatever the collation).
func ListUsers(ctx context.Context, tx Tx) ([]store.UserRow, error) {
	rows, err := tx.Query(ctx, `SELECT username, is_admin FROM users WHERE username IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.UserRow
	for rows.Next() {
		var (
			name  string
			admin *bool
		)
		if err := rows.Scan(&name, &admin); err != nil {
			return nil, err
		}
		out = append(out, store.UserRow{Username: name, Admin: admin != nil && *admin})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.UserRow) int { return cmp.Compare(a.Username, b.Username) })
	return out, nil
}

// CreateGroup implements store.Admin.CreateGroup in tx. The name is
// written as given: "/team" and "team" are two rows, which Grants reads as
// one group (NormalizeGroup), the weaker row winning.
func CreateGroup(ctx context.Context, tx Tx, name string) (bool, error) {
	if name == "" {
		return false, invalid("empty group name")
	}
	if err := requireGroupTables(ctx, tx); err != nil {
		return false, err
	}
	_, found, err := subject(ctx, tx, store.Grantee{Group: name}, false)
	if err != nil || found {
		return false, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO groups (group_name) VALUES ($1)`, name)
	return err == nil, err
}

// DeleteGroup implements store.Admin.DeleteGroup in tx.
func DeleteGroup(ctx context.Context, tx Tx, name string) error {
	if err := requireGroupTables(ctx, tx); err != nil {
		return err
	}
	id, found, err := subject(ctx, tx, store.Grantee{Group: name}, false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("group %q: %w", name, store.ErrNotFound)
	}
	return deleteSubject(ctx, tx, "groups", "group_id", groupRefTables, id)
}

// ListGroups implements store.Admin.ListGroups in tx, sorted bytewise.
// Without group tables there are no groups.
func ListGroups(ctx context.Context, tx Tx) ([]string, error) {
	have, err := tx.Tables(ctx)
	if err != nil || !have["groups"] {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT group_name FROM groups`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// ListGrants implements store.Admin.ListGrants in tx: user rows (only
// workspace 'default' for registered models, as Grants reads them) and
// group rows when the group tables exist (mlflow-oidc-auth's scorer group
// rows too, which only its resolution applies), ordered by kind (in the order of
// store.ResourceKind's constants), id, name, users before groups, grantee
// name, all compared bytewise so both backends agree.
func ListGrants(ctx context.Context, tx Tx, f store.GrantFilter) ([]store.GrantRow, error) {
	if f.Kind != "" {
		if _, _, ok := specOf(f.Kind); !ok {
			return nil, invalid("unknown resource kind %q", f.Kind)
		}
	}
	if f.User != "" && f.Group != "" {
		return nil, nil // no row is both
	}
	have, err := tx.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.GrantRow
	for _, spec := range kinds {
		if f.Kind != "" && f.Kind != spec.kind {
			continue
		}
		if spec, err = scoped(ctx, tx, spec); err != nil {
			return nil, err
		}
		if f.Group == "" {
			rows, err := listRows(ctx, tx, spec, false, f.ID, f.User)
			if err != nil {
				return nil, err
			}
			out = append(out, rows...)
		}
		for _, gt := range []string{spec.groupTable, spec.compatGroupTable} {
			if f.User == "" && gt != "" && have["groups"] && have[gt] {
				gs := spec
				gs.groupTable = gt
				rows, err := listRows(ctx, tx, gs, true, f.ID, f.Group)
				if err != nil {
					return nil, err
				}
				out = append(out, rows...)
			}
		}
	}
	slices.SortFunc(out, compareRows)
	return out, nil
}

// ListPatterns implements store.Admin.ListPatterns in tx: per kind (in the
// order of store.ResourceKind's constants), the user's regex rows, then the
// groups' group-regex rows, each by priority and id.
func ListPatterns(ctx context.Context, tx Tx, f store.GrantFilter) ([]store.PatternRow, error) {
	if f.Kind != "" {
		if _, _, ok := specOf(f.Kind); !ok {
			return nil, invalid("unknown resource kind %q", f.Kind)
		}
	}
	if f.User != "" && f.Group != "" {
		return nil, nil
	}
	have, err := tx.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.PatternRow
	for _, spec := range kinds {
		if f.Kind != "" && f.Kind != spec.kind {
			continue
		}
		for _, part := range []struct {
			table, who, join, col, grantee string
			group                          bool
		}{
			{spec.regexTable, "users", "r.user_id", "username", f.User, false},
			{spec.groupRegexTable, "groups", "r.group_id", "group_name", f.Group, true},
		} {
			if !have[part.table] || !have[part.who] || (part.group && f.User != "") || (!part.group && f.Group != "") {
				continue
			}
			q := `SELECT r.id, w.` + part.col + `, r.regex, r.priority, r.permission FROM ` + part.table +
				` r JOIN ` + part.who + ` w ON w.id = ` + part.join + ` WHERE 1 = 1`
			if spec.regexScope != "" {
				q += ` AND r.` + spec.regexScope
			}
			var args []any
			if part.grantee != "" {
				q += fmt.Sprintf(` AND `+nameIs("w."+part.col, part.group), 1)
				args = append(args, part.grantee)
			}
			rows, err := tx.Query(ctx, q+` ORDER BY r.priority, r.id`, args...)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var (
					row  store.PatternRow
					name string
					perm *string
				)
				if err := rows.Scan(&row.ID, &name, &row.Regex, &row.Priority, &perm); err != nil {
					rows.Close()
					return nil, err
				}
				row.Kind, row.Permission = spec.kind, deref(perm)
				if part.group {
					row.Grantee.Group = name
				} else {
					row.Grantee.User = name
				}
				out = append(out, row)
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// nameIs is the condition that col names the grantee bound as $%d: a group
// also under Keycloak's full-path form, "/name", which mlflow-oidc-auth's
// groups table often holds (see NormalizeGroup).
func nameIs(col string, group bool) string {
	if group {
		return "(" + col + " = $%[1]d OR " + col + " = '/' || $%[1]d)"
	}
	return col + " = $%d"
}

func listRows(ctx context.Context, tx Tx, spec kindSpec, group bool, id, grantee string) ([]store.GrantRow, error) {
	name := "''"
	if spec.nameCol != "" {
		name = "p." + spec.nameCol
	}
	q := `SELECT p.` + spec.idCol + `, ` + name + `, u.username, p.permission FROM ` + spec.table +
		` p JOIN users u ON u.id = p.user_id WHERE 1 = 1`
	if group {
		q = `SELECT p.` + spec.idCol + `, ` + name + `, u.group_name, p.permission FROM ` + spec.groupTable +
			` p JOIN groups u ON u.id = p.group_id WHERE 1 = 1`
	} else if spec.scope != "" {
		q += ` AND p.` + spec.scope
	}
	var args []any
	if id != "" {
		args = append(args, id)
		q += fmt.Sprintf(` AND p.%s = $%d`, spec.idCol, len(args))
	}
	if grantee != "" {
		args = append(args, grantee)
		col := "username"
		if group {
			col = "group_name"
		}
		q += fmt.Sprintf(` AND `+nameIs("u."+col, group), len(args))
	}
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.GrantRow
	for rows.Next() {
		var (
			rid, rname string
			who, perm  *string
		)
		if err := rows.Scan(&rid, &rname, &who, &perm); err != nil {
			return nil, err
		}
		row := store.GrantRow{Resource: store.Resource{Kind: spec.kind, ID: rid, Name: rname}, Permission: deref(perm)}
		if group {
			row.Grantee.Group = deref(who)
		} else {
			row.Grantee.User = deref(who)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func compareRows(a, b store.GrantRow) int {
	_, ka, _ := specOf(a.Resource.Kind)
	_, kb, _ := specOf(b.Resource.Kind)
	isGroup := func(r store.GrantRow) int {
		if r.Grantee.Group != "" {
			return 1
		}
		return 0
	}
	return cmp.Or(
		cmp.Compare(ka, kb),
		cmp.Compare(a.Resource.ID, b.Resource.ID),
		cmp.Compare(a.Resource.Name, b.Resource.Name),
		cmp.Compare(isGroup(a), isGroup(b)),
		cmp.Compare(a.Grantee.User+a.Grantee.Group, b.Grantee.User+b.Grantee.Group),
		cmp.Compare(a.Permission, b.Permission),
	)
}

// RenameRegisteredModel implements store.Admin.RenameRegisteredModel in
// tx, for workspace 'default'. When from's rows meet rows already under
// to (stale rows of a deleted model of that name), a user's or group's
// existing to row is kept and its from row is dropped: the unique key
// (workspace, name, user_id) forbids both, and keeping the row that was
// already in force under the name to never widens access on to.
func RenameRegisteredModel(ctx context.Context, tx Tx, from, to string) error {
	if from == "" || to == "" {
		return invalid("empty registered model name")
	}
	if from == to {
		return nil
	}
	spec, _, _ := specOf(store.RegisteredModel)
	spec, err := scoped(ctx, tx, spec)
	if err != nil {
		return err
	}
	scope := ""
	if spec.scope != "" {
		scope = spec.scope + " AND "
	}
	stmts := []string{
		`DELETE FROM registered_model_permissions WHERE ` + scope + `name = $1 AND user_id IN
			(SELECT user_id FROM registered_model_permissions WHERE ` + scope + `name = $2)`,
		`UPDATE registered_model_permissions SET name = $2 WHERE ` + scope + `name = $1`,
	}
	have, err := tx.Tables(ctx)
	if err != nil {
		return err
	}
	if have["groups"] && have["registered_model_group_permissions"] {
		stmts = append(stmts,
			`DELETE FROM registered_model_group_permissions WHERE name = $1 AND group_id IN
			(SELECT group_id FROM registered_model_group_permissions WHERE name = $2)`,
			`UPDATE registered_model_group_permissions SET name = $2 WHERE name = $1`)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s, from, to); err != nil {
			return err
		}
	}
	return nil
}

// DeleteResourceGrants implements store.Admin.DeleteResourceGrants in tx:
// the user rows on r (workspace 'default' for registered models) and, for
// experiments and registered models, the group rows. A scorer is one
// (experiment id, name); an experiment's scorer rows are not touched.
func DeleteResourceGrants(ctx context.Context, tx Tx, r store.Resource) error {
	spec, err := checkResource(r)
	if err == nil {
		spec, err = scoped(ctx, tx, spec)
	}
	if err != nil {
		return err
	}
	cond, args := resourceCond(spec, false, r)
	if _, err := tx.Exec(ctx, `DELETE FROM `+spec.table+` WHERE `+cond, args...); err != nil {
		return err
	}
	if spec.groupTable == "" {
		return nil
	}
	have, err := tx.Tables(ctx)
	if err != nil || !have[spec.groupTable] {
		return err
	}
	cond, args = resourceCond(spec, true, r)
	_, err = tx.Exec(ctx, `DELETE FROM `+spec.groupTable+` WHERE `+cond, args...)
	return err
}

// Writer implements the write half of store.Admin once for every backend,
// on top of the backend's transaction runner: Run executes fn in one
// transaction (serialized with other writes when write is true) and maps
// the backend's errors, naming op.
type Writer struct {
	Run func(ctx context.Context, op string, write bool, fn func(Tx) error) error
}

// CreateUser implements store.Admin.
func (w Writer) CreateUser(ctx context.Context, username string, admin bool) (created bool, err error) {
	err = w.Run(ctx, "create user", true, func(tx Tx) error {
		created, err = CreateUser(ctx, tx, username, admin)
		return err
	})
	return created && err == nil, err
}

// DeleteUser implements store.Admin.
func (w Writer) DeleteUser(ctx context.Context, username string) error {
	return w.Run(ctx, "delete user", true, func(tx Tx) error { return DeleteUser(ctx, tx, username) })
}

// SetAdmin implements store.Admin.
func (w Writer) SetAdmin(ctx context.Context, username string, admin bool) (changed bool, err error) {
	err = w.Run(ctx, "set admin", true, func(tx Tx) error {
		changed, err = SetAdmin(ctx, tx, username, admin)
		return err
	})
	return changed && err == nil, err
}

// ListUsers implements store.Admin.
func (w Writer) ListUsers(ctx context.Context) (users []store.UserRow, err error) {
	err = w.Run(ctx, "list users", false, func(tx Tx) error {
		users, err = ListUsers(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return users, nil
}

// CreateGroup implements store.Admin.
func (w Writer) CreateGroup(ctx context.Context, name string) (created bool, err error) {
	err = w.Run(ctx, "create group", true, func(tx Tx) error {
		created, err = CreateGroup(ctx, tx, name)
		return err
	})
	return created && err == nil, err
}

// DeleteGroup implements store.Admin.
func (w Writer) DeleteGroup(ctx context.Context, name string) error {
	return w.Run(ctx, "delete group", true, func(tx Tx) error { return DeleteGroup(ctx, tx, name) })
}

// ListGroups implements store.Admin.
func (w Writer) ListGroups(ctx context.Context) (groups []string, err error) {
	err = w.Run(ctx, "list groups", false, func(tx Tx) error {
		groups, err = ListGroups(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return groups, nil
}

// SetGrant implements store.Admin.
func (w Writer) SetGrant(ctx context.Context, g store.Grantee, r store.Resource, p store.Permission) (before *store.GrantRow, changed bool, err error) {
	err = w.Run(ctx, "set grant", true, func(tx Tx) error {
		before, changed, err = SetGrant(ctx, tx, g, r, p)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return before, changed, nil
}

// DeleteGrant implements store.Admin.
func (w Writer) DeleteGrant(ctx context.Context, g store.Grantee, r store.Resource) (before *store.GrantRow, changed bool, err error) {
	err = w.Run(ctx, "delete grant", true, func(tx Tx) error {
		before, changed, err = DeleteGrant(ctx, tx, g, r)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return before, changed, nil
}

// ListPatterns implements store.Admin.
func (w Writer) ListPatterns(ctx context.Context, f store.GrantFilter) (rows []store.PatternRow, err error) {
	err = w.Run(ctx, "list patterns", false, func(tx Tx) error {
		rows, err = ListPatterns(ctx, tx, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// ListGrants implements store.Admin.
func (w Writer) ListGrants(ctx context.Context, f store.GrantFilter) (rows []store.GrantRow, err error) {
	err = w.Run(ctx, "list grants", false, func(tx Tx) error {
		rows, err = ListGrants(ctx, tx, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// RenameRegisteredModel implements store.Admin; see the package function
// for rows already under the new name.
func (w Writer) RenameRegisteredModel(ctx context.Context, from, to string) error {
	return w.Run(ctx, "rename registered model", true, func(tx Tx) error { return RenameRegisteredModel(ctx, tx, from, to) })
}

// DeleteResourceGrants implements store.Admin.
func (w Writer) DeleteResourceGrants(ctx context.Context, r store.Resource) error {
	return w.Run(ctx, "delete resource grants", true, func(tx Tx) error { return DeleteResourceGrants(ctx, tx, r) })
}
