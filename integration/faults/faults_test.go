package faults

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// storeRecoveryLimit is how soon checks must be answered again once
// PostgreSQL is back.
const storeRecoveryLimit = 5 * time.Second

// cacheFlushGrace is how long an allow already in the cache may still be
// served after the store goes away: the cache is flushed when the LISTEN
// connection drops.
const cacheFlushGrace = time.Second

// outcome is one check made by the load during the outage test.
type outcome struct {
	began time.Time
	cold  bool // needed the store: a run no cache had seen
	res   extauthz.Result
	err   error
}

// TestStoreDownUnderLoad stops PostgreSQL while the serve process answers a
// steady load of checks, half of which need the store. No check that needs
// the store is allowed once the server is stopping, nothing at all is
// allowed once the cache flush grace has passed, every deny in the outage is
// a 503, no check is an RPC error, and after the restart checks are answered
// again within storeRecoveryLimit (measured from the moment pg_ctl start
// returns).
func TestStoreDownUnderLoad(t *testing.T) {
	dbURL := database(t)
	ks := startKeyServer(t)
	s := startService(t, dbURL, ks, options{})
	alice := ks.token(t, "alice", "k1")
	require.True(t, s.mustCheck(t, alice, "GET", runGet(runA)).Allowed)

	outage := time.Duration(2 * time.Second)
	if long() {
		outage = 20 * time.Second
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		next     atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				o := outcome{began: time.Now(), cold: (i+w)%2 == 0}
				target := runGet(runA)
				if o.cold {
					n := int(next.Add(1))
					if n >= coldRuns {
						continue
					}
					target = runGet(coldRun(n))
				}
				o.res, o.err = s.check(context.Background(), alice, "GET", target, "")
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // steady state before the fault

	var stopped, restarting time.Time
	storetest.RestartPostgres(t, func() {
		stopped = time.Now()
		time.Sleep(outage)
		restarting = time.Now()
	})
	restarted := time.Now()
	coldAfter := coldRuns - 1 // the one run no worker uses
	took, ok := waitUntil(storeRecoveryLimit, func() bool {
		res, err := s.check(t.Context(), alice, "GET", runGet(coldRun(coldAfter)), "")
		return err == nil && res.Allowed
	})
	time.Sleep(300 * time.Millisecond) // the load sees the recovery too
	close(stop)
	wg.Wait()
	require.True(t, ok, "checks not answered %s after PostgreSQL restarted", took)

	var during, coldAllowed, lateAllowed, errs, non503, afterOK int
	for _, o := range outcomes {
		if o.err != nil {
			errs++
			t.Errorf("RPC error at %s: %v", o.began.Sub(stopped), o.err)
			continue
		}
		if o.began.Before(stopped) {
			continue
		}
		if o.began.After(restarted) {
			if o.res.Allowed {
				afterOK++
			}
			continue
		}
		if o.began.Before(restarting) {
			during++
			if o.res.Allowed && o.cold {
				coldAllowed++
			}
			if o.res.Allowed && o.began.After(stopped.Add(cacheFlushGrace)) {
				lateAllowed++
			}
			if !o.res.Allowed && (o.res.Status != 503 || o.res.Reason != "unavailable") {
				non503++
				t.Errorf("deny in the outage is %d %s (%s), want 503 unavailable", o.res.Status, o.res.Reason, o.res.Message)
			}
		}
	}
	t.Logf("%d checks in all, %d during a %s outage; store back: checks answered %s after pg_ctl start returned; %d allows after",
		len(outcomes), during, outage, took.Round(time.Millisecond), afterOK)
	assert.Zero(t, errs, "RPC errors")
	assert.Zero(t, coldAllowed, "allows that needed the store while it was down")
	assert.Zero(t, lateAllowed, "allows after the cache flush grace while the store was down")
	assert.Zero(t, non503, "denies other than 503 unavailable during the outage")
	assert.Positive(t, during, "the load ran during the outage")
	assert.Positive(t, afterOK, "the load recovered")
	assert.Equal(t, http.StatusOK, s.readyz(t), "/readyz after the restart")
}

// TestSlowStore holds an ACCESS EXCLUSIVE lock on MLflow's runs table, so
// the service's ownership query blocks. With statement_timeout below
// check_timeout the check is a 503 unavailable as soon as the statement
// times out; with check_timeout below statement_timeout the pipeline's own
// deadline denies with 503 deadline_exceeded. Both answer well inside the
// time Envoy waits (server.check_timeout is set below Envoy's timeout), and
// neither is an allow or an RPC error.
func TestSlowStore(t *testing.T) {
	ctx := t.Context()
	dbURL := database(t)
	ks := startKeyServer(t)
	alice := ks.token(t, "alice", "k1")
	tests := []struct {
		name      string
		opts      options
		status    int
		reason    string
		atLeast   time.Duration // the check waited for the timeout
		withinMax time.Duration
	}{
		{name: "statement timeout", opts: options{statementTimeout: 300 * time.Millisecond, checkTimeout: 2 * time.Second},
			status: 503, reason: "unavailable", atLeast: 250 * time.Millisecond, withinMax: 1500 * time.Millisecond},
		{name: "check deadline inside the pipeline", opts: options{statementTimeout: 10 * time.Second, checkTimeout: 300 * time.Millisecond},
			status: 503, reason: "deadline_exceeded", atLeast: 250 * time.Millisecond, withinMax: 1500 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startService(t, dbURL, ks, tt.opts)
			cold := runGet(coldRun(i))
			conn, err := pgx.Connect(ctx, dbURL)
			require.NoError(t, err)
			defer conn.Close(context.WithoutCancel(ctx))
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, `LOCK TABLE runs IN ACCESS EXCLUSIVE MODE`)
			require.NoError(t, err)

			for range 3 {
				began := time.Now()
				res := s.mustCheck(t, alice, "GET", cold)
				el := time.Since(began)
				requireDeny(t, res, tt.status, tt.reason)
				assert.GreaterOrEqual(t, el, tt.atLeast, "answered before the query could time out")
				assert.Less(t, el, tt.withinMax, "answered too late")
				t.Logf("lock held: %d %s after %s", res.Status, res.Reason, el.Round(time.Millisecond))
			}
			require.NoError(t, tx.Rollback(ctx))
			took, ok := waitUntil(2*time.Second, func() bool { return s.mustCheck(t, alice, "GET", cold).Allowed })
			require.True(t, ok, "not allowed %s after the lock was released", took)
		})
	}
}

// TestJWKSFaults exercises the issuer side under the serve process: a key
// rotation is accepted after one JWKS refresh; a flood of tokens with forged
// key ids costs at most one JWKS fetch per jwks_min_refresh_interval and
// each is a 401 unknown_signing_key; and with the JWKS endpoint down the
// cached keys keep working and /readyz stays 200 (README: ready once every
// issuer's JWKS has been fetched).
func TestJWKSFaults(t *testing.T) {
	dbURL := database(t)
	ks := startKeyServer(t)
	interval := time.Second
	s := startService(t, dbURL, ks, options{minRefresh: interval})
	require.True(t, s.mustCheck(t, ks.token(t, "alice", "k1"), "GET", runGet(runA)).Allowed)

	t.Run("rotation", func(t *testing.T) {
		time.Sleep(interval) // no refresh of the rate limit pending
		ks.addKey(t, "k2")
		before := ks.JWKSFetches()
		res := s.mustCheck(t, ks.token(t, "alice", "k2"), "GET", runGet(runA))
		require.True(t, res.Allowed, "new kid refused: %d %s %s", res.Status, res.Reason, res.Message)
		assert.Equal(t, 1, ks.JWKSFetches()-before, "JWKS fetches for the new kid")
		assert.True(t, s.mustCheck(t, ks.token(t, "alice", "k1"), "GET", runGet(runA)).Allowed, "old kid still published")
	})

	t.Run("forged kid flood", func(t *testing.T) {
		flood := 2 * time.Second
		if long() {
			flood = 20 * time.Second
		}
		tokens := forgedTokens(t, ks, "forged")
		time.Sleep(interval)
		before := ks.JWKSFetches()
		res := s.floodForged(tokens, 8, flood)
		fetches := ks.JWKSFetches() - before
		limit := int(flood/interval) + 1
		t.Logf("%d forged tokens in %s caused %d JWKS fetches (limit %d)", res.sent, flood, fetches, limit)
		assert.Zero(t, res.rpcErr)
		assert.Zero(t, res.wrong, "forged tokens not denied 401 unknown_signing_key")
		assert.LessOrEqual(t, fetches, limit)
		requireDeny(t, s.mustCheck(t, tokens[0], "GET", runGet(runA)), 401, "unknown_signing_key")
	})

	t.Run("rotation during a forged kid flood", func(t *testing.T) {
		// The worst case for a rotation: forged kids keep the refresh
		// window closed. The new key must still be accepted within one
		// jwks_min_refresh_interval, and the flood stays at one fetch per
		// interval (plus the fetch that found the new key).
		tokens := forgedTokens(t, ks, "forged-rot")
		time.Sleep(interval)
		before := ks.JWKSFetches()
		began := time.Now()
		flooded := make(chan floodResult, 1)
		go func() { flooded <- s.floodForged(tokens, 4, 3*interval) }()
		time.Sleep(interval / 2)
		ks.addKey(t, "k3")
		rotated := time.Now()
		newToken := ks.token(t, "alice", "k3")
		took, ok := waitUntil(interval+interval/2, func() bool { return s.mustCheck(t, newToken, "GET", runGet(runA)).Allowed })
		res := <-flooded
		fetches := ks.JWKSFetches() - before
		limit := int(time.Since(began)/interval) + 2
		t.Logf("new key accepted %s after the rotation during the flood; %d JWKS fetches in %s (limit %d)",
			took.Round(time.Millisecond), fetches, time.Since(began).Round(time.Millisecond), limit)
		require.True(t, ok, "the new key was refused for %s after the rotation (since %s)", took, rotated.Format(time.StampMilli))
		assert.Zero(t, res.rpcErr)
		assert.Zero(t, res.wrong, "forged tokens not denied 401 unknown_signing_key")
		assert.LessOrEqual(t, took, interval+interval/4)
		assert.LessOrEqual(t, fetches, limit)
	})

	t.Run("JWKS down", func(t *testing.T) {
		ks.SetDown(true)
		defer ks.SetDown(false)
		time.Sleep(interval)
		for range 3 {
			res := s.mustCheck(t, ks.token(t, "alice", "k1"), "GET", runGet(runA))
			require.True(t, res.Allowed, "cached key refused with the JWKS down: %d %s", res.Status, res.Reason)
		}
		requireDeny(t, s.mustCheck(t, ks.token(t, "alice", "k9"), "GET", runGet(runA)), 401, "unknown_signing_key")
		assert.Equal(t, http.StatusOK, s.readyz(t), "/readyz with the JWKS down after the first fetch")
	})
}

// forgedTokens signs 64 tokens for alice with the attacker's key under
// key ids prefix-0 … prefix-63, which the key server never publishes.
func forgedTokens(t *testing.T, ks *keyServer, prefix string) []string {
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = ks.token(t, "alice", fmt.Sprintf("%s-%d", prefix, i))
	}
	return tokens
}

// floodResult counts the checks of a flood: sent, answered other than 401
// unknown_signing_key, and failed as RPCs.
type floodResult struct{ sent, wrong, rpcErr int32 }

// floodForged sends tokens round-robin from workers goroutines for d, as
// an attacker with forged key ids would, and returns once they stop.
func (s *service) floodForged(tokens []string, workers int, d time.Duration) floodResult {
	began := time.Now()
	var sent, wrong, rpcErr atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; time.Since(began) < d; i++ {
				res, err := s.check(context.Background(), tokens[i%len(tokens)], "GET", runGet(runA), "")
				sent.Add(1)
				switch {
				case err != nil:
					rpcErr.Add(1)
				case res.Allowed || res.Status != 401 || res.Reason != "unknown_signing_key":
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return floodResult{sent.Load(), wrong.Load(), rpcErr.Load()}
}

// waitUntil polls cond until it holds or limit passes.
func waitUntil(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
