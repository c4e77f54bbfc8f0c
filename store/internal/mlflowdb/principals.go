package mlflowdb

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/mlflow-authz/mlflow-authz/store"
)

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
