package authn_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
)

func TestTokenCache(t *testing.T) {
	alice := &authz.Identity{Kind: authz.KindUser, Username: "alice"}
	t0 := jwtTestNow

	tests := []struct {
		name   string
		ttl    time.Duration
		exp    time.Time
		at     time.Duration // lookup time after t0
		wantOK bool
	}{
		{name: "fresh", ttl: time.Minute, exp: t0.Add(time.Hour), at: 0, wantOK: true},
		{name: "before ttl", ttl: time.Minute, exp: t0.Add(time.Hour), at: 59 * time.Second, wantOK: true},
		{name: "ttl ends it", ttl: time.Minute, exp: t0.Add(time.Hour), at: time.Minute},
		{name: "exp earlier than ttl ends it", ttl: time.Hour, exp: t0.Add(10 * time.Second), at: 10 * time.Second},
		{name: "already expired is not cached", ttl: time.Hour, exp: t0.Add(-time.Second), at: 0},
		{name: "no exp is not cached", ttl: time.Hour, at: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := authn.NewTokenCache(10, tt.ttl)
			c.Put("tok", alice, tt.exp, t0)
			id, ok := c.Get("tok", t0.Add(tt.at))
			require.Equal(t, tt.wantOK, ok)
			if ok {
				assert.Same(t, alice, id)
			}
			_, ok = c.Get("other", t0)
			assert.False(t, ok)
		})
	}
}

func TestTokenCacheBounded(t *testing.T) {
	c := authn.NewTokenCache(3, time.Hour)
	exp := jwtTestNow.Add(time.Hour)
	for i := range 10 {
		c.Put(fmt.Sprint("tok", i), &authz.Identity{Username: fmt.Sprint("u", i)}, exp, jwtTestNow)
		assert.LessOrEqual(t, c.Len(), 3)
	}
	for i := range 7 {
		_, ok := c.Get(fmt.Sprint("tok", i), jwtTestNow)
		assert.False(t, ok, "tok%d should have been evicted", i)
	}
	for i := 7; i < 10; i++ {
		id, ok := c.Get(fmt.Sprint("tok", i), jwtTestNow)
		require.True(t, ok)
		assert.Equal(t, fmt.Sprint("u", i), id.Username)
	}

	// Expired entries are dropped on lookup; eviction stays FIFO (the next
	// insertion replaces the oldest, tok7).
	_, ok := c.Get("tok9", exp)
	assert.False(t, ok)
	assert.Equal(t, 2, c.Len())
	c.Put("again", &authz.Identity{}, exp, jwtTestNow)
	_, ok = c.Get("tok7", jwtTestNow)
	assert.False(t, ok)
	c.Put("tok8", &authz.Identity{Username: "u8b"}, exp, jwtTestNow) // refresh in place
	assert.Equal(t, 2, c.Len())
	_, ok = c.Get("again", jwtTestNow)
	assert.True(t, ok)
	id, ok := c.Get("tok8", jwtTestNow)
	require.True(t, ok)
	assert.Equal(t, "u8b", id.Username)
}

func TestTokenCacheDefaults(t *testing.T) {
	c := authn.NewTokenCache(0, 0)
	exp := jwtTestNow.Add(time.Hour)
	c.Put("tok", &authz.Identity{}, exp, jwtTestNow)
	_, ok := c.Get("tok", jwtTestNow.Add(authn.TokenCacheDefaultTTL-time.Second))
	assert.True(t, ok)
	_, ok = c.Get("tok", jwtTestNow.Add(authn.TokenCacheDefaultTTL))
	assert.False(t, ok)
}
