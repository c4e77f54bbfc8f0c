package mlflowdb

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Writes in the roles layout go where MLflow's newest auth store writes
// them (mlflow/server/auth/sqlalchemy_store.py): a user's grant to its
// synthetic role __user_<id>__ in the workspace (grant_user_permission,
// _get_or_create_synthetic_user_role), a group's grant to the role of the
// group's name, created when missing. Everything is in workspace
// 'default' while workspaces are off.

func checkRoleName(name string) error {
	if name == "" {
		return invalid("empty role name")
	}
	if strings.HasPrefix(name, SyntheticRolePrefix) {
		// MLflow reserves the prefix for the per-user roles
		// (_reject_synthetic_role_name): a role named so would receive, or
		// hand out, a user's own grants.
		return invalid("role name %q uses the reserved %q prefix", name, SyntheticRolePrefix)
	}
	return nil
}

// roleID returns the id of the role name in workspace ws; found is false
// when there is none and create is false.
func roleID(ctx context.Context, tx Tx, ws, name string, create bool) (id int64, found bool, err error) {
	found, err = queryOne(ctx, tx, `SELECT id FROM roles WHERE workspace = $1 AND name = $2`,
		[]any{ws, name}, &id)
	if err != nil || found || !create {
		return id, found, err
	}
	found, err = queryOne(ctx, tx, `INSERT INTO roles (name, workspace, description) VALUES ($1, $2, NULL) RETURNING id`,
		[]any{name, ws}, &id)
	if err == nil && !found {
		err = fmt.Errorf("insert of role %q returned no id", name)
	}
	return id, found, err
}

// granteeRole returns the role of workspace ws that holds g's grants: the
// user's synthetic role there (MLflow keeps one per user and workspace,
// assigned to it) or the role of the group's name.
func granteeRole(ctx context.Context, tx Tx, ws string, g store.Grantee, create bool) (int64, bool, error) {
	if (g.User == "") == (g.Group == "") {
		return 0, false, invalid("a grantee is exactly one of a user and a group")
	}
	if g.Group != "" {
		if err := checkRoleName(g.Group); err != nil {
			return 0, false, err
		}
		return roleID(ctx, tx, ws, g.Group, create)
	}
	uid, found, err := subject(ctx, tx, g, create)
	if err != nil || !found {
		return 0, false, err
	}
	rid, found, err := roleID(ctx, tx, ws, SyntheticRole(uid), create)
	if err != nil || !found {
		return 0, false, err
	}
	if create {
		var other int64
		taken, err := queryOne(ctx, tx, `SELECT user_id FROM user_role_assignments WHERE role_id = $1 AND user_id <> $2`,
			[]any{rid, uid}, &other)
		if err != nil {
			return 0, false, err
		}
		if taken {
			// A hand-made role that collides with the reserved name would
			// hand this user's grants to another (MLflow refuses too).
			return 0, false, invalid("role %q is assigned to another user", SyntheticRole(uid))
		}
		if err := assign(ctx, tx, uid, rid); err != nil {
			return 0, false, err
		}
	}
	return rid, true, nil
}

// assign adds the (user, role) assignment unless it exists; added says
// whether it did.
func assign(ctx context.Context, tx Tx, uid, rid int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO user_role_assignments (user_id, role_id)
		SELECT CAST($1 AS INTEGER), CAST($2 AS INTEGER) WHERE NOT EXISTS (SELECT 1 FROM user_role_assignments WHERE user_id = $1 AND role_id = $2)`, uid, rid)
	return err
}

// roleType is the resource_type a grant on r is written with: prompt for
// a registered model whose is_prompt tag says so, when the tracking
// tables are in this database (f1a2b3c4d5e6 classifies the same way).
func roleType(ctx context.Context, tx Tx, r store.Resource) (string, error) {
	if r.Kind != store.RegisteredModel {
		return string(r.Kind), nil
	}
	have, err := tx.Tables(ctx)
	if err != nil || !have["registered_model_tags"] {
		return string(r.Kind), err
	}
	q, args := `SELECT 1 FROM registered_model_tags
		WHERE name = $1 AND key = 'mlflow.prompt.is_prompt' AND LOWER(value) = 'true'`, []any{r.ID}
	var exists, ws bool
	if _, err := queryOne(ctx, tx, WorkspaceSQL[tx.Dialect()], []any{"registered_model_tags"}, &exists, &ws); err != nil {
		return "", err
	}
	if ws {
		q += ` AND workspace = $2`
		args = append(args, r.WorkspaceOf())
	}
	var one int64
	prompt, err := queryOne(ctx, tx, q, args, &one)
	if err != nil || !prompt {
		return string(r.Kind), err
	}
	return TypePrompt, nil
}

func rolePermission(ctx context.Context, tx Tx, rid int64, types []string, key string) (string, bool, error) {
	var perm string
	found, err := queryOne(ctx, tx, `SELECT permission FROM role_permissions
		WHERE role_id = $1 AND resource_pattern = $2 AND resource_type IN (`+quoteList(types)+`) ORDER BY id`,
		[]any{rid, key}, &perm)
	return perm, found, err
}

// checkRoleResource validates r for a roles-layout write; ID "*" is a
// grant on every resource of the kind, as MLflow's role API writes it.
func checkRoleResource(r store.Resource) error {
	if r.Kind == store.WholeWorkspace {
		return checkWholeWorkspace(r)
	}
	if r.ID == "*" {
		if _, _, ok := specOf(r.Kind); !ok {
			return invalid("unknown resource kind %q", r.Kind)
		}
		if r.Name != "" {
			return invalid("a wildcard grant names no scorer")
		}
		return nil
	}
	if _, err := checkResource(r); err != nil {
		return err
	}
	if (r.Kind == store.Experiment || r.Kind == store.Scorer) && !canonical(r.ID) {
		return invalid("experiment id %q is not canonical", r.ID)
	}
	return nil
}

// RolesSetGrant implements store.Admin.SetGrant in the roles layout.
// NO_PERMISSIONS is refused: MLflow's roles layout has no such grant (an
// absent grant and the default permission say it), and MLflow refuses it
// too (_validate_permission_for_resource_type).
func RolesSetGrant(ctx context.Context, tx Tx, g store.Grantee, r store.Resource, p store.Permission) (*store.GrantRow, bool, error) {
	if err := checkRoleResource(r); err != nil {
		return nil, false, err
	}
	if err := validPermission(p); err != nil {
		return nil, false, err
	}
	if p == store.NoPermissions {
		return nil, false, invalid("NO_PERMISSIONS cannot be granted in MLflow's roles layout; revoke the grant instead")
	}
	if r.Kind == store.WholeWorkspace && p != store.Use && p != store.Manage {
		// _validate_permission_for_resource_type: the workspace slot is a
		// member (USE) or its admin (MANAGE).
		return nil, false, invalid("a workspace-wide grant in MLflow's roles layout is USE (a member, who may create) or MANAGE (the workspace's admin), not %s", p)
	}
	rid, _, err := granteeRole(ctx, tx, r.WorkspaceOf(), g, true)
	if err != nil {
		return nil, false, err
	}
	key := RoleKey(r)
	prev, found, err := rolePermission(ctx, tx, rid, RoleTypes(r.Kind), key)
	if err != nil {
		return nil, false, err
	}
	want := p.String()
	if !found {
		rtype, err := roleType(ctx, tx, r)
		if err != nil {
			return nil, false, err
		}
		_, err = tx.Exec(ctx, `INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission) VALUES ($1, $2, $3, $4)`,
			rid, rtype, key, want)
		return nil, err == nil, err
	}
	before := &store.GrantRow{Grantee: g, Resource: r, Permission: prev}
	if prev == want {
		return before, false, nil
	}
	_, err = tx.Exec(ctx, `UPDATE role_permissions SET permission = $1
		WHERE role_id = $2 AND resource_pattern = $3 AND resource_type IN (`+quoteList(RoleTypes(r.Kind))+`)`, want, rid, key)
	return before, err == nil, err
}

// RolesDeleteGrant implements store.Admin.DeleteGrant in the roles layout.
func RolesDeleteGrant(ctx context.Context, tx Tx, g store.Grantee, r store.Resource) (*store.GrantRow, bool, error) {
	if err := checkRoleResource(r); err != nil {
		return nil, false, err
	}
	rid, found, err := granteeRole(ctx, tx, r.WorkspaceOf(), g, false)
	if err != nil || !found {
		return nil, false, err
	}
	key := RoleKey(r)
	prev, found, err := rolePermission(ctx, tx, rid, RoleTypes(r.Kind), key)
	if err != nil || !found {
		return nil, false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM role_permissions
		WHERE role_id = $1 AND resource_pattern = $2 AND resource_type IN (`+quoteList(RoleTypes(r.Kind))+`)`, rid, key); err != nil {
		return nil, false, err
	}
	return &store.GrantRow{Grantee: g, Resource: r, Permission: prev}, true, nil
}

// kindOfType maps a resource_type back to the kind it grants on.
func kindOfType(t string) (store.ResourceKind, bool) {
	if t == TypePrompt {
		return store.RegisteredModel, true
	}
	_, _, ok := specOf(store.ResourceKind(t))
	return store.ResourceKind(t), ok
}

// resourceOfPattern is the resource a pattern names ("*" is every one of
// its kind); a scorer's is split as list_scorer_permissions splits it.
func resourceOfPattern(k store.ResourceKind, pattern string) store.Resource {
	r := store.Resource{Kind: k, ID: pattern}
	if k == store.Scorer && pattern != "*" {
		id, name, _ := strings.Cut(pattern, "/")
		if n, err := url.PathUnescape(name); err == nil {
			name = n
		}
		r.ID, r.Name = id, name
	}
	return r
}

// RolesListGrants implements store.Admin.ListGrants in the roles layout:
// the grants of the synthetic roles as their users', those of the named
// roles as the groups' of the same name, on the kinds mlflow-authz knows
// (workspace-wide and sub-resource grants are shown by `roles show`).
func RolesListGrants(ctx context.Context, tx Tx, f store.GrantFilter) ([]store.GrantRow, error) {
	if empty, err := checkFilter(f); empty || err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT r.name, COALESCE(u.username, ''), rp.resource_type, rp.resource_pattern, rp.permission
		FROM role_permissions rp JOIN roles r ON r.id = rp.role_id
		LEFT JOIN user_role_assignments a ON a.role_id = r.id AND r.name LIKE '\_\_user\_%' ESCAPE '\'
		LEFT JOIN users u ON u.id = a.user_id
		WHERE r.workspace = $1`, store.Resource{Workspace: f.Workspace}.WorkspaceOf())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.GrantRow
	for rows.Next() {
		var (
			role, user, rtype, pattern string
			perm                       *string
		)
		if err := rows.Scan(&role, &user, &rtype, &pattern, &perm); err != nil {
			return nil, err
		}
		k, ok := kindOfType(rtype)
		if !ok || (f.Kind != "" && f.Kind != k) {
			continue
		}
		row := store.GrantRow{Resource: resourceOfPattern(k, pattern), Permission: deref(perm)}
		if f.Workspace != store.DefaultWorkspace {
			row.Resource.Workspace = f.Workspace
		}
		if strings.HasPrefix(role, SyntheticRolePrefix) {
			if user == "" || f.Group != "" || (f.User != "" && f.User != user) {
				continue
			}
			row.Grantee.User = user
		} else {
			if f.User != "" || (f.Group != "" && f.Group != role) {
				continue
			}
			row.Grantee.Group = role
		}
		if f.ID != "" && f.ID != row.Resource.ID {
			continue
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, compareRows)
	return out, nil
}

// syntheticRoles matches the synthetic roles of the workspace bound as
// placeholder ws.
func syntheticRoles(ws string) string {
	return `role_id IN (SELECT id FROM roles WHERE workspace = ` + ws + ` AND name LIKE '\_\_user\_%' ESCAPE '\')`
}

// RolesRenameRegisteredModel implements store.Admin.RenameRegisteredModel
// in the roles layout: the synthetic roles' grants follow the name
// (rename_grants_for_resource touches no named role). A role's grant
// already under the new name is kept, its old one dropped, as in the
// legacy layout.
func RolesRenameRegisteredModel(ctx context.Context, tx Tx, workspace, from, to string) error {
	if from == "" || to == "" {
		return invalid("empty registered model name")
	}
	if from == to {
		return nil
	}
	types := quoteList(RoleTypes(store.RegisteredModel))
	for _, s := range []string{
		`DELETE FROM role_permissions WHERE ` + syntheticRoles("$3") + ` AND resource_type IN (` + types + `) AND resource_pattern = $1
			AND role_id IN (SELECT role_id FROM role_permissions WHERE resource_type IN (` + types + `) AND resource_pattern = $2)`,
		`UPDATE role_permissions SET resource_pattern = $2 WHERE ` + syntheticRoles("$3") + ` AND resource_type IN (` + types + `) AND resource_pattern = $1`,
	} {
		if _, err := tx.Exec(ctx, s, from, to, store.Resource{Workspace: workspace}.WorkspaceOf()); err != nil {
			return err
		}
	}
	return nil
}

// RolesDeleteResourceGrants implements store.Admin.DeleteResourceGrants in
// the roles layout: the synthetic roles' grants on r
// (delete_grants_for_resource leaves named roles alone).
func RolesDeleteResourceGrants(ctx context.Context, tx Tx, r store.Resource) error {
	if _, err := checkResource(r); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM role_permissions WHERE `+syntheticRoles("$2")+`
		AND resource_type IN (`+quoteList(RoleTypes(r.Kind))+`) AND resource_pattern = $1`, RoleKey(r), r.WorkspaceOf())
	return err
}

// deleteRoles removes the roles matched by cond (on roles, argument $1)
// with their grants, conditions and assignments.
func deleteRoles(ctx context.Context, tx Tx, cond string, args ...any) error {
	have, err := tx.Tables(ctx)
	if err != nil {
		return err
	}
	sub := `SELECT id FROM roles WHERE ` + cond
	stmts := []string{`DELETE FROM role_permissions WHERE role_id IN (` + sub + `)`,
		`DELETE FROM user_role_assignments WHERE role_id IN (` + sub + `)`}
	if have["mutation_conditions"] {
		stmts = append(stmts, `DELETE FROM mutation_conditions WHERE role_id IN (`+sub+`)`)
	}
	stmts = append(stmts, `DELETE FROM roles WHERE `+cond)
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s, args...); err != nil {
			return err
		}
	}
	return nil
}

// RolesDeleteUser implements store.Admin.DeleteUser in the roles layout:
// the user's synthetic roles in every workspace go with it (delete_user),
// then its assignments and legacy rows.
func RolesDeleteUser(ctx context.Context, tx Tx, username string) error {
	id, found, err := subject(ctx, tx, store.Grantee{User: username}, false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("user %q: %w", username, store.ErrNotFound)
	}
	if err := deleteRoles(ctx, tx, `name = $1`, SyntheticRole(id)); err != nil {
		return err
	}
	return deleteSubject(ctx, tx, "users", "user_id", userRefTables, id)
}

// RolesCreateGroup creates the role a group's grants go to.
func RolesCreateGroup(ctx context.Context, tx Tx, name string) (bool, error) {
	if err := checkRoleName(name); err != nil {
		return false, err
	}
	_, found, err := roleID(ctx, tx, DefaultWorkspace, name, false)
	if err != nil || found {
		return false, err
	}
	_, _, err = roleID(ctx, tx, DefaultWorkspace, name, true)
	return err == nil, err
}

// RolesDeleteGroup deletes the role of a name in workspace ws ("" is the
// default one).
func RolesDeleteGroup(ctx context.Context, tx Tx, ws, name string) error {
	if err := checkRoleName(name); err != nil {
		return err
	}
	ws = workspaceOr(ws)
	_, found, err := roleID(ctx, tx, ws, name, false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("role %q of workspace %q: %w", name, ws, store.ErrNotFound)
	}
	return deleteRoles(ctx, tx, `workspace = $2 AND name = $1`, name, ws)
}

// workspaceOr returns ws, or DefaultWorkspace for "".
func workspaceOr(ws string) string { return store.Resource{Workspace: ws}.WorkspaceOf() }

// RolesListGroups lists the named roles of the default workspace.
func RolesListGroups(ctx context.Context, tx Tx) ([]string, error) {
	roles, err := ListRoles(ctx, tx, DefaultWorkspace)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = r.Name
	}
	return out, nil
}

// ListRoles implements store.RoleAdmin.ListRoles: the named roles of
// workspace ws, by name, each with its grants and users.
func ListRoles(ctx context.Context, tx Tx, ws string) ([]store.Role, error) {
	ws = workspaceOr(ws)
	rows, err := tx.Query(ctx, `SELECT name, description FROM roles WHERE workspace = $1 AND name NOT LIKE '\_\_user\_%' ESCAPE '\'`, ws)
	if err != nil {
		return nil, err
	}
	var out []store.Role
	for rows.Next() {
		var (
			r    store.Role
			desc *string
		)
		if err := rows.Scan(&r.Name, &desc); err != nil {
			rows.Close()
			return nil, err
		}
		r.Description = deref(desc)
		out = append(out, r)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.Role) int { return cmp.Compare(a.Name, b.Name) })
	for i := range out {
		if err := fillRole(ctx, tx, ws, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fillRole reads the grants and users of r, a role of workspace ws.
func fillRole(ctx context.Context, tx Tx, ws string, r *store.Role) error {
	rows, err := tx.Query(ctx, `SELECT rp.resource_type, rp.resource_pattern, rp.permission FROM role_permissions rp
		JOIN roles r ON r.id = rp.role_id WHERE r.workspace = $1 AND r.name = $2`, ws, r.Name)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			p    store.RolePermission
			perm *string
		)
		if err := rows.Scan(&p.Type, &p.Pattern, &perm); err != nil {
			rows.Close()
			return err
		}
		p.Permission = deref(perm)
		r.Permissions = append(r.Permissions, p)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return err
	}
	slices.SortFunc(r.Permissions, func(a, b store.RolePermission) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Pattern, b.Pattern))
	})
	rows, err = tx.Query(ctx, `SELECT u.username FROM user_role_assignments a JOIN users u ON u.id = a.user_id
		JOIN roles r ON r.id = a.role_id WHERE r.workspace = $1 AND r.name = $2 AND u.username IS NOT NULL`, ws, r.Name)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return err
		}
		r.Users = append(r.Users, u)
	}
	slices.Sort(r.Users)
	return rows.Err()
}

// CreateRole implements store.RoleAdmin.CreateRole (create_role).
func CreateRole(ctx context.Context, tx Tx, ws, name, description string) (bool, error) {
	if err := checkRoleName(name); err != nil {
		return false, err
	}
	ws = workspaceOr(ws)
	_, found, err := roleID(ctx, tx, ws, name, false)
	if err != nil || found {
		return false, err
	}
	var desc any
	if description != "" {
		desc = description
	}
	_, err = tx.Exec(ctx, `INSERT INTO roles (name, workspace, description) VALUES ($1, $2, $3)`, name, ws, desc)
	return err == nil, err
}

// GetRole implements store.RoleAdmin.Role.
func GetRole(ctx context.Context, tx Tx, ws, name string) (store.Role, error) {
	r := store.Role{Name: name}
	ws = workspaceOr(ws)
	var desc *string
	found, err := queryOne(ctx, tx, `SELECT description FROM roles WHERE workspace = $1 AND name = $2`, []any{ws, name}, &desc)
	if err != nil {
		return r, err
	}
	if !found {
		return r, fmt.Errorf("role %q of workspace %q: %w", name, ws, store.ErrNotFound)
	}
	r.Description = deref(desc)
	return r, fillRole(ctx, tx, ws, &r)
}

// AssignRole implements store.RoleAdmin.AssignRole; a missing user is
// created, as MLflow's grants create none but its assignments need one.
func AssignRole(ctx context.Context, tx Tx, ws, username, role string) (bool, error) {
	if username == "" {
		return false, invalid("empty username")
	}
	if err := checkRoleName(role); err != nil {
		return false, err
	}
	ws = workspaceOr(ws)
	rid, found, err := roleID(ctx, tx, ws, role, false)
	if err != nil {
		return false, err
	}
	if !found {
		return false, fmt.Errorf("role %q of workspace %q: %w", role, ws, store.ErrNotFound)
	}
	uid, _, err := subject(ctx, tx, store.Grantee{User: username}, true)
	if err != nil {
		return false, err
	}
	n, err := tx.Exec(ctx, `INSERT INTO user_role_assignments (user_id, role_id)
		SELECT CAST($1 AS INTEGER), CAST($2 AS INTEGER) WHERE NOT EXISTS (SELECT 1 FROM user_role_assignments WHERE user_id = $1 AND role_id = $2)`, uid, rid)
	return n > 0, err
}

// UnassignRole implements store.RoleAdmin.UnassignRole.
func UnassignRole(ctx context.Context, tx Tx, ws, username, role string) (bool, error) {
	if err := checkRoleName(role); err != nil {
		return false, err
	}
	n, err := tx.Exec(ctx, `DELETE FROM user_role_assignments
		WHERE user_id IN (SELECT id FROM users WHERE username = $1)
		AND role_id IN (SELECT id FROM roles WHERE workspace = $2 AND name = $3)`, username, workspaceOr(ws), role)
	return n > 0, err
}

// requireRoles fails unless the database has the roles layout's tables.
func requireRoles(ctx context.Context, tx Tx) error {
	have, err := tx.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range RoleTables {
		if !have[t] {
			return fmt.Errorf("%w: table %s is missing: roles exist in MLflow 3.12+'s auth database only", store.ErrNoRoleTables, t)
		}
	}
	return nil
}
