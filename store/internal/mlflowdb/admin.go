package mlflowdb

import (
	"context"
	"fmt"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Tx is one transaction of a backend, as the shared Admin logic (this
// file's Writer; kinds.go, principals.go and grants.go) uses it. The SQL it
// is given is portable: "$1" placeholders, false and true, RETURNING and
// subqueries run as is on PostgreSQL and SQLite (3.35+). Backends serialize
// write transactions (an advisory lock, BEGIN IMMEDIATE), so the
// read-then-write steps do not race each other.
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

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{store.ErrInvalid}, args...)...)
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

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Writer implements the write half of store.Admin once for every backend,
// on top of the backend's transaction runner: Run executes fn in one
// transaction (serialized with other writes when write is true) and maps
// the backend's errors, naming op.
type Writer struct {
	Run func(ctx context.Context, op string, write bool, fn func(Tx) error) error
	// Layout is the auth database's layout: in the roles layout grants are
	// written where MLflow 3.12+ writes them (roles_admin.go).
	Layout store.Layout
}

func (w Writer) roles() bool { return w.Layout == store.LayoutRoles }

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
	return w.Run(ctx, "delete user", true, func(tx Tx) error {
		if w.roles() {
			return RolesDeleteUser(ctx, tx, username)
		}
		return DeleteUser(ctx, tx, username)
	})
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
		if w.roles() {
			created, err = RolesCreateGroup(ctx, tx, name)
			return err
		}
		created, err = CreateGroup(ctx, tx, name)
		return err
	})
	return created && err == nil, err
}

// DeleteGroup implements store.Admin.
func (w Writer) DeleteGroup(ctx context.Context, name string) error {
	return w.Run(ctx, "delete group", true, func(tx Tx) error {
		if w.roles() {
			return RolesDeleteGroup(ctx, tx, DefaultWorkspace, name)
		}
		return DeleteGroup(ctx, tx, name)
	})
}

// ListGroups implements store.Admin.
func (w Writer) ListGroups(ctx context.Context) (groups []string, err error) {
	err = w.Run(ctx, "list groups", false, func(tx Tx) error {
		if w.roles() {
			groups, err = RolesListGroups(ctx, tx)
			return err
		}
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
		switch {
		case w.roles():
			before, changed, err = RolesSetGrant(ctx, tx, g, r, p)
		case r.Kind == store.WholeWorkspace:
			before, changed, err = SetWorkspaceGrant(ctx, tx, g, r, p)
		default:
			before, changed, err = SetGrant(ctx, tx, g, r, p)
		}
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
		switch {
		case w.roles():
			before, changed, err = RolesDeleteGrant(ctx, tx, g, r)
		case r.Kind == store.WholeWorkspace:
			before, changed, err = DeleteWorkspaceGrant(ctx, tx, g, r)
		default:
			before, changed, err = DeleteGrant(ctx, tx, g, r)
		}
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
		if w.roles() {
			return nil // mlflow-oidc-auth's regex rows are not MLflow's
		}
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
		if w.roles() {
			rows, err = RolesListGrants(ctx, tx, f)
			return err
		}
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
func (w Writer) RenameRegisteredModel(ctx context.Context, workspace, from, to string) error {
	return w.Run(ctx, "rename registered model", true, func(tx Tx) error {
		if w.roles() {
			return RolesRenameRegisteredModel(ctx, tx, workspace, from, to)
		}
		return RenameRegisteredModel(ctx, tx, workspace, from, to)
	})
}

// DeleteResourceGrants implements store.Admin.
func (w Writer) DeleteResourceGrants(ctx context.Context, r store.Resource) error {
	return w.Run(ctx, "delete resource grants", true, func(tx Tx) error {
		if w.roles() {
			return RolesDeleteResourceGrants(ctx, tx, r)
		}
		return DeleteResourceGrants(ctx, tx, r)
	})
}

// CreateRole implements store.RoleAdmin.
func (w Writer) CreateRole(ctx context.Context, workspace, name, description string) (created bool, err error) {
	err = w.Run(ctx, "create role", true, func(tx Tx) error {
		if err := requireRoles(ctx, tx); err != nil {
			return err
		}
		created, err = CreateRole(ctx, tx, workspace, name, description)
		return err
	})
	return created && err == nil, err
}

// ListRoles implements store.RoleAdmin.
func (w Writer) ListRoles(ctx context.Context, workspace string) (roles []store.Role, err error) {
	err = w.Run(ctx, "list roles", false, func(tx Tx) error {
		if err := requireRoles(ctx, tx); err != nil {
			return err
		}
		roles, err = ListRoles(ctx, tx, workspace)
		return err
	})
	if err != nil {
		return nil, err
	}
	return roles, nil
}

// Role implements store.RoleAdmin.
func (w Writer) Role(ctx context.Context, workspace, name string) (role store.Role, err error) {
	err = w.Run(ctx, "show role", false, func(tx Tx) error {
		if err := requireRoles(ctx, tx); err != nil {
			return err
		}
		role, err = GetRole(ctx, tx, workspace, name)
		return err
	})
	return role, err
}

// DeleteRole implements store.RoleAdmin.
func (w Writer) DeleteRole(ctx context.Context, workspace, name string) error {
	return w.Run(ctx, "delete role", true, func(tx Tx) error {
		if err := requireRoles(ctx, tx); err != nil {
			return err
		}
		return RolesDeleteGroup(ctx, tx, workspace, name)
	})
}

// AssignRole implements store.RoleAdmin.
func (w Writer) AssignRole(ctx context.Context, workspace, username, role string) (changed bool, err error) {
	err = w.Run(ctx, "assign role", true, func(tx Tx) error {
		if err := requireRoles(ctx, tx); err != nil {
			return err
		}
		changed, err = AssignRole(ctx, tx, workspace, username, role)
		return err
	})
	return changed && err == nil, err
}

// UnassignRole implements store.RoleAdmin.
func (w Writer) UnassignRole(ctx context.Context, workspace, username, role string) (changed bool, err error) {
	err = w.Run(ctx, "unassign role", true, func(tx Tx) error {
		if err := requireRoles(ctx, tx); err != nil {
			return err
		}
		changed, err = UnassignRole(ctx, tx, workspace, username, role)
		return err
	})
	return changed && err == nil, err
}
