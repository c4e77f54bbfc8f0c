// Package cache puts a bounded, invalidatable in-memory cache in front of a
// store.Reader. It is the hot path of every check: a hit takes a shard read
// lock and allocates nothing.
//
// Grants, regex rows, users, password hashes and names are cached per
// generation. Flush (and Invalidate, which the PostgreSQL watcher calls)
// starts a new generation, so a result read before a revoke is never served
// after the flush that announces it, even when that read was still in flight
// during the flush. Ownership lookups (Resolve) survive flushes: a run never
// moves to another experiment. Names (store.Lookup.Renamable) do not: they
// are cached like grants, so a rename is seen within GrantTTL.
// The few ids that can move (a trace that MLflow's StartTraceV3 merges into
// may change experiment) are read with ResolveFresh, past the cache.
//
// A hit on an entry past half its life starts a background re-read (see
// Cache.ahead), so a key in use is replaced before it expires and never
// costs a check a store round trip; expiry still bounds what is served.
// Grants, the most numerous entries, are re-read in batches: the keys that
// fall due within a few milliseconds are read in one round trip when the
// store can (store.BatchReader), so keeping thousands of keys fresh costs
// the database tens of round trips a second, not thousands.
package cache

import (
	"context"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Options tunes a Cache. Zero values take the defaults.
type Options struct {
	// MaxEntries bounds each of the grants, regex-row, users, password-hash
	// and ownership tables (default 100000).
	MaxEntries int `yaml:"max_entries"`
	// GrantTTL is the safety net for grants, regex rows, users and password
	// hashes should an invalidation be lost (default 60s), and how long a
	// name is kept. Entries hit past half of it are re-read in the
	// background.
	GrantTTL time.Duration `yaml:"grant_ttl"`
	// ResolveTTL keeps resolved ownership (default 10m).
	ResolveTTL time.Duration `yaml:"resolve_ttl"`
	// NotFoundTTL keeps a store.ErrNotFound from Resolve (default 2s): the
	// run may be created a moment later.
	NotFoundTTL time.Duration `yaml:"not_found_ttl"`
	// Now is the clock; nil means the runtime's monotonic clock (time.Since
	// the cache was made). Tests inject one.
	Now func() time.Time `yaml:"-"`
}

func (o Options) withDefaults() Options {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 100000
	}
	if o.GrantTTL <= 0 {
		o.GrantTTL = 60 * time.Second
	}
	if o.ResolveTTL <= 0 {
		o.ResolveTTL = 10 * time.Minute
	}
	if o.NotFoundTTL <= 0 {
		o.NotFoundTTL = 2 * time.Second
	}
	return o
}

// Stats counts lookups since the cache was made.
type Stats struct {
	GrantHits, GrantMisses     uint64
	PatternHits, PatternMisses uint64
	UserHits, UserMisses       uint64
	ResolveHits, ResolveMisses uint64
	HashHits, HashMisses       uint64
	Flushes                    uint64
	// Refreshes counts entries re-read in the background ahead of their
	// expiry (lookups that would otherwise have missed later).
	Refreshes uint64
}

type grantKey struct {
	user string
	kind store.ResourceKind
	id   string
	name string
	ws   string
}

// owned is k with its strings copied into one allocation of their own
// (table.own).
func (k grantKey) owned() grantKey {
	// A Builder always copies, where a concatenation of one non-empty
	// string and empty ones returns that string itself.
	var sb strings.Builder
	sb.Grow(len(k.user) + len(k.id) + len(k.name) + len(k.ws))
	for _, s := range [...]string{k.user, k.id, k.name, k.ws} {
		sb.WriteString(s)
	}
	all := sb.String()
	a, b, c := len(k.user), len(k.user)+len(k.id), len(k.user)+len(k.id)+len(k.name)
	k.user, k.id, k.name, k.ws = all[:a], all[a:b], all[b:c], all[c:]
	return k
}

// resource is the resource k names.
func (k grantKey) resource() store.Resource {
	return store.Resource{Kind: k.kind, ID: k.id, Name: k.name, Workspace: k.ws}
}

// patternKey identifies one Patterns read. groups is a hash of the group
// list; the list itself is kept in the value and compared on a hit, so a
// hit allocates nothing and a hash collision is only a miss.
type patternKey struct {
	user   string
	kind   store.ResourceKind
	groups uint64
}

type patternVal struct {
	groups []string
	p      store.Patterns
}

type resolveKey struct {
	lookup store.Lookup
	key    string
}

type grantVal struct{ g store.Grants }

type userVal struct{ exists, admin bool }

type passwordVal struct {
	p        store.Password
	notFound bool
}

type resolveVal struct {
	ids      []string
	notFound bool
}

// Cache is a store.Reader that caches another. Values it returns are
// shared between callers and must not be modified (Grants.Groups, the
// Grant behind Grants.User, the slice from Resolve).
type Cache struct {
	inner store.Reader
	opts  Options
	seed  maphash.Seed
	born  time.Time // the zero of the cache's clock (see now)

	gen atomic.Uint64 // generation of grants, regex rows, users, password hashes and names

	grants    *table[grantKey, grantVal]
	patterns  *table[patternKey, patternVal]
	users     *table[string, userVal]
	passwords *table[string, passwordVal]
	resolves  *table[resolveKey, resolveVal]

	flight singleflight.Group
	// slots holds a token per background re-read running (see ahead);
	// background waits for them, and for the grant re-reads' rounds.
	slots      chan struct{}
	background sync.WaitGroup
	// dueGrants holds the grant keys waiting for a background re-read
	// (see refreshGrant).
	dueGrants struct {
		sync.Mutex
		keys    []dueGrant
		reading bool // a round is gathering or reading them
	}
	gather time.Duration // how long a round waits for keys to gather

	grantHits, grantMisses     atomic.Uint64
	patternHits, patternMisses atomic.Uint64
	userHits, userMisses       atomic.Uint64
	resolveHits, resolveMisses atomic.Uint64
	hashHits, hashMisses       atomic.Uint64
	flushes                    atomic.Uint64
	refreshes                  atomic.Uint64
}

var (
	_ store.Reader      = (*Cache)(nil)
	_ store.Credentials = (*Cache)(nil)
)

// New returns a cache in front of inner.
func New(inner store.Reader, opts Options) *Cache {
	opts = opts.withDefaults()
	c := &Cache{inner: inner, opts: opts, seed: maphash.MakeSeed(), slots: make(chan struct{}, refreshSlots),
		gather: min(maxGather, opts.GrantTTL/20)}
	if opts.Now != nil {
		c.born = opts.Now()
	} else {
		c.born = time.Now()
	}
	c.grants = newTable[grantKey, grantVal](opts.MaxEntries, func(k grantKey) uint64 {
		// Only picks a shard: user and id spread keys well enough, and two
		// fewer hashes keep the hit cheap.
		return maphash.String(c.seed, k.user) ^ 31*maphash.String(c.seed, k.id)
	}, grantKey.owned)
	c.patterns = newTable[patternKey, patternVal](opts.MaxEntries, func(k patternKey) uint64 {
		return maphash.String(c.seed, k.user) ^ k.groups
	}, func(k patternKey) patternKey { k.user = strings.Clone(k.user); return k })
	c.users = newTable[string, userVal](opts.MaxEntries, func(k string) uint64 { return maphash.String(c.seed, k) }, strings.Clone)
	c.passwords = newTable[string, passwordVal](opts.MaxEntries, func(k string) uint64 { return maphash.String(c.seed, k) }, strings.Clone)
	c.resolves = newTable[resolveKey, resolveVal](opts.MaxEntries, func(k resolveKey) uint64 {
		return maphash.String(c.seed, k.key) ^ 31*maphash.String(c.seed, string(k.lookup))
	}, func(k resolveKey) resolveKey { k.key = strings.Clone(k.key); return k })
	return c
}

// Flush drops every cached grant, user and password hash. Ownership stays.
func (c *Cache) Flush() {
	// The new generation comes first: from here on no earlier read can be
	// stored or served. Clearing afterwards only frees memory.
	c.gen.Add(1)
	c.flushes.Add(1)
	c.grants.clear()
	c.patterns.clear()
	c.users.clear()
	c.passwords.clear()
	// Renamable lookups are in the generation too; the stale ones are never
	// served again and age out.
}

// Invalidate is called for each change notification. Flushing every grant
// is simple and correct; grant changes are rare next to checks.
func (c *Cache) Invalidate() { c.Flush() }

// Stats returns the hit and miss counters.
func (c *Cache) Stats() Stats {
	return Stats{
		GrantHits: c.grantHits.Load(), GrantMisses: c.grantMisses.Load(),
		PatternHits: c.patternHits.Load(), PatternMisses: c.patternMisses.Load(),
		UserHits: c.userHits.Load(), UserMisses: c.userMisses.Load(),
		ResolveHits: c.resolveHits.Load(), ResolveMisses: c.resolveMisses.Load(),
		HashHits: c.hashHits.Load(), HashMisses: c.hashMisses.Load(),
		Flushes: c.flushes.Load(), Refreshes: c.refreshes.Load(),
	}
}

// Grants implements store.Reader.
func (c *Cache) Grants(ctx context.Context, username string, res store.Resource) (store.Grants, error) {
	k := grantKey{user: username, kind: res.Kind, id: res.ID, name: res.Name, ws: res.Workspace}
	now := c.now()
	gen := c.gen.Load()
	if e := c.grants.get(k, gen, now); e != nil {
		c.grantHits.Add(1)
		if e.due(now) {
			c.refreshGrant(&e.claimed, k, gen)
		}
		return e.val.g, nil
	}
	c.grantMisses.Add(1)
	v, err := c.readGrants(ctx, k, gen)
	return v.g, err
}

// readGrants reads k's grants from the store, at generation gen, and
// keeps them.
func (c *Cache) readGrants(ctx context.Context, k grantKey, gen uint64) (grantVal, error) {
	now := c.now()
	fk := flightKey('g', gen, k.user, string(k.kind), k.id, k.name, k.ws)
	v, err := do(ctx, &c.flight, fk, func(ctx context.Context) (grantVal, error) {
		g, err := c.inner.Grants(ctx, k.user, k.resource())
		return grantVal{g}, err
	})
	if err != nil {
		return grantVal{}, err
	}
	c.grants.put(k, v, gen, c.gen.Load, now, c.grantExpiry(now))
	return v, nil
}

// grantExpiry spreads grant expiries over the last tenth of GrantTTL, so
// entries cached in one burst (a replica's first minute) do not all expire,
// and miss, in the same instant. It only ever shortens the TTL, which stays
// the upper bound on staleness should an invalidation be lost.
func (c *Cache) grantExpiry(now int64) int64 {
	ttl := int64(c.opts.GrantTTL)
	return now + ttl - rand.Int64N(ttl/10+1)
}

// now is the cache's clock, in nanoseconds since it was made. Without an
// injected clock it reads only the monotonic clock: half the cost of
// time.Now().UnixNano(), which reads the wall clock too, on every lookup,
// and a TTL that the wall clock being stepped back cannot lengthen.
func (c *Cache) now() int64 {
	if c.opts.Now != nil {
		return int64(c.opts.Now().Sub(c.born))
	}
	return int64(time.Since(c.born))
}

// refreshSlots bounds the background re-reads running at once, so that
// they never take every store connection from the misses.
const refreshSlots = 4

// ahead re-reads an entry in the background, with read, when a hit finds it
// past half its life: an entry in use is replaced before it expires, so
// its key never misses on a check's path. The entry is still served, as
// any hit before its expiry is, so the TTL bounds staleness exactly as
// without this. claimed makes the re-read one per entry. When every slot
// is busy nothing starts, and a later hit tries again.
func (c *Cache) ahead(claimed *atomic.Bool, read func(context.Context)) {
	select {
	case c.slots <- struct{}{}:
	default:
		return
	}
	if !claimed.CompareAndSwap(false, true) {
		<-c.slots
		return
	}
	c.refreshes.Add(1)
	c.background.Add(1)
	go func() {
		defer func() { <-c.slots; c.background.Done() }()
		read(context.Background())
	}()
}

// Bounds of the grants' background re-reads (see refreshGrant).
const (
	// maxGather is how long a round waits at most for due keys to gather
	// before it reads them: at a thousand due keys a second, some fifty
	// keys a round trip. A due entry has about half its life left: ten
	// gathers or more.
	maxGather = 50 * time.Millisecond
	// maxRefreshBatch is the most keys read in one round trip.
	maxRefreshBatch = 64
	// maxDueGrants bounds the keys waiting: past it a due entry is left
	// for a later hit to queue.
	maxDueGrants = 8192
)

// dueGrant is a grant key waiting for its background re-read, with the
// generation its entry was read at.
type dueGrant struct {
	k   grantKey
	gen uint64
}

// refreshGrant queues k (its entry hit past half its life) for a
// background re-read, once per entry (claimed). The first key queued
// starts a round, which waits c.gather for others to fall due, then reads
// them all, in batches of maxRefreshBatch when the store reads batches,
// and goes on in rounds while keys keep coming. As with ahead, the entry is
// served until its expiry whatever the re-read does.
func (c *Cache) refreshGrant(claimed *atomic.Bool, k grantKey, gen uint64) {
	if !claimed.CompareAndSwap(false, true) {
		return
	}
	q := &c.dueGrants
	q.Lock()
	if len(q.keys) >= maxDueGrants {
		q.Unlock()
		claimed.Store(false) // a later hit queues it
		return
	}
	q.keys = append(q.keys, dueGrant{k: k, gen: gen})
	start := !q.reading
	q.reading = true
	q.Unlock()
	c.refreshes.Add(1)
	if start {
		c.background.Add(1)
		go c.readDueGrants()
	}
}

// readDueGrants runs rounds of re-reads until a round finds no key.
func (c *Cache) readDueGrants() {
	defer c.background.Done()
	q := &c.dueGrants
	for {
		time.Sleep(c.gather)
		q.Lock()
		due := q.keys
		q.keys = nil
		q.reading = len(due) > 0
		q.Unlock()
		if len(due) == 0 {
			return
		}
		for len(due) > 0 {
			n := min(len(due), maxRefreshBatch)
			c.readGrantBatch(due[:n])
			due = due[n:]
		}
	}
}

// readGrantBatch re-reads due's grants and keeps them, each unless its
// generation has moved on, as readGrants does. A store that cannot read
// batches reads them one by one; a batch that fails keeps nothing (the
// entries expire at their TTL, and a check's own read says why).
func (c *Cache) readGrantBatch(due []dueGrant) {
	ctx := context.Background()
	br, ok := c.inner.(store.BatchReader)
	if !ok {
		for _, d := range due {
			_, _ = c.readGrants(ctx, d.k, d.gen)
		}
		return
	}
	now := c.now()
	keys := make([]store.GrantsKey, len(due))
	for i, d := range due {
		keys[i] = store.GrantsKey{Username: d.k.user, Resource: d.k.resource()}
	}
	gs, err := br.GrantsBatch(ctx, keys)
	if err != nil {
		return
	}
	for i, d := range due {
		c.grants.put(d.k, grantVal{gs[i]}, d.gen, c.gen.Load, now, c.grantExpiry(now))
	}
}

// Patterns implements store.Reader.
func (c *Cache) Patterns(ctx context.Context, username string, groups []string, kind store.ResourceKind) (store.Patterns, error) {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, g := range groups {
		h.WriteString(g)
		h.WriteByte(0)
	}
	k := patternKey{user: username, kind: kind, groups: h.Sum64()}
	now := c.now()
	gen := c.gen.Load()
	if e := c.patterns.get(k, gen, now); e != nil && slices.Equal(e.val.groups, groups) {
		c.patternHits.Add(1)
		if e.due(now) {
			c.ahead(&e.claimed, func(ctx context.Context) { _, _ = c.readPatterns(ctx, k, e.val.groups, gen) })
		}
		return e.val.p, nil
	}
	c.patternMisses.Add(1)
	v, err := c.readPatterns(ctx, k, groups, gen)
	return v.p, err
}

// readPatterns reads the regex rows of k, for groups, at generation gen,
// and keeps them.
func (c *Cache) readPatterns(ctx context.Context, k patternKey, groups []string, gen uint64) (patternVal, error) {
	now := c.now()
	fk := flightKey('p', gen, append([]string{k.user, string(k.kind)}, groups...)...)
	v, err := do(ctx, &c.flight, fk, func(ctx context.Context) (patternVal, error) {
		p, err := c.inner.Patterns(ctx, k.user, groups, k.kind)
		return patternVal{groups: slices.Clone(groups), p: p}, err
	})
	if err != nil {
		return patternVal{}, err
	}
	c.patterns.put(k, v, gen, c.gen.Load, now, c.grantExpiry(now))
	return v, nil
}

// User implements store.Reader.
func (c *Cache) User(ctx context.Context, username string) (exists, admin bool, err error) {
	now := c.now()
	gen := c.gen.Load()
	if e := c.users.get(username, gen, now); e != nil {
		c.userHits.Add(1)
		if e.due(now) {
			c.ahead(&e.claimed, func(ctx context.Context) { _, _ = c.readUser(ctx, username, gen) })
		}
		return e.val.exists, e.val.admin, nil
	}
	c.userMisses.Add(1)
	v, err := c.readUser(ctx, username, gen)
	return v.exists, v.admin, err
}

// readUser reads username's row at generation gen and keeps it.
func (c *Cache) readUser(ctx context.Context, username string, gen uint64) (userVal, error) {
	now := c.now()
	v, err := do(ctx, &c.flight, flightKey('u', gen, username), func(ctx context.Context) (userVal, error) {
		e, a, err := c.inner.User(ctx, username)
		return userVal{e, a}, err
	})
	if err != nil {
		return userVal{}, err
	}
	c.users.put(username, v, gen, c.gen.Load, now, c.grantExpiry(now))
	return v, nil
}

// Password implements store.Credentials when the cached store does: a
// password change or a user's deletion flushes it like a revoke, so the
// Basic authenticator, which re-reads the password on every request, stops
// accepting the old one within one notification. The expiry is cached as
// a time; the caller compares it with its own clock.
func (c *Cache) Password(ctx context.Context, username string) (store.Password, error) {
	inner, ok := c.inner.(store.Credentials)
	if !ok {
		return store.Password{}, errors.New("cache: the store cannot read password hashes")
	}
	now := c.now()
	gen := c.gen.Load()
	var v passwordVal
	if e := c.passwords.get(username, gen, now); e != nil {
		c.hashHits.Add(1)
		if e.due(now) {
			c.ahead(&e.claimed, func(ctx context.Context) { _, _ = c.readPassword(ctx, inner, username, gen) })
		}
		v = e.val
	} else {
		c.hashMisses.Add(1)
		var err error
		if v, err = c.readPassword(ctx, inner, username, gen); err != nil {
			return store.Password{}, err
		}
	}
	if v.notFound {
		return store.Password{}, store.ErrNotFound
	}
	return v.p, nil
}

// readPassword reads username's password hash at generation gen and keeps
// it.
func (c *Cache) readPassword(ctx context.Context, inner store.Credentials, username string, gen uint64) (passwordVal, error) {
	now := c.now()
	v, err := do(ctx, &c.flight, flightKey('p', gen, username), func(ctx context.Context) (passwordVal, error) {
		p, err := inner.Password(ctx, username)
		if errors.Is(err, store.ErrNotFound) {
			return passwordVal{notFound: true}, nil
		}
		return passwordVal{p: p}, err
	})
	if err != nil {
		return passwordVal{}, err
	}
	c.passwords.put(username, v, gen, c.gen.Load, now, c.grantExpiry(now))
	return v, nil
}

// Resolve implements store.Reader.
func (c *Cache) Resolve(ctx context.Context, l store.Lookup, key string) ([]string, error) {
	k := resolveKey{lookup: l, key: key}
	now := c.now()
	// Ownership is of no generation; a name is of the grants' one.
	gen := uint64(0)
	if l.Renamable() {
		gen = c.gen.Load()
	}
	var v resolveVal
	if e := c.resolves.get(k, gen, now); e != nil {
		c.resolveHits.Add(1)
		if e.due(now) {
			c.ahead(&e.claimed, func(ctx context.Context) { _, _ = c.readResolve(ctx, k, gen) })
		}
		v = e.val
	} else {
		c.resolveMisses.Add(1)
		var err error
		if v, err = c.readResolve(ctx, k, gen); err != nil {
			return nil, err
		}
	}
	if v.notFound {
		return nil, store.ErrNotFound
	}
	return v.ids, nil
}

// readResolve resolves k at generation gen (0 for ownership) and keeps the
// answer, a store.ErrNotFound too (for NotFoundTTL).
func (c *Cache) readResolve(ctx context.Context, k resolveKey, gen uint64) (resolveVal, error) {
	now := c.now()
	v, err := do(ctx, &c.flight, flightKey('r', gen, string(k.lookup), k.key), func(ctx context.Context) (resolveVal, error) {
		ids, err := c.inner.Resolve(ctx, k.lookup, k.key)
		if errors.Is(err, store.ErrNotFound) {
			return resolveVal{notFound: true}, nil
		}
		return resolveVal{ids: ids}, err
	})
	if err != nil {
		return resolveVal{}, err
	}
	current, expires := zeroGen, now+int64(c.opts.ResolveTTL)
	if k.lookup.Renamable() {
		current = c.gen.Load
	}
	switch {
	case v.notFound:
		expires = now + int64(c.opts.NotFoundTTL)
	case k.lookup.Renamable():
		expires = c.grantExpiry(now)
	}
	c.resolves.put(k, v, gen, current, now, expires)
	return v, nil
}

// ResolveFresh implements store.FreshResolver: it reads through to the
// store whatever the cache holds, without joining a read already in
// flight (which may have started before a change), and keeps the answer
// for the next Resolve.
func (c *Cache) ResolveFresh(ctx context.Context, l store.Lookup, key string) ([]string, error) {
	c.resolveMisses.Add(1)
	now := c.now()
	ids, err := c.inner.Resolve(ctx, l, key)
	v := resolveVal{ids: ids}
	ttl := c.opts.ResolveTTL
	switch {
	case errors.Is(err, store.ErrNotFound):
		v, ttl = resolveVal{notFound: true}, c.opts.NotFoundTTL
	case err != nil:
		return nil, err
	}
	c.resolves.put(resolveKey{lookup: l, key: key}, v, 0, zeroGen, now, now+int64(ttl))
	if v.notFound {
		return nil, store.ErrNotFound
	}
	return ids, nil
}

func zeroGen() uint64 { return 0 }

// flightKey joins the parts with NUL, which no username or id contains in
// a way that could collide (a part with NUL only collides with itself
// split differently, which then names the same lookup). The generation is
// part of the key so that a caller arriving after a flush never shares a
// read that started before it.
func flightKey(kind byte, gen uint64, parts ...string) string {
	b := make([]byte, 0, 64)
	b = append(b, kind)
	b = strconv.AppendUint(b, gen, 10)
	for _, p := range parts {
		b = append(b, 0)
		b = append(b, p...)
	}
	return string(b)
}

// do runs fn once for concurrent callers of the same key. The shared read
// runs detached from any one caller's cancellation (the store bounds it
// with its own timeout), and each caller still stops waiting when its own
// context ends.
func do[V any](ctx context.Context, g *singleflight.Group, key string, fn func(context.Context) (V, error)) (V, error) {
	ch := g.DoChan(key, func() (any, error) {
		return fn(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		return r.Val.(V), nil
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// Layout reports the layout of the store behind c (the zero LayoutInfo
// when it does not say).
func (c *Cache) Layout() store.LayoutInfo {
	if l, ok := c.inner.(store.LayoutReporter); ok {
		return l.Layout()
	}
	return store.LayoutInfo{}
}
