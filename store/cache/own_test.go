package cache

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// within reports whether s's bytes lie inside big's.
func within(s, big string) bool {
	if len(s) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(big)))
	return p >= lo && p < lo+uintptr(len(big))
}

// TestCachedKeysOwnTheirMemory: a key read from a request (a substring of
// the whole request, as the gRPC handler reads it) is copied when cached,
// so that the cache does not keep every request it saw alive.
func TestCachedKeysOwnTheirMemory(t *testing.T) {
	request := strings.Repeat("h", 4096) + "alice" + "42" + "exp" + "ws"
	sub := func(from, n int) string { return request[4096+from : 4096+from+n] }
	c := New(nil, Options{})
	keys := []grantKey{
		{user: sub(0, 5), id: sub(5, 2), name: sub(7, 3), ws: sub(10, 2)},
		{id: sub(5, 2)}, // alone: a concatenation would return it as it is
	}
	for _, k := range keys {
		c.grants.put(k, grantVal{}, 0, zeroGen, 0, 1)
	}
	c.users.put(sub(0, 5), userVal{}, 0, zeroGen, 0, 1)
	c.patterns.put(patternKey{user: sub(0, 5)}, patternVal{}, 0, zeroGen, 0, 1)
	c.resolves.put(resolveKey{key: sub(5, 2)}, resolveVal{}, 0, zeroGen, 0, 1)
	n := 0
	for i := range c.grants.shards {
		for _, k := range c.grants.shards[i].ring {
			n++
			for _, s := range []string{k.user, k.id, k.name, k.ws} {
				assert.False(t, within(s, request), "grant key %+v shares the request's memory", k)
			}
			assert.Equal(t, k.user+k.id+k.name+k.ws, strings.Join([]string{k.user, k.id, k.name, k.ws}, ""))
		}
		for _, k := range c.users.shards[i].ring {
			assert.False(t, within(k, request))
		}
		for _, k := range c.patterns.shards[i].ring {
			assert.False(t, within(k.user, request))
		}
		for _, k := range c.resolves.shards[i].ring {
			assert.False(t, within(k.key, request))
		}
	}
	assert.Equal(t, len(keys), n)
	// The copy reads the same.
	assert.Equal(t, keys[0], keys[0].owned())
}
