package authn

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Token cache defaults.
const (
	// TokenCacheDefaultSize bounds the verified-token cache when the config
	// does not (token_cache_size).
	TokenCacheDefaultSize = 10000
	// TokenCacheDefaultTTL is how long a verified token is trusted without
	// re-verification when the config does not say (token_cache_ttl). The
	// token's own exp always wins when it is earlier.
	TokenCacheDefaultTTL = 5 * time.Minute
)

// TokenCache remembers tokens that were fully verified, so the UI's bursts
// of XHRs cost one signature check per token instead of one per request. It
// is keyed by a 64-bit maphash of the token under a seed drawn at random for
// each cache, and an entry keeps the whole token: a hit is a hash match AND
// an equal token, so a collision is only a miss (then a full verification),
// never someone else's identity. That is as safe as a SHA-256 key and about
// a tenth of its cost on a 1.5 KB token, on every cached check. The price is
// memory: at most size tokens (a Keycloak access token is 1-4 KB).
//
// It is bounded: when full, the oldest insertion is evicted (FIFO), which is
// enough because every entry expires within the TTL anyway.
//
// A TokenCache is safe for concurrent use. The zero value is not usable; call
// NewTokenCache.
type TokenCache struct {
	seed    maphash.Seed
	mu      sync.RWMutex
	entries map[uint64]tokenCacheEntry
	// ring holds the keys in insertion order; next is where the next key
	// goes, evicting whatever key is there.
	ring []uint64
	used []bool
	next int
	ttl  time.Duration
}

type tokenCacheEntry struct {
	// token is compared on every hit. Comparing in variable time is fine:
	// to reach the comparison with another caller's entry, a token must hit
	// its 64-bit key under a seed the caller never sees.
	token string
	id    *authz.Identity
	// until is the Unix time in nanoseconds after which the entry is dead.
	until int64
	// slot is the ring position of this key, so eviction can tell a live
	// key from one that was already replaced.
	slot int
}

// NewTokenCache returns a cache holding at most size tokens, each for at most
// ttl. A size or ttl of zero or less selects the defaults.
func NewTokenCache(size int, ttl time.Duration) *TokenCache {
	if size <= 0 {
		size = TokenCacheDefaultSize
	}
	if ttl <= 0 {
		ttl = TokenCacheDefaultTTL
	}
	return &TokenCache{
		seed:    maphash.MakeSeed(),
		entries: make(map[uint64]tokenCacheEntry, size),
		ring:    make([]uint64, size),
		used:    make([]bool, size),
		ttl:     ttl,
	}
}

// Get returns the identity cached for token if it is still valid at now.
// The returned identity is shared: callers must not modify it.
func (c *TokenCache) Get(token string, now time.Time) (*authz.Identity, bool) {
	k := maphash.String(c.seed, token)
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || e.token != token {
		return nil, false
	}
	if now.UnixNano() >= e.until {
		c.mu.Lock()
		if cur, ok := c.entries[k]; ok && cur.until == e.until && cur.token == token {
			delete(c.entries, k)
			c.used[cur.slot] = false
		}
		c.mu.Unlock()
		return nil, false
	}
	return e.id, true
}

// Put caches id for token until the earlier of exp and now+TTL. Tokens that
// are already expired, or have no expiry, are not cached.
func (c *TokenCache) Put(token string, id *authz.Identity, exp, now time.Time) {
	if exp.IsZero() {
		return
	}
	until := now.Add(c.ttl)
	if exp.Before(until) {
		until = exp
	}
	if !until.After(now) {
		return
	}
	// A copy: the token is usually part of a larger request string, which
	// the cache must not keep alive.
	token = strings.Clone(token)
	k := maphash.String(c.seed, token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.entries[k]; ok {
		// Re-verified while cached (two requests raced on a miss), or
		// another token with the same key: either way this one takes the
		// entry, keeping its ring slot.
		c.entries[k] = tokenCacheEntry{token: token, id: id, until: until.UnixNano(), slot: cur.slot}
		return
	}
	slot := c.next
	c.next = (c.next + 1) % len(c.ring)
	if c.used[slot] {
		delete(c.entries, c.ring[slot])
	}
	c.ring[slot] = k
	c.used[slot] = true
	c.entries[k] = tokenCacheEntry{token: token, id: id, until: until.UnixNano(), slot: slot}
}

// Len returns the number of cached tokens, live or not yet swept.
func (c *TokenCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
