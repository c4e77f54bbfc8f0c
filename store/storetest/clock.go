package storetest

import (
	"sync/atomic"
	"time"
)

// Clock is a settable clock for the code under test (cache TTLs, token
// expiries, reconciler windows), shared by the test and the goroutines it
// starts. It is lock-free, so benchmarks may read it on their hot path. It
// lives in the lowest test kit so that store and authz tests alike can use
// it.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a Clock that reads now until advanced.
func NewClock(now time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(now.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
