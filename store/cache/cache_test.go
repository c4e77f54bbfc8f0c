package cache_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// gated wraps a real store and counts calls. When hold is set, each call
// reads the database first and then waits for release before returning,
// which opens the window between a read and its caching.
type gated struct {
	store.Reader
	calls atomic.Int64
	// batches and batchKeys count GrantsBatch calls and the keys in them.
	batches, batchKeys atomic.Int64
	hold               atomic.Bool
	fail               atomic.Bool // every call fails, as with the database down
	entered            chan struct{}
	release            chan struct{}
}

func (g *gated) wait() {
	if g.hold.Load() {
		g.entered <- struct{}{}
		<-g.release
	}
}

var errDown = errors.New("test: the database is down")

func (g *gated) Grants(ctx context.Context, u string, r store.Resource) (store.Grants, error) {
	g.calls.Add(1)
	if g.fail.Load() {
		return store.Grants{}, errDown
	}
	v, err := g.Reader.Grants(ctx, u, r)
	g.wait()
	return v, err
}

// GrantsBatch reads each key as Grants does, as one call: the cache's
// background re-reads come in batches (store.BatchReader).
func (g *gated) GrantsBatch(ctx context.Context, keys []store.GrantsKey) ([]store.Grants, error) {
	g.calls.Add(1)
	g.batches.Add(1)
	g.batchKeys.Add(int64(len(keys)))
	if g.fail.Load() {
		return nil, errDown
	}
	out := make([]store.Grants, len(keys))
	for i, k := range keys {
		v, err := g.Reader.Grants(ctx, k.Username, k.Resource)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	g.wait()
	return out, nil
}

func (g *gated) User(ctx context.Context, u string) (bool, bool, error) {
	g.calls.Add(1)
	e, a, err := g.Reader.User(ctx, u)
	g.wait()
	return e, a, err
}

func (g *gated) Patterns(ctx context.Context, u string, groups []string, k store.ResourceKind) (store.Patterns, error) {
	g.calls.Add(1)
	v, err := g.Reader.Patterns(ctx, u, groups, k)
	g.wait()
	return v, err
}

func (g *gated) Resolve(ctx context.Context, l store.Lookup, k string) ([]string, error) {
	g.calls.Add(1)
	v, err := g.Reader.Resolve(ctx, l, k)
	g.wait()
	return v, err
}

func (g *gated) Password(ctx context.Context, u string) (store.Password, error) {
	g.calls.Add(1)
	p, err := g.Reader.(store.Credentials).Password(ctx, u)
	g.wait()
	return p, err
}

type fixture struct {
	inner *gated
	exec  func(q string)
	path  string
}

// newFixture opens a real SQLite store with alice holding READ on
// experiment 1 and run r1 in experiment 1.
func newFixture(t *testing.T) fixture {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mlflow.db")
	require.NoError(t, sqlite.Migrate(t.Context(), p))
	run := storetest.SQLiteExec(t, p)
	exec := func(q string) {
		t.Helper()
		storetest.Must(t, run, q)
	}
	exec(`CREATE TABLE runs (run_uuid VARCHAR(32) NOT NULL PRIMARY KEY, experiment_id INTEGER)`)
	exec(`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', 0)`)
	exec(`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'READ')`)
	exec(`INSERT INTO runs VALUES ('r1', 1)`)
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: p})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return fixture{inner: &gated{Reader: st, entered: make(chan struct{}), release: make(chan struct{})}, exec: exec, path: p}
}

var exp1 = store.Resource{Kind: store.Experiment, ID: "1"}

func readGrant(g store.Grants) *store.Grant { return g.User }

func TestGrantsHitMissAndFlush(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{})
	for range 3 {
		g, err := c.Grants(t.Context(), "alice", exp1)
		require.NoError(t, err)
		require.Equal(t, &store.Grant{Permission: store.Read, Valid: true}, g.User)
	}
	assert.EqualValues(t, 1, f.inner.calls.Load())
	assert.Equal(t, cache.Stats{GrantHits: 2, GrantMisses: 1}, c.Stats())

	f.exec(`DELETE FROM experiment_permissions`)
	c.Flush()
	g, err := c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err)
	assert.Nil(t, g.User)
	assert.EqualValues(t, 2, f.inner.calls.Load())
}

// TestPasswordHitMissAndFlush: hashes are cached per generation like
// users, a missing user is cached too (an unknown username in a Basic
// credential costs one query per generation, not one per request), and a
// store that cannot read hashes is an error, never an empty hash.
func TestPasswordHitMissAndFlush(t *testing.T) {
	f := newFixture(t)
	f.exec(`UPDATE users SET password_hash = 'pbkdf2:sha256:1$s$h' WHERE username = 'alice'`)
	c := cache.New(f.inner, cache.Options{})
	for range 3 {
		p, err := c.Password(t.Context(), "alice")
		require.NoError(t, err)
		require.Equal(t, store.Password{Hash: "pbkdf2:sha256:1$s$h"}, p)
		_, err = c.Password(t.Context(), "ghost")
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	assert.EqualValues(t, 2, f.inner.calls.Load())
	assert.Equal(t, cache.Stats{HashHits: 4, HashMisses: 2}, c.Stats())

	f.exec(`UPDATE users SET password_hash = NULL WHERE username = 'alice'`)
	c.Flush()
	_, err := c.Password(t.Context(), "alice")
	require.ErrorIs(t, err, store.ErrNotFound, "a NULL hash after the flush")
	assert.EqualValues(t, 3, f.inner.calls.Load())

	bare := cache.New(struct{ store.Reader }{f.inner}, cache.Options{})
	_, err = bare.Password(t.Context(), "alice")
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrNotFound)
}

// TestFlushRacingMiss: a read that began before a revoke and ends after
// the flush announcing it must not be cached (no stale allow).
func TestFlushRacingMiss(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{})
	f.inner.hold.Store(true)
	got := make(chan store.Grants, 1)
	go func() {
		g, _ := c.Grants(context.Background(), "alice", exp1)
		got <- g
	}()
	<-f.inner.entered // the old grant has been read
	f.exec(`DELETE FROM experiment_permissions`)
	c.Invalidate()
	f.inner.hold.Store(false)
	close(f.inner.release)
	old := <-got
	require.NotNil(t, old.User, "the in-flight caller may see the value it read")

	g, err := c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err)
	assert.Nil(t, g.User, "the stale read must not have been cached")
}

// TestSingleFlight: concurrent misses for one key make one store call, and
// a caller arriving after a flush does not join a read from before it.
func TestSingleFlight(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{})
	f.inner.hold.Store(true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { _, _ = c.Grants(context.Background(), "alice", exp1) })
	}
	<-f.inner.entered
	// The other seven are waiting on the same flight by now, or will find
	// it; give them a moment to join.
	time.Sleep(50 * time.Millisecond)
	c.Flush()
	post := make(chan struct{})
	go func() { _, _ = c.Grants(context.Background(), "alice", exp1); close(post) }()
	<-f.inner.entered // the post-flush caller started its own read
	f.inner.hold.Store(false)
	close(f.inner.release)
	wg.Wait()
	<-post
	assert.EqualValues(t, 2, f.inner.calls.Load())
}

func TestCallerCancelStopsWaiting(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{})
	f.inner.hold.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { _, err := c.Grants(ctx, "alice", exp1); errc <- err }()
	<-f.inner.entered
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	f.inner.hold.Store(false)
	close(f.inner.release)
}

func TestErrorsAreNotCached(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{})
	bad := store.Resource{Kind: "bogus", ID: "1"}
	for range 2 {
		_, err := c.Grants(t.Context(), "alice", bad)
		require.Error(t, err)
	}
	assert.EqualValues(t, 2, f.inner.calls.Load())
	for range 2 {
		_, err := c.Resolve(t.Context(), "bogus", "1")
		require.Error(t, err)
	}
	assert.EqualValues(t, 4, f.inner.calls.Load())
}

// TestTTLOnTheRuntimeClock: without an injected clock the TTL runs on the
// runtime's monotonic clock, and still ends.
func TestTTLOnTheRuntimeClock(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{GrantTTL: 200 * time.Millisecond})
	_, err := c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err)
	f.exec(`DELETE FROM experiment_permissions`) // no notification: only the TTL saves us
	g, _ := c.Grants(t.Context(), "alice", exp1)
	assert.NotNil(t, readGrant(g), "served from the cache before the TTL")
	time.Sleep(250 * time.Millisecond)
	g, _ = c.Grants(t.Context(), "alice", exp1)
	assert.Nil(t, readGrant(g), "expired after GrantTTL")
}

func TestTTLs(t *testing.T) {
	f := newFixture(t)
	clk := storetest.NewClock(time.Unix(1e9, 0))
	c := cache.New(f.inner, cache.Options{Now: clk.Now, GrantTTL: time.Minute, ResolveTTL: 10 * time.Minute, NotFoundTTL: 2 * time.Second})

	_, err := c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err)
	f.exec(`DELETE FROM experiment_permissions`) // no notification: only the TTL saves us
	clk.Advance(53 * time.Second)                // expiries are spread over the TTL's last tenth
	g, _ := c.Grants(t.Context(), "alice", exp1)
	assert.NotNil(t, readGrant(g))
	clk.Advance(7 * time.Second)
	g, _ = c.Grants(t.Context(), "alice", exp1)
	assert.Nil(t, readGrant(g), "expired after GrantTTL")

	exists, _, err := c.User(t.Context(), "bob")
	require.NoError(t, err)
	assert.False(t, exists)
	f.exec(`INSERT INTO users (id, username, is_admin) VALUES (2, 'bob', 1)`)
	c.Flush()
	exists, admin, err := c.User(t.Context(), "bob")
	require.NoError(t, err)
	assert.True(t, exists)
	assert.True(t, admin)

	_, err = c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.ErrorIs(t, err, store.ErrNotFound)
	f.exec(`INSERT INTO runs VALUES ('r2', 5)`)
	_, err = c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.ErrorIs(t, err, store.ErrNotFound, "not-found is cached briefly")
	clk.Advance(2 * time.Second)
	ids, err := c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.NoError(t, err)
	assert.Equal(t, []string{"5"}, ids)

	f.exec(`UPDATE runs SET experiment_id = 9`)
	c.Flush()
	ids, err = c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.NoError(t, err)
	assert.Equal(t, []string{"5"}, ids, "ownership survives flushes")
	clk.Advance(10 * time.Minute)
	ids, err = c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.NoError(t, err)
	assert.Equal(t, []string{"9"}, ids, "until ResolveTTL")
	s := c.Stats()
	assert.EqualValues(t, 2, s.ResolveHits)
	assert.EqualValues(t, 3, s.ResolveMisses)
}

// TestResolveFresh: a fresh resolve reads past a cached answer, positive
// or negative, and what it read is what Resolve answers next.
func TestResolveFresh(t *testing.T) {
	f := newFixture(t)
	clk := storetest.NewClock(time.Unix(1e9, 0))
	c := cache.New(f.inner, cache.Options{Now: clk.Now, ResolveTTL: 10 * time.Minute, NotFoundTTL: 2 * time.Second})
	var _ store.FreshResolver = c

	_, err := c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.ErrorIs(t, err, store.ErrNotFound)
	f.exec(`INSERT INTO runs VALUES ('r2', 5)`)
	ids, err := c.ResolveFresh(t.Context(), store.RunExperiment, "r2")
	require.NoError(t, err, "a cached not-found does not hide a row created since")
	assert.Equal(t, []string{"5"}, ids)

	f.exec(`UPDATE runs SET experiment_id = 9 WHERE run_uuid = 'r2'`)
	ids, err = c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.NoError(t, err)
	assert.Equal(t, []string{"5"}, ids, "Resolve still answers from the cache")
	ids, err = c.ResolveFresh(t.Context(), store.RunExperiment, "r2")
	require.NoError(t, err)
	assert.Equal(t, []string{"9"}, ids, "a fresh resolve sees the move")
	ids, err = c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.NoError(t, err)
	assert.Equal(t, []string{"9"}, ids, "and replaces the cached answer")

	f.exec(`DELETE FROM runs WHERE run_uuid = 'r2'`)
	_, err = c.ResolveFresh(t.Context(), store.RunExperiment, "r2")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = c.Resolve(t.Context(), store.RunExperiment, "r2")
	require.ErrorIs(t, err, store.ErrNotFound, "the fresh not-found is cached like any other")
}

// TestPatternsAndNames: regex rows are cached per user, kind and group
// list, and flushed with the grants; a name (renamable) is flushed too,
// and kept no longer than GrantTTL, unlike ownership.
func TestPatternsAndNames(t *testing.T) {
	f := newFixture(t)
	f.exec(`CREATE TABLE experiment_regex_permissions (id INTEGER PRIMARY KEY, regex VARCHAR(255) NOT NULL,
		priority INTEGER NOT NULL, user_id INTEGER NOT NULL, permission VARCHAR(255))`)
	f.exec(`CREATE TABLE experiment_group_regex_permissions (id INTEGER PRIMARY KEY, regex VARCHAR(255) NOT NULL,
		priority INTEGER NOT NULL, group_id INTEGER NOT NULL, permission VARCHAR(255))`)
	f.exec(`CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256) NOT NULL)`)
	f.exec(`INSERT INTO groups (id, group_name) VALUES (1, 'team'), (2, 'ops')`)
	f.exec(`INSERT INTO experiment_regex_permissions VALUES (1, '^a', 1, 1, 'READ')`)
	f.exec(`INSERT INTO experiment_group_regex_permissions VALUES (1, '^b', 1, 1, 'EDIT'), (2, '^c', 1, 2, 'MANAGE')`)
	f.exec(`INSERT INTO experiments VALUES (1, 'alpha')`)
	// The store reads which tables exist when it opens.
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: f.path})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	f.inner.Reader = st
	clk := storetest.NewClock(time.Unix(1e9, 0))
	c := cache.New(f.inner, cache.Options{Now: clk.Now, GrantTTL: time.Minute})
	ctx := t.Context()

	team := []string{"team"}
	for range 2 {
		p, err := c.Patterns(ctx, "alice", team, store.Experiment)
		require.NoError(t, err)
		require.Len(t, p.User, 1)
		require.Len(t, p.Groups, 1)
		assert.Equal(t, "team", p.Groups[0].Group)
	}
	p, err := c.Patterns(ctx, "alice", []string{"ops"}, store.Experiment)
	require.NoError(t, err)
	assert.Equal(t, "ops", p.Groups[0].Group, "another group list is another entry")
	assert.EqualValues(t, 2, f.inner.calls.Load())
	assert.EqualValues(t, 1, c.Stats().PatternHits)

	f.exec(`UPDATE experiment_regex_permissions SET permission = 'MANAGE'`)
	c.Invalidate()
	p, err = c.Patterns(ctx, "alice", team, store.Experiment)
	require.NoError(t, err)
	assert.Equal(t, store.Manage, p.User[0].Grant.Permission, "flushed with the grants")

	name := func() []string {
		t.Helper()
		v, err := c.Resolve(ctx, store.NameOfExperiment, "1")
		require.NoError(t, err)
		return v
	}
	assert.Equal(t, []string{"alpha"}, name())
	f.exec(`UPDATE experiments SET name = 'beta'`)
	assert.Equal(t, []string{"alpha"}, name(), "cached")
	c.Flush()
	assert.Equal(t, []string{"beta"}, name(), "a name does not survive a flush")
	f.exec(`UPDATE experiments SET name = 'gamma'`)
	clk.Advance(time.Minute)
	assert.Equal(t, []string{"gamma"}, name(), "nor GrantTTL")
}

func TestBounded(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{MaxEntries: 128})
	for i := range 2000 {
		_, err := c.Grants(t.Context(), "alice", store.Resource{Kind: store.Experiment, ID: fmt.Sprint(i)})
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, cache.GrantEntries(c), 128)
	assert.Positive(t, cache.GrantEntries(c))
	// A hot key survives the churn (CLOCK gives referenced entries a
	// second chance).
	hot := store.Resource{Kind: store.Experiment, ID: "hot"}
	_, _ = c.Grants(t.Context(), "alice", hot)
	before := f.inner.calls.Load()
	for i := range 500 {
		_, _ = c.Grants(t.Context(), "alice", hot)
		_, _ = c.Grants(t.Context(), "bob", store.Resource{Kind: store.Experiment, ID: fmt.Sprint(i)})
	}
	assert.Less(t, f.inner.calls.Load()-before, int64(520), "the hot key was mostly served from the cache")
}

func TestHitDoesNotAllocate(t *testing.T) {
	f := newFixture(t)
	c := cache.New(f.inner, cache.Options{})
	ctx := t.Context()
	groups := []string{"team", "ops"}
	_, _ = c.Grants(ctx, "alice", exp1)
	_, _, _ = c.User(ctx, "alice")
	_, _ = c.Resolve(ctx, store.RunExperiment, "r1")
	_, _ = c.Patterns(ctx, "alice", groups, store.Experiment)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = c.Grants(ctx, "alice", exp1)
		_, _, _ = c.User(ctx, "alice")
		_, _ = c.Resolve(ctx, store.RunExperiment, "r1")
		_, _ = c.Patterns(ctx, "alice", groups, store.Experiment)
	})
	assert.Zero(t, allocs)
}

func BenchmarkCacheHit(b *testing.B) {
	p := filepath.Join(b.TempDir(), "mlflow.db")
	require.NoError(b, sqlite.Migrate(b.Context(), p))
	st, err := sqlite.Open(b.Context(), sqlite.Config{TrackingPath: p})
	require.NoError(b, err)
	defer st.Close()
	c := cache.New(st, cache.Options{})
	ctx := b.Context()
	_, err = c.Grants(ctx, "alice", exp1)
	require.NoError(b, err)
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = c.Grants(ctx, "alice", exp1)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = c.Grants(ctx, "alice", exp1)
			}
		})
	})
}

// TestReplaceWhileRead: an entry replaced (its key expired and read
// again) while other callers hit it. Run under -race: an entry changed in
// place while a hit reads it could pair a new generation with an old
// value.
func TestReplaceWhileRead(t *testing.T) {
	f := newFixture(t)
	clk := storetest.NewClock(time.Unix(1e9, 0))
	c := cache.New(f.inner, cache.Options{Now: clk.Now, GrantTTL: time.Minute})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				g, err := c.Grants(context.Background(), "alice", exp1)
				if err != nil || g.User == nil || g.User.Permission != store.Read {
					t.Errorf("Grants: %v, %+v", err, g.User)
					return
				}
			}
		}()
	}
	for range 200 {
		clk.Advance(61 * time.Second) // every entry expires; the next caller replaces it
		time.Sleep(100 * time.Microsecond)
	}
	close(done)
	wg.Wait()
	assert.Greater(t, c.Stats().GrantMisses, uint64(10), "entries were replaced while read")
}

// TestRefreshAhead: a hit past half an entry's life serves it and re-reads
// it once in the background, so a key in use never misses; before that
// point nothing is re-read.
func TestRefreshAhead(t *testing.T) {
	f := newFixture(t)
	clk := storetest.NewClock(time.Unix(1e9, 0))
	c := cache.New(f.inner, cache.Options{Now: clk.Now, GrantTTL: time.Minute})
	grant := func() *store.Grant {
		t.Helper()
		g, err := c.Grants(t.Context(), "alice", exp1)
		require.NoError(t, err)
		return g.User
	}
	require.Equal(t, store.Read, grant().Permission)
	f.exec(`UPDATE experiment_permissions SET permission = 'EDIT'`) // no notification

	clk.Advance(26 * time.Second) // the earliest half life, with the expiry's jitter, is 27 s
	assert.Equal(t, store.Read, grant().Permission)
	cache.WaitRefreshes(c)
	assert.EqualValues(t, 1, f.inner.calls.Load(), "nothing re-read before half the entry's life")

	clk.Advance(5 * time.Second)
	assert.Equal(t, store.Read, grant().Permission, "the hit that starts a re-read is served the entry")
	cache.WaitRefreshes(c)
	assert.EqualValues(t, 2, f.inner.calls.Load())
	assert.Equal(t, store.Edit, grant().Permission, "the re-read replaced the entry")

	// Many hits on a due entry start one re-read.
	clk.Advance(31 * time.Second)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() { _, _ = c.Grants(context.Background(), "alice", exp1) })
	}
	wg.Wait()
	cache.WaitRefreshes(c)
	assert.EqualValues(t, 3, f.inner.calls.Load())
	s := c.Stats()
	assert.EqualValues(t, 1, s.GrantMisses, "only the first read missed")
	assert.EqualValues(t, 2, s.Refreshes)
}

// cachedOnce returns a cache with a one-minute GrantTTL on a clock of its
// own, in front of a fixture, with alice's grant on experiment 1 read once.
func cachedOnce(t *testing.T) (fixture, *storetest.Clock, *cache.Cache) {
	t.Helper()
	f := newFixture(t)
	clk := storetest.NewClock(time.Unix(1e9, 0))
	c := cache.New(f.inner, cache.Options{Now: clk.Now, GrantTTL: time.Minute})
	_, err := c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err)
	return f, clk, c
}

// TestRefreshRacingFlush: a background re-read that read before a flush
// is not kept, exactly as a miss's read is not.
func TestRefreshRacingFlush(t *testing.T) {
	f, clk, c := cachedOnce(t)
	clk.Advance(31 * time.Second)
	f.inner.hold.Store(true)
	g, err := c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err)
	require.NotNil(t, g.User)
	<-f.inner.entered // the re-read has read the old grant
	f.exec(`DELETE FROM experiment_permissions`)
	c.Invalidate()
	f.inner.hold.Store(false)
	close(f.inner.release)
	cache.WaitRefreshes(c)

	g, err = c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err)
	assert.Nil(t, g.User, "the re-read from before the flush must not have been kept")
	assert.EqualValues(t, 3, f.inner.calls.Load())
}

// TestRefreshFailureExpires: a failed background re-read keeps nothing;
// the entry still expires at its TTL, and the check's own read then fails
// (closed).
func TestRefreshFailureExpires(t *testing.T) {
	f, clk, c := cachedOnce(t)
	f.inner.fail.Store(true)
	clk.Advance(31 * time.Second)
	g, err := c.Grants(t.Context(), "alice", exp1)
	require.NoError(t, err, "served from the cache while the re-read fails")
	require.NotNil(t, g.User)
	cache.WaitRefreshes(c)
	assert.EqualValues(t, 2, f.inner.calls.Load())
	clk.Advance(29 * time.Second)
	_, err = c.Grants(t.Context(), "alice", exp1)
	require.ErrorIs(t, err, errDown, "past the TTL the entry is gone")
}

// TestRefreshSlots: at most a few re-reads of users run at once; a due
// entry hit while all are busy is re-read by a later hit.
func TestRefreshSlots(t *testing.T) {
	f := newFixture(t)
	clk := storetest.NewClock(time.Unix(1e9, 0))
	c := cache.New(f.inner, cache.Options{Now: clk.Now, GrantTTL: time.Minute})
	user := func(i int) string { return fmt.Sprint("user", i) }
	const n = 6
	for i := range n {
		_, _, err := c.User(t.Context(), user(i))
		require.NoError(t, err)
	}
	clk.Advance(31 * time.Second)
	f.inner.hold.Store(true)
	for i := range n {
		_, _, err := c.User(t.Context(), user(i))
		require.NoError(t, err)
	}
	started := c.Stats().Refreshes
	require.Less(t, started, uint64(n), "the slots bound the re-reads running at once")
	require.Positive(t, started)
	for range started {
		<-f.inner.entered
	}
	f.inner.hold.Store(false)
	close(f.inner.release)
	cache.WaitRefreshes(c)
	for i := range n {
		_, _, err := c.User(t.Context(), user(i))
		require.NoError(t, err)
	}
	cache.WaitRefreshes(c)
	assert.EqualValues(t, n, c.Stats().Refreshes, "the entries left out were re-read by a later hit")
	assert.EqualValues(t, n, c.Stats().UserMisses)
}

// TestRefreshGrantsBatched: grant entries that fall due together are
// re-read in one batch, and each re-read replaces its own entry; a store
// that cannot read batches has them read one by one.
func TestRefreshGrantsBatched(t *testing.T) {
	const n = 100 // more than one batch
	exp := func(i int) store.Resource { return store.Resource{Kind: store.Experiment, ID: fmt.Sprint(i + 1)} }
	for _, batched := range []bool{true, false} {
		t.Run(fmt.Sprint("batched=", batched), func(t *testing.T) {
			f := newFixture(t)
			clk := storetest.NewClock(time.Unix(1e9, 0))
			var inner store.Reader = f.inner
			if !batched {
				inner = struct{ store.Reader }{f.inner}
			}
			c := cache.New(inner, cache.Options{Now: clk.Now, GrantTTL: time.Minute})
			for i := range n {
				_, err := c.Grants(t.Context(), "alice", exp(i))
				require.NoError(t, err)
			}
			// Changed with no notification: only the re-reads can see it.
			f.exec(`UPDATE experiment_permissions SET permission = 'EDIT'`)
			clk.Advance(31 * time.Second)
			f.inner.calls.Store(0)
			for i := range n {
				g, err := c.Grants(t.Context(), "alice", exp(i))
				require.NoError(t, err)
				if i == 0 {
					require.Equal(t, store.Read, g.User.Permission, "a due entry is served while it is re-read")
				}
			}
			assert.EqualValues(t, n, c.Stats().Refreshes, "every due entry was queued")
			cache.WaitRefreshes(c)
			if batched {
				assert.EqualValues(t, 2, f.inner.batches.Load(), "100 keys: two batches of at most 64")
				assert.EqualValues(t, n, f.inner.batchKeys.Load())
				assert.EqualValues(t, 2, f.inner.calls.Load())
			} else {
				assert.EqualValues(t, n, f.inner.calls.Load(), "one read per key")
				assert.Zero(t, f.inner.batches.Load())
			}
			g, err := c.Grants(t.Context(), "alice", exp(0))
			require.NoError(t, err)
			assert.Equal(t, store.Edit, g.User.Permission, "the re-read replaced the entry")
			g, err = c.Grants(t.Context(), "alice", exp(n-1))
			require.NoError(t, err)
			assert.Nil(t, g.User, "no grant on that experiment, re-read as such")
			assert.EqualValues(t, n, c.Stats().GrantMisses, "only the first reads missed")
		})
	}
}
