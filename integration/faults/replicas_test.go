package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store/postgres"
)

// revokeLimit is how soon a revoke made with plain SQL must be denied on
// every replica (design §2.5).
const revokeLimit = time.Second

// TestReplicasRevoke runs two `serve` processes on one PostgreSQL, as two
// Kubernetes replicas share nothing else. 100 times it grants frank READ on
// experiment 3 with SQL, waits until both replicas allow and have the grant
// cached, then deletes the row with SQL and measures, per replica, the time
// from the start of the DELETE to the first deny. Every one must be under
// revokeLimit; the distribution is logged. Then it kills both replicas' LISTEN
// connections right before a revoke, five times.
func TestReplicasRevoke(t *testing.T) {
	ctx := t.Context()
	dbURL := database(t)
	ks := startKeyServer(t)
	replicas := []*service{startService(t, dbURL, ks, options{}), startService(t, dbURL, ks, options{})}
	frank := ks.token(t, "frank", "k1")

	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))

	allowed := func(s *service) (bool, error) {
		res, err := s.check(ctx, frank, "GET", runGet(runC), "")
		if err != nil {
			return false, err
		}
		if !res.Allowed && (res.Status != 403 || res.Reason != "permission_denied") {
			return false, fmt.Errorf("unexpected deny %d %s: %s", res.Status, res.Reason, res.Message)
		}
		return res.Allowed, nil
	}
	// waitAll polls every replica until allowed(s) == want and returns how
	// long each took from since.
	waitAll := func(since time.Time, want bool) ([]time.Duration, error) {
		took := make([]time.Duration, len(replicas))
		errs := make([]error, len(replicas))
		var wg sync.WaitGroup
		for i, s := range replicas {
			wg.Go(func() {
				for {
					got, err := allowed(s)
					if err != nil {
						errs[i] = err
						return
					}
					if got == want {
						took[i] = time.Since(since)
						return
					}
					if time.Since(since) > 5*time.Second {
						errs[i] = fmt.Errorf("replica %d: still allowed=%v after 5s", i, got)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return took, err
			}
		}
		return took, nil
	}

	n := 100
	var perReplica [2][]time.Duration
	var all []time.Duration
	for i := range n {
		_, err := conn.Exec(ctx, `INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('3', 2, 'READ')`)
		require.NoError(t, err)
		_, err = waitAll(time.Now(), true)
		require.NoError(t, err, "grant %d", i)
		// Served from the cache from here on.
		for range 3 {
			_, err = waitAll(time.Now(), true)
			require.NoError(t, err)
		}

		began := time.Now()
		_, err = conn.Exec(ctx, `DELETE FROM experiment_permissions WHERE experiment_id = '3' AND user_id = 2`)
		require.NoError(t, err)
		took, err := waitAll(began, false)
		require.NoError(t, err, "revoke %d", i)
		for r, d := range took {
			perReplica[r] = append(perReplica[r], d)
			all = append(all, d)
			assert.Less(t, d, revokeLimit, "revoke %d on replica %d", i, r)
		}
	}
	for r := range replicas {
		p50, p90, mx := percentiles(perReplica[r])
		t.Logf("replica %d: %d revokes, propagation p50 %s p90 %s max %s", r, n, p50.Round(time.Microsecond), p90.Round(time.Microsecond), mx.Round(time.Microsecond))
	}
	p50, p90, mx := percentiles(all)
	t.Logf("both replicas: %d revokes, propagation p50 %s p90 %s max %s (from the start of the DELETE to the first deny)",
		n, p50.Round(time.Microsecond), p90.Round(time.Microsecond), mx.Round(time.Microsecond))
	res := replicas[1].mustCheck(t, frank, "GET", runGet(runC))
	requireDeny(t, res, 403, "permission_denied")

	// Both replicas lose their LISTEN connection (a PostgreSQL failover or
	// a network blip), and the revoke lands at once, while they may still
	// be reconnecting: a missed notification must not leave a stale allow.
	for round := range 5 {
		_, err := conn.Exec(ctx, `INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('3', 2, 'READ')`)
		require.NoError(t, err)
		_, err = waitAll(time.Now(), true)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, postgres.ListenApplicationName)
		require.NoError(t, err)
		began := time.Now()
		_, err = conn.Exec(ctx, `DELETE FROM experiment_permissions WHERE experiment_id = '3' AND user_id = 2`)
		require.NoError(t, err)
		took, err := waitAll(began, false)
		require.NoError(t, err, "revoke after LISTEN killed, round %d", round)
		for r, d := range took {
			assert.Less(t, d, revokeLimit, "revoke after LISTEN killed, round %d, replica %d", round, r)
		}
		t.Logf("LISTEN connections killed, round %d: revoke denied after %s and %s", round, took[0].Round(time.Microsecond), took[1].Round(time.Microsecond))
		// No stale allow comes back while they reconnect.
		for range 20 {
			for _, s := range replicas {
				requireDeny(t, s.mustCheck(t, frank, "GET", runGet(runC)), 403, "permission_denied")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
