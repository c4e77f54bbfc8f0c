package extauthz

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineContext bounds a check to a deadline (WithTimeout) without
// arming a timer for it until something waits: a check answered from the
// caches never blocks, and context.WithTimeout would cost it a timer, a
// cancelable context and an entry in the call's context on every request
// (about 3% of the service's CPU in closed loop). Err reads the clock, so
// the deadline holds for every check whether or not it waited; the first
// call to Done arms the timer, by deriving a context.WithDeadline from the
// call's context, whose Done and Value it then answers with.
type deadlineContext struct {
	context.Context // the call's

	deadline time.Time
	once     sync.Once
	armed    atomic.Pointer[armedDeadline]
}

// armedDeadline is what the first Done creates.
type armedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func withDeadline(parent context.Context, deadline time.Time) *deadlineContext {
	return &deadlineContext{Context: parent, deadline: deadline}
}

// Deadline is the earlier of the call's deadline and ours.
func (c *deadlineContext) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done arms the deadline's timer the first time it is called.
func (c *deadlineContext) Done() <-chan struct{} {
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.Context, c.deadline)
		c.armed.Store(&armedDeadline{ctx: ctx, cancel: cancel})
	})
	return c.armed.Load().ctx.Done()
}

// Err is the call's error, else DeadlineExceeded from the deadline on
// (arming the timer then, so that Done, Value and context.Cause agree).
func (c *deadlineContext) Err() error {
	if a := c.armed.Load(); a != nil {
		return a.ctx.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	// time.Until reads only the monotonic clock (the deadline carries a
	// reading of it), half the cost of time.Now, twice a check.
	if time.Until(c.deadline) <= 0 {
		<-c.Done() // closed at once: the deadline has passed
		return context.DeadlineExceeded
	}
	return nil
}

// Value answers from the armed context once there is one, so that a
// context derived after Done (a store call's WithTimeout) finds the armed
// context's cancellation and joins it, instead of the context package
// starting a goroutine to watch ours. It reads no clock: the policies look
// values up several times a check (authz.TraceFrom), and a clock read costs
// about 70 ns on this VM. So context.Cause, which asks Value, reports the
// deadline once Err or Done has seen it (nothing here asks Cause first).
func (c *deadlineContext) Value(key any) any {
	if a := c.armed.Load(); a != nil {
		return a.ctx.Value(key)
	}
	return c.Context.Value(key)
}

// release stops the armed timer, if any: the check is over.
func (c *deadlineContext) release() {
	if a := c.armed.Load(); a != nil {
		a.cancel()
	}
}
