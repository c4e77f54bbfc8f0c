package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"modernc.org/sqlite"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

var _ store.Admin = (*Store)(nil)

// sqlTx runs the shared Admin logic on one connection inside a
// transaction begun with plain SQL (BEGIN IMMEDIATE needs that).
type sqlTx struct{ conn *sql.Conn }

func (t sqlTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := t.conn.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t sqlTx) Query(ctx context.Context, q string, args ...any) (mlflowdb.Rows, error) {
	rows, err := t.conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (t sqlTx) Tables(ctx context.Context) (map[string]bool, error) {
	rows, err := t.conn.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		m[n] = true
	}
	return m, rows.Err()
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// admin runs fn in one transaction on the auth database. Writes begin
// IMMEDIATE: the write lock is taken up front (waiting up to BusyTimeout
// for MLflow's writers), so the read-then-write steps of SetGrant and
// friends are serialized with every other writer of the file. The commit
// changes PRAGMA data_version, which Watch polls.
func (s *Store) admin(ctx context.Context, op string, write bool, fn func(mlflowdb.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BusyTimeout+5*s.cfg.QueryTimeout)
	defer cancel()
	err := s.inTx(ctx, write, fn)
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNoGroupTables):
		return fmt.Errorf("sqlite: %s: %w", op, err)
	case errors.As(err, &se) && refused(se.Code()):
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return unavailable(op, err)
}

func (s *Store) inTx(ctx context.Context, write bool, fn func(mlflowdb.Tx) error) error {
	conn, err := s.auth.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	begin := "BEGIN"
	if write {
		begin = "BEGIN IMMEDIATE"
	}
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return err
	}
	err = fn(sqlTx{conn})
	if err == nil {
		if _, err = conn.ExecContext(ctx, "COMMIT"); err == nil {
			return nil
		}
	}
	if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
		// Never hand a connection still inside a transaction back to the pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	return err
}

// refused reports whether an SQLite result code says the statement was
// refused (SQL error, constraint, type mismatch) rather than that the
// database could not be reached, locked or read.
func refused(code int) bool {
	switch code & 0xff {
	case 1, 19, 20, 25: // SQLITE_ERROR, CONSTRAINT, MISMATCH, RANGE
		return true
	}
	return false
}

// CreateUser implements store.Admin.
func (s *Store) CreateUser(ctx context.Context, username string, admin bool) (created bool, err error) {
	err = s.admin(ctx, "create user", true, func(tx mlflowdb.Tx) error {
		created, err = mlflowdb.CreateUser(ctx, tx, username, admin)
		return err
	})
	return created && err == nil, err
}

// DeleteUser implements store.Admin.
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	return s.admin(ctx, "delete user", true, func(tx mlflowdb.Tx) error {
		return mlflowdb.DeleteUser(ctx, tx, username)
	})
}

// SetAdmin implements store.Admin.
func (s *Store) SetAdmin(ctx context.Context, username string, admin bool) (changed bool, err error) {
	err = s.admin(ctx, "set admin", true, func(tx mlflowdb.Tx) error {
		changed, err = mlflowdb.SetAdmin(ctx, tx, username, admin)
		return err
	})
	return changed && err == nil, err
}

// ListUsers implements store.Admin.
func (s *Store) ListUsers(ctx context.Context) (users []store.UserRow, err error) {
	err = s.admin(ctx, "list users", false, func(tx mlflowdb.Tx) error {
		users, err = mlflowdb.ListUsers(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return users, nil
}

// CreateGroup implements store.Admin.
func (s *Store) CreateGroup(ctx context.Context, name string) (created bool, err error) {
	err = s.admin(ctx, "create group", true, func(tx mlflowdb.Tx) error {
		created, err = mlflowdb.CreateGroup(ctx, tx, name)
		return err
	})
	return created && err == nil, err
}

// DeleteGroup implements store.Admin.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	return s.admin(ctx, "delete group", true, func(tx mlflowdb.Tx) error {
		return mlflowdb.DeleteGroup(ctx, tx, name)
	})
}

// ListGroups implements store.Admin.
func (s *Store) ListGroups(ctx context.Context) (groups []string, err error) {
	err = s.admin(ctx, "list groups", false, func(tx mlflowdb.Tx) error {
		groups, err = mlflowdb.ListGroups(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return groups, nil
}

// SetGrant implements store.Admin.
func (s *Store) SetGrant(ctx context.Context, g store.Grantee, r store.Resource, p store.Permission) (before *store.GrantRow, changed bool, err error) {
	err = s.admin(ctx, "set grant", true, func(tx mlflowdb.Tx) error {
		before, changed, err = mlflowdb.SetGrant(ctx, tx, g, r, p)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return before, changed, nil
}

// DeleteGrant implements store.Admin.
func (s *Store) DeleteGrant(ctx context.Context, g store.Grantee, r store.Resource) (before *store.GrantRow, changed bool, err error) {
	err = s.admin(ctx, "delete grant", true, func(tx mlflowdb.Tx) error {
		before, changed, err = mlflowdb.DeleteGrant(ctx, tx, g, r)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return before, changed, nil
}

// ListGrants implements store.Admin.
func (s *Store) ListGrants(ctx context.Context, f store.GrantFilter) (rows []store.GrantRow, err error) {
	err = s.admin(ctx, "list grants", false, func(tx mlflowdb.Tx) error {
		rows, err = mlflowdb.ListGrants(ctx, tx, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// RenameRegisteredModel implements store.Admin; see
// mlflowdb.RenameRegisteredModel for rows already under the new name.
func (s *Store) RenameRegisteredModel(ctx context.Context, from, to string) error {
	return s.admin(ctx, "rename registered model", true, func(tx mlflowdb.Tx) error {
		return mlflowdb.RenameRegisteredModel(ctx, tx, from, to)
	})
}

// DeleteResourceGrants implements store.Admin.
func (s *Store) DeleteResourceGrants(ctx context.Context, r store.Resource) error {
	return s.admin(ctx, "delete resource grants", true, func(tx mlflowdb.Tx) error {
		return mlflowdb.DeleteResourceGrants(ctx, tx, r)
	})
}
