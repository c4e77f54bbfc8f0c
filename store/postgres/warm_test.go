package postgres

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// prepared returns the statements prepared on each idle connection of p
// (pg_prepared_statements is per session), holding them all at once so
// that each is asked once.
func prepared(t *testing.T, p *pgxpool.Pool) [][]string {
	t.Helper()
	conns := p.AcquireAllIdle(t.Context())
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	var out [][]string
	for _, c := range conns {
		rows, err := c.Query(t.Context(), `SELECT statement FROM pg_prepared_statements`)
		require.NoError(t, err)
		var stmts []string
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			stmts = append(stmts, s)
		}
		require.NoError(t, rows.Err())
		out = append(out, stmts)
	}
	return out
}

// TestOpenWarmsMinConns: Open returns with min_conns connections in each
// pool, each of which has run every hot statement of that pool once, so
// no check pays for preparing one on a fresh backend.
func TestOpenWarmsMinConns(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(map[bool]string{false: "one database", true: "auth and tracking apart"}[split], func(t *testing.T) {
			trackingURL := storetest.Postgres(t)
			authURL := trackingURL
			if split {
				authURL = storetest.Postgres(t)
			}
			require.NoError(t, Migrate(t.Context(), authURL))
			require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.PostgreSQL, storetest.PostgresExec(t, trackingURL)))
			s, err := Open(t.Context(), Config{TrackingURL: trackingURL, AuthURL: authURL, MinConns: 3, Notify: NotifyOff})
			require.NoError(t, err)
			t.Cleanup(s.Close)

			auth, tracking := s.warmStatements()
			for _, kind := range []store.ResourceKind{store.Experiment, store.RegisteredModel, store.Scorer} {
				assert.Contains(t, auth, s.q.Grants[kind], "the %s grants query", kind)
				assert.Contains(t, auth, s.batchSQL[kind].sql, "the %s batch query", kind)
			}
			assert.Contains(t, append(auth, tracking...), runExperimentSQL)
			pools := map[*pgxpool.Pool]warmSQL{s.auth: auth}
			if split {
				require.NotSame(t, s.auth, s.tracking)
				pools[s.tracking] = tracking
				assert.NotContains(t, auth, runExperimentSQL, "runs live in the tracking database")
			} else {
				assert.Empty(t, tracking, "one pool runs both lists")
			}
			for p, want := range pools {
				c, err := p.Acquire(t.Context())
				require.NoError(t, err)
				assert.NoError(t, want.exec(t.Context(), c.Conn()), "every statement runs with NULL arguments, not only prepares")
				c.Release()
				conns := prepared(t, p)
				require.Equal(t, 3, len(conns), "min_conns connections, open when Open returns")
				for i, got := range conns {
					for _, sql := range want {
						assert.True(t, slices.ContainsFunc(got, func(s string) bool { return strings.TrimSpace(s) == strings.TrimSpace(sql) }),
							"connection %d has not prepared %.60q", i, sql)
					}
				}
			}

			// A connection the pool opens later, on demand, is warmed too.
			held := make([]*pgxpool.Conn, 0, 4)
			for range 4 {
				c, err := s.auth.Acquire(t.Context())
				require.NoError(t, err)
				held = append(held, c)
			}
			rows, err := held[3].Query(t.Context(), `SELECT count(*) FROM pg_prepared_statements WHERE statement = $1`, s.q.Grants[store.Experiment])
			require.NoError(t, err)
			require.True(t, rows.Next())
			var n int
			require.NoError(t, rows.Scan(&n))
			rows.Close()
			assert.Equal(t, 1, n, "the fourth connection, opened on demand")
			for _, c := range held {
				c.Release()
			}
		})
	}
}

// TestWarmFailureIsNotFatal: a database without MLflow's tracking tables
// fails the ownership lookups of the warm-up; the store still opens and
// reads grants, and the lookups answer as they do without the warm-up.
func TestWarmFailureIsNotFatal(t *testing.T) {
	url := storetest.Postgres(t)
	require.NoError(t, Migrate(t.Context(), url))
	s, err := Open(t.Context(), Config{TrackingURL: url, Notify: NotifyOff})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	assert.EqualValues(t, 2, s.auth.Stat().TotalConns(), "min_conns' default")
	auth, _ := s.warmStatements()
	c, err := s.auth.Acquire(t.Context())
	require.NoError(t, err)
	assert.Error(t, auth.exec(t.Context(), c.Conn()), "the warm-up's run lookup fails here")
	c.Release()
	_, err = s.Grants(t.Context(), "alice", store.Resource{Kind: store.Experiment, ID: "1"})
	require.NoError(t, err)
	_, err = s.Resolve(t.Context(), store.RunExperiment, "r1")
	assert.ErrorIs(t, err, store.ErrNotFound, "no runs table: no such run")
}

func TestMinConnsAboveMaxConns(t *testing.T) {
	start := time.Now()
	_, err := Open(t.Context(), Config{TrackingURL: "postgres://127.0.0.1:1/x", MaxConns: 4, MinConns: 5})
	require.EqualError(t, err, "postgres: min_conns 5 exceeds max_conns 4")
	assert.Less(t, time.Since(start), time.Second, "refused before dialing")
}
