package mlflowdb

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/mlflow-authz/mlflow-authz/store"
)

func validPermission(p store.Permission) error {
	if _, ok := store.ParsePermission(p.String()); !ok {
		return invalid("permission %d is not one of MLflow's five levels", int(p))
	}
	return nil
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
	if err := checkGroupWorkspace(spec, g, r); err != nil {
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
		// The columns in the order targetOf binds their values.
		cols := spec.idCol
		if spec.nameCol != "" {
			cols += ", " + spec.nameCol
		}
		if t.insertCol != "" && t.insertVal == "" {
			cols += ", " + t.insertCol // the workspace argument
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
		if t.insertVal != "" {
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

// groupRowsIn reports whether the group table of spec holds rows of
// workspace ws. It keys registered models by name alone, with no
// workspace column: its rows are default's (the Grants query reads them
// there only), never a same-named model's of another workspace.
func groupRowsIn(spec kindSpec, ws string) bool {
	return spec.scope == "" || ws == DefaultWorkspace
}

// checkGroupWorkspace refuses a group row that could not be kept in r's
// workspace (groupRowsIn).
func checkGroupWorkspace(spec kindSpec, g store.Grantee, r store.Resource) error {
	if g.Group == "" || groupRowsIn(spec, r.WorkspaceOf()) {
		return nil
	}
	return invalid("group rows on registered models have no workspace column and hold in workspace %q only; "+
		"in workspace %q grant to users, or use MLflow's roles layout, where a group names a role of the workspace", DefaultWorkspace, r.WorkspaceOf())
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
	if err := checkGroupWorkspace(spec, g, r); err != nil {
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

// ListGrants implements store.Admin.ListGrants in tx: user rows (only
// f's workspace for registered models, as Grants reads them) and
// group rows when the group tables exist (mlflow-oidc-auth's scorer group
// rows too, which only its resolution applies), ordered by kind (in the order of
// store.ResourceKind's constants), id, name, users before groups, grantee
// name, all compared bytewise so both backends agree.
func ListGrants(ctx context.Context, tx Tx, f store.GrantFilter) ([]store.GrantRow, error) {
	if empty, err := checkFilter(f); empty || err != nil {
		return nil, err
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
			rows, err := listRows(ctx, tx, spec, false, f.ID, f.User, store.Resource{Workspace: f.Workspace}.WorkspaceOf())
			if err != nil {
				return nil, err
			}
			out = append(out, rows...)
		}
		for _, gt := range []string{spec.groupTable, spec.compatGroupTable} {
			if f.User == "" && gt != "" && have["groups"] && have[gt] && groupRowsIn(spec, store.Resource{Workspace: f.Workspace}.WorkspaceOf()) {
				gs := spec
				gs.groupTable = gt
				rows, err := listRows(ctx, tx, gs, true, f.ID, f.Group, "")
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
	if empty, err := checkFilter(f); empty || err != nil {
		return nil, err
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

func listRows(ctx context.Context, tx Tx, spec kindSpec, group bool, id, grantee, workspace string) ([]store.GrantRow, error) {
	name := "''"
	if spec.nameCol != "" {
		name = "p." + spec.nameCol
	}
	q := `SELECT p.` + spec.idCol + `, ` + name + `, u.username, p.permission FROM ` + spec.table +
		` p JOIN users u ON u.id = p.user_id WHERE 1 = 1`
	if group {
		q = `SELECT p.` + spec.idCol + `, ` + name + `, u.group_name, p.permission FROM ` + spec.groupTable +
			` p JOIN groups u ON u.id = p.group_id WHERE 1 = 1`
	}
	var args []any
	if spec.scope != "" && !group {
		args = append(args, workspace)
		q += fmt.Sprintf(` AND p.%s = $%d`, spec.scope, len(args))
	}
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
		if spec.scope != "" && !group && workspace != store.DefaultWorkspace {
			row.Resource.Workspace = workspace
		}
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
// tx, in workspace ("" is the default one). When from's rows meet rows already under
// to (stale rows of a deleted model of that name), a user's or group's
// existing to row is kept and its from row is dropped: the unique key
// (workspace, name, user_id) forbids both, and keeping the row that was
// already in force under the name to never widens access on to.
func RenameRegisteredModel(ctx context.Context, tx Tx, workspace, from, to string) error {
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
		scope = spec.scope + " = $3 AND "
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
	if have["groups"] && have["registered_model_group_permissions"] && groupRowsIn(spec, store.Resource{Workspace: workspace}.WorkspaceOf()) {
		stmts = append(stmts,
			`DELETE FROM registered_model_group_permissions WHERE name = $1 AND group_id IN
			(SELECT group_id FROM registered_model_group_permissions WHERE name = $2)`,
			`UPDATE registered_model_group_permissions SET name = $2 WHERE name = $1`)
	}
	for i, s := range stmts {
		args := []any{from, to}
		if i < 2 && spec.scope != "" {
			args = append(args, store.Resource{Workspace: workspace}.WorkspaceOf())
		}
		if _, err := tx.Exec(ctx, s, args...); err != nil {
			return err
		}
	}
	return nil
}

// DeleteResourceGrants implements store.Admin.DeleteResourceGrants in tx:
// the user rows on r (in r's workspace for registered models) and, for
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
	if spec.groupTable == "" || !groupRowsIn(spec, r.WorkspaceOf()) {
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

// checkFilter validates f; empty says no row can match it (no row is both
// a user's and a group's).
func checkFilter(f store.GrantFilter) (empty bool, err error) {
	if f.Kind != "" {
		if _, _, ok := specOf(f.Kind); !ok {
			return true, invalid("unknown resource kind %q", f.Kind)
		}
	}
	return f.User != "" && f.Group != "", nil
}
