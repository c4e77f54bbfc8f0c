package authn

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFailureLimiter(t *testing.T) {
	now := time.Unix(1767225600, 0)
	l := newFailureLimiter(2, 10*time.Second, 100)
	assert.True(t, l.take("bob", now))
	assert.True(t, l.take("bob", now))
	assert.False(t, l.take("bob", now), "burst spent")
	l.refund("bob")
	assert.True(t, l.take("bob", now), "a refunded attempt")
	assert.False(t, l.take("bob", now.Add(4*time.Second)), "one attempt per 5s")
	assert.True(t, l.take("bob", now.Add(10*time.Second)))
	l.reset("bob")
	assert.Zero(t, l.len())
	l.refund("ghost") // no record: nothing to give back
	assert.Zero(t, l.len())
}

// TestFailureLimiterBounded: a flood of made-up usernames never grows the
// limiter past its bound, and never evicts the record of a username under
// attack (the one with the fewest attempts left).
func TestFailureLimiterBounded(t *testing.T) {
	now := time.Unix(1767225600, 0)
	l := newFailureLimiter(5, time.Minute, 50)
	for range 5 {
		require.True(t, l.take("victim", now))
	}
	for i := range 10000 {
		l.take(fmt.Sprintf("made-up-%d", i), now)
		require.LessOrEqual(t, l.len(), 50)
	}
	assert.False(t, l.take("victim", now), "the victim's record survived the flood")

	// Idle records go first: an hour later every record has earned its
	// burst back and carries nothing worth keeping.
	l.take("late", now.Add(time.Hour))
	assert.Equal(t, 1, l.len())
}
