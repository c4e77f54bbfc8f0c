package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A fresh PostgreSQL connection is slow for its first queries: the server
// forks a backend, which loads its catalog caches as each statement is
// first prepared and planned, and pgx prepares each statement once per
// connection. Measured on the bench's database, a new connection's first
// ownership lookup took 50–150 ms and its first grants read 7–50 ms, where
// a warm one takes about 0.15 ms. A check must not pay that, so every
// connection runs the store's hot statements once before it joins its pool
// (pgxpool's AfterConnect), and Open waits for min_conns such connections
// per pool before the service reports ready.

// warmSQL is the store's hot statements on one pool: each one's first
// use on a connection is what the warm-up takes off the checks' path.
type warmSQL []string

// warmStatements returns the statements each pool's connections run once
// when they open: the auth pool every Grants, Patterns, user, password and
// batch query built for this database, the tracking pool the ownership
// lookups of runs and experiments (the lookups most checks make). One
// pool, when both URLs are the same, runs both lists.
func (s *Store) warmStatements() (auth, tracking warmSQL) {
	for _, sql := range s.q.Grants {
		auth = append(auth, sql)
	}
	for _, sql := range s.q.Patterns {
		auth = append(auth, sql)
	}
	auth = append(auth, userSQL, s.passSQL)
	// The batch statements last, after the setting they run with in
	// GrantsBatch.
	auth = append(auth, genericPlanSQL)
	for _, bq := range s.batchSQL {
		auth = append(auth, bq.sql)
	}
	tracking = warmSQL{runExperimentSQL, experimentByIDSQL}
	if s.cfg.TrackingURL == s.cfg.AuthURL {
		return append(auth, tracking...), nil
	}
	return auth, tracking
}

// exec executes every statement once on c, in one pipeline, each with
// every argument NULL, which matches no row. A failed statement skips the
// ones after it, which is why warmStatements puts the tracking lookups
// (tables an older MLflow may lack) last.
func (w warmSQL) exec(ctx context.Context, c *pgx.Conn) error {
	if len(w) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, sql := range w {
		b.Queue(sql, make([]any, paramCount(sql))...)
	}
	return c.SendBatch(ctx, b).Close()
}

// afterConnect is exec as the pool's AfterConnect: a statement that fails
// is not an error, as the warm-up only saves time; a connection it broke
// is, so that the pool dials another.
func (w warmSQL) afterConnect(ctx context.Context, c *pgx.Conn) error {
	if err := w.exec(ctx, c); err != nil && c.IsClosed() {
		return err
	}
	return nil
}

// paramCount is the highest $n a statement binds.
func paramCount(sql string) int {
	n := 0
	for _, m := range param.FindAllStringSubmatch(sql, -1) {
		if i, err := strconv.Atoi(m[1]); err == nil {
			n = max(n, i)
		}
	}
	return n
}

// fill waits, at most timeout, until p has opened n connections (the
// pool opens min_conns in the background as it starts, each warmed by
// AfterConnect before it joins). It reports how many are open; fewer than n
// is not an error, as the pool dials on demand and keeps trying for
// min_conns in the background.
func fill(ctx context.Context, p *pgxpool.Pool, n int, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st := p.Stat()
		open := int(st.IdleConns() + st.AcquiredConns())
		if open >= n {
			return open, nil
		}
		select {
		case <-ctx.Done():
			return open, ctx.Err()
		case <-tick.C:
		}
	}
}
