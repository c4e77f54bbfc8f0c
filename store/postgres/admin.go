package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

var _ store.Admin = (*Store)(nil)

// adminLockKey serializes mlflow-authz's admin writes across replicas
// (pg_advisory_xact_lock), so the read-then-write steps of SetGrant and
// friends do not race. MLflow's own writes do not take it; a clash with
// one ends in a unique-key error, never in a duplicate row.
const adminLockKey = 7283519005

type pgTx struct{ pgx.Tx }

func (t pgTx) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := t.Tx.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (t pgTx) Query(ctx context.Context, sql string, args ...any) (mlflowdb.Rows, error) {
	return t.Tx.Query(ctx, sql, args...)
}

// Tables lists the tables visible through the search path, as to_regclass
// (which Open uses) sees them.
func (t pgTx) Tables(ctx context.Context) (map[string]bool, error) {
	rows, err := t.Tx.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m, nil
}

// admin runs fn in one transaction on the auth database; write
// transactions take adminLockKey first. The whole transaction is bounded
// by a few statement timeouts (each statement is bounded by one).
func (s *Store) admin(ctx context.Context, op string, write bool, fn func(mlflowdb.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*s.cfg.StatementTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.auth, func(tx pgx.Tx) error {
		if write {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(adminLockKey)); err != nil {
				return err
			}
		}
		return fn(pgTx{tx})
	})
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNoGroupTables):
		return fmt.Errorf("postgres: %s: %w", op, err)
	case errors.As(err, &pe) && !retryable(pe.Code):
		// The server answered with an SQL error (a constraint, a missing
		// table): the database is there, the write is refused.
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return unavailable(op, err)
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

// retryable reports whether an SQLSTATE says the server could not do the
// work now (connection, resources, shutdown or cancel, deadlock) rather
// than that it refuses it.
func retryable(code string) bool {
	if len(code) < 2 {
		return true
	}
	switch code[:2] {
	case "08", "40", "53", "57", "58":
		return true
	}
	return false
}
