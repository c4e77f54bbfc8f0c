package authn

import (
	"sync"
	"time"
)

// failureLimiter limits password guesses per username with a token bucket:
// each check takes an attempt, a success gives them all back, and a
// username earns one attempt back every window/burst. An attempt is taken
// before the check, so concurrent guesses cannot overrun the burst.
//
// It tracks at most max usernames. When full, it forgets first the
// usernames that have earned everything back (they carry no state), then
// the one with the most attempts left, so a flood of made-up usernames
// cannot evict the bucket of a username under attack.
type failureLimiter struct {
	mu      sync.Mutex
	burst   float64
	per     time.Duration // to earn one attempt back
	max     int
	buckets map[string]*failureBucket
}

type failureBucket struct {
	tokens float64
	at     time.Time
}

func newFailureLimiter(burst int, window time.Duration, max int) *failureLimiter {
	return &failureLimiter{
		burst:   float64(burst),
		per:     window / time.Duration(burst),
		max:     max,
		buckets: make(map[string]*failureBucket),
	}
}

// refill brings b up to now.
func (l *failureLimiter) refill(b *failureBucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.per))
		b.at = now
	}
}

// take spends one attempt of user and reports whether it had one.
func (l *failureLimiter) take(user string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[user]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &failureBucket{tokens: l.burst, at: now}
		l.buckets[user] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refund gives back the attempt of a check that could not be made (the
// store was down, the request ran out of time): only a wrong password
// costs an attempt.
func (l *failureLimiter) refund(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[user]; ok {
		b.tokens = min(l.burst, b.tokens+1)
	}
}

// reset forgets user after a success.
func (l *failureLimiter) reset(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, user)
}

// evict makes room for one username. It runs only when the limiter is
// full, which takes max distinct usernames failing within one window.
func (l *failureLimiter) evict(now time.Time) {
	var most string
	mostTokens := -1.0
	for u, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, u)
			continue
		}
		if b.tokens > mostTokens {
			most, mostTokens = u, b.tokens
		}
	}
	if len(l.buckets) >= l.max {
		delete(l.buckets, most)
	}
}

// len returns the number of usernames tracked.
func (l *failureLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
