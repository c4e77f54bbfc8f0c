package authn

import (
	"hash/maphash"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// TestTokenCacheKeyCollisionIsAMiss: the cache is keyed by a 64-bit hash,
// so two tokens may share a key. The entry keeps its token and a hit must
// match it: a colliding token misses (and is verified in full), it never
// gets the other token's identity.
func TestTokenCacheKeyCollisionIsAMiss(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := NewTokenCache(4, time.Hour)
	victim := &authz.Identity{Kind: authz.KindUser, Username: "victim"}
	c.Put("victim-token", victim, now.Add(time.Hour), now)

	// Make "forged-token" collide: its key now holds the victim's entry.
	forgedKey := maphash.String(c.seed, "forged-token")
	c.entries[forgedKey] = c.entries[maphash.String(c.seed, "victim-token")]
	_, ok := c.Get("forged-token", now)
	assert.False(t, ok, "a key collision must not return another token's identity")

	// Verified in full, the colliding token takes the entry (and its ring
	// slot); the victim's token then misses rather than returning it.
	forged := &authz.Identity{Kind: authz.KindUser, Username: "forged"}
	c.Put("forged-token", forged, now.Add(time.Hour), now)
	id, ok := c.Get("forged-token", now)
	require.True(t, ok)
	assert.Same(t, forged, id)
	id, ok = c.Get("victim-token", now)
	require.True(t, ok, "the victim's own key is untouched")
	assert.Same(t, victim, id)
}
