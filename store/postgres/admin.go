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
// Dialect implements mlflowdb.Tx.
func (pgTx) Dialect() store.Dialect { return store.PostgreSQL }

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
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNoGroupTables), errors.Is(err, store.ErrNoRoleTables):
		return fmt.Errorf("postgres: %s: %w", op, err)
	case errors.As(err, &pe) && !retryable(pe.Code):
		// The server answered with an SQL error (a constraint, a missing
		// table): the database is there, the write is refused.
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return unavailable(op, err)
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
