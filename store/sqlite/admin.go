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

// Dialect implements mlflowdb.Tx.
func (sqlTx) Dialect() store.Dialect { return store.SQLite }

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
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNoGroupTables), errors.Is(err, store.ErrNoRoleTables):
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
