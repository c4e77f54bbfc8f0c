package authn

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"

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

// TokenCache remembers tokens that were fully verified, keyed by the SHA-256
// of the raw token, so the UI's bursts of XHRs cost one signature check per
// token instead of one per request. It is bounded: when full, the oldest
// insertion is evicted (FIFO), which is enough because every entry expires
// within the TTL anyway.
//
// A TokenCache is safe for concurrent use. The zero value is not usable; call
// NewTokenCache.
type TokenCache struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]tokenCacheEntry
	// ring holds the keys in insertion order; next is where the next key
	// goes, evicting whatever key is there.
	ring []([sha256.Size]byte)
	used []bool
	next int
	ttl  time.Duration
}

type tokenCacheEntry struct {
	id *authz.Identity
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
		entries: make(map[[sha256.Size]byte]tokenCacheEntry, size),
		ring:    make([][sha256.Size]byte, size),
		used:    make([]bool, size),
		ttl:     ttl,
	}
}

// tokenKey hashes the token without copying it: sha256 only reads its
// input, so viewing the string's bytes in place is safe and keeps the cached
// path free of a token-sized allocation.
func tokenKey(token string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// Get returns the identity cached for token if it is still valid at now.
// The returned identity is shared: callers must not modify it.
func (c *TokenCache) Get(token string, now time.Time) (*authz.Identity, bool) {
	k := tokenKey(token)
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if now.UnixNano() >= e.until {
		c.mu.Lock()
		if cur, ok := c.entries[k]; ok && cur.until == e.until {
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
	k := tokenKey(token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.entries[k]; ok {
		// Re-verified while cached (two requests raced on a miss): refresh
		// in place, keeping its ring slot.
		c.entries[k] = tokenCacheEntry{id: id, until: until.UnixNano(), slot: cur.slot}
		return
	}
	slot := c.next
	c.next = (c.next + 1) % len(c.ring)
	if c.used[slot] {
		delete(c.entries, c.ring[slot])
	}
	c.ring[slot] = k
	c.used[slot] = true
	c.entries[k] = tokenCacheEntry{id: id, until: until.UnixNano(), slot: slot}
}

// Len returns the number of cached tokens, live or not yet swept.
func (c *TokenCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
