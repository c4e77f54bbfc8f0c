package storetest

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// PostgresExec returns an ExecFunc on a connection of its own to url, as
// another process (MLflow, an operator's psql) would write. It is safe for
// concurrent use and closed when the test ends.
func PostgresExec(t testing.TB, url string) ExecFunc {
	t.Helper()
	conn, mu := pgConn(t, url)
	return func(ctx context.Context, q string, args ...any) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := conn.Exec(ctx, q, args...)
		return err
	}
}

// PostgresQuery returns a QueryFunc on a connection of its own to url, as
// an operator's psql would read. It is safe for concurrent use and closed
// when the test ends.
func PostgresQuery(t testing.TB, url string) QueryFunc {
	t.Helper()
	conn, mu := pgConn(t, url)
	return func(ctx context.Context, q string, args ...any) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		rows, err := conn.Query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
}

// pgConn connects to url until the test ends; a pgx.Conn is not safe for
// concurrent use, so its users hold the mutex.
func pgConn(t testing.TB, url string) (*pgx.Conn, *sync.Mutex) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, &sync.Mutex{}
}

// SQLiteExec returns an ExecFunc on a handle of its own on the SQLite file
// at path (WAL, with a busy timeout), as MLflow in another process would
// write. It is closed when the test ends.
func SQLiteExec(t testing.TB, path string) ExecFunc {
	t.Helper()
	db := sqliteDB(t, path)
	return func(ctx context.Context, q string, args ...any) error {
		_, err := db.ExecContext(ctx, q, args...)
		return err
	}
}

// SQLiteQuery returns a QueryFunc on a handle of its own on the SQLite file
// at path, as an operator's sqlite3 would read. It is closed when the test
// ends.
func SQLiteQuery(t testing.TB, path string) QueryFunc {
	t.Helper()
	db := sqliteDB(t, path)
	return func(ctx context.Context, q string, args ...any) ([]string, error) {
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, rows.Err()
	}
}

func sqliteDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// Must runs stmts through exec and fails the test at the first error,
// naming the statement.
func Must(t testing.TB, exec ExecFunc, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		require.NoError(t, exec(t.Context(), s), s)
	}
}
