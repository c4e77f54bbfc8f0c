package cache

import (
	"sync"
	"sync/atomic"
)

const shardCount = 64

// table is a bounded map split into shards, each evicting with CLOCK
// (second chance): a hit only sets an atomic flag under the read lock, so
// concurrent hits never serialize on a write lock the way an LRU's
// move-to-front would.
type table[K comparable, V any] struct {
	hash func(K) uint64
	// own returns a copy of a key that shares no memory with the caller's.
	// A key is often a substring of a whole request (an id read from its
	// path or body, which the gRPC handler holds in one string): kept as
	// it came, one cached key would keep the whole request in memory.
	own    func(K) K
	shards [shardCount]shard[K, V]
}

type shard[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]*entry[V]
	ring []K // keys in insertion slots; the clock hand sweeps it
	hand int
	max  int
}

// entry is immutable once in a shard's map, but for its atomic flags.
type entry[V any] struct {
	val     V
	gen     uint64
	refresh int64 // on the cache's clock (Cache.now): a hit from here on re-reads it ahead of expires
	expires int64 // on the cache's clock
	ref     atomic.Bool
	claimed atomic.Bool // a background re-read of this entry has started
}

// due reports whether a hit at now should re-read e in the background: it
// is past half its life and no re-read of it has started.
func (e *entry[V]) due(now int64) bool {
	return now >= e.refresh && !e.claimed.Load()
}

func newTable[K comparable, V any](maxEntries int, hash func(K) uint64, own func(K) K) *table[K, V] {
	t := &table[K, V]{hash: hash, own: own}
	per := max(1, (maxEntries+shardCount-1)/shardCount)
	for i := range t.shards {
		t.shards[i].m = make(map[K]*entry[V])
		t.shards[i].max = per
	}
	return t
}

func (t *table[K, V]) shard(k K) *shard[K, V] {
	return &t.shards[t.hash(k)%shardCount]
}

// get returns the entry for k if it is of generation gen and not expired,
// else nil.
func (t *table[K, V]) get(k K, gen uint64, now int64) *entry[V] {
	s := t.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || e.gen != gen || now >= e.expires {
		return nil
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e
}

// put stores v for k, read at generation gen at time now and kept until
// expires, unless the generation has moved on since (checked under the
// shard lock that clear also takes).
func (t *table[K, V]) put(k K, v V, gen uint64, current func() uint64, now, expires int64) {
	s := t.shard(k)
	k = t.own(k) // before the lock: a copy, off the hit path
	s.mu.Lock()
	defer s.mu.Unlock()
	if current() != gen {
		return // a flush raced with this read: its result may be stale
	}
	e := &entry[V]{val: v, gen: gen, refresh: now + (expires-now)/2, expires: expires}
	if _, ok := s.m[k]; ok {
		// A new entry, never the old one changed in place: get reads an
		// entry's fields after releasing the lock, and a reader that saw
		// a new generation beside an old value would serve a grant read
		// before a flush as if read after it.
		s.m[k] = e
		return
	}
	if len(s.ring) < s.max {
		s.ring = append(s.ring, k)
		s.m[k] = e
		return
	}
	for {
		victim := s.ring[s.hand]
		ve := s.m[victim]
		if ve != nil && ve.ref.Load() {
			ve.ref.Store(false)
			s.hand = (s.hand + 1) % len(s.ring)
			continue
		}
		delete(s.m, victim)
		s.ring[s.hand] = k
		s.m[k] = e
		s.hand = (s.hand + 1) % len(s.ring)
		return
	}
}

func (t *table[K, V]) clear() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.ring = s.ring[:0]
		s.hand = 0
		s.mu.Unlock()
	}
}

func (t *table[K, V]) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
