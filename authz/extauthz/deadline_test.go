package extauthz

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

func TestDeadlineContextUnarmedUntilWaitedOn(t *testing.T) {
	parent := context.WithValue(t.Context(), ctxKey{}, "v")
	deadline := time.Now().Add(time.Hour)
	c := withDeadline(parent, deadline)
	defer c.release()
	require.NoError(t, c.Err())
	d, ok := c.Deadline()
	assert.True(t, ok)
	assert.Equal(t, deadline, d)
	assert.Equal(t, "v", c.Value(ctxKey{}))
	assert.Nil(t, c.armed.Load(), "Err, Deadline and Value arm no timer before the deadline")

	select {
	case <-c.Done():
		t.Fatal("done an hour early")
	default:
	}
	require.NotNil(t, c.armed.Load(), "Done arms the timer")
	assert.Equal(t, "v", c.Value(ctxKey{}), "values still pass through once armed")
}

func TestDeadlineContextExpires(t *testing.T) {
	t.Run("waited on", func(t *testing.T) {
		c := withDeadline(t.Context(), time.Now().Add(20*time.Millisecond))
		defer c.release()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done did not close at the deadline")
		}
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		assert.ErrorIs(t, context.Cause(c), context.DeadlineExceeded)
	})
	t.Run("never waited on", func(t *testing.T) {
		c := withDeadline(t.Context(), time.Now().Add(10*time.Millisecond))
		defer c.release()
		time.Sleep(20 * time.Millisecond)
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded, "the clock alone says so")
		select {
		case <-c.Done():
		default:
			t.Fatal("Done open after Err reported the deadline")
		}
	})
	t.Run("cause once Err has seen the deadline", func(t *testing.T) {
		c := withDeadline(t.Context(), time.Now().Add(-time.Millisecond))
		defer c.release()
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		assert.ErrorIs(t, context.Cause(c), context.DeadlineExceeded)
	})
	t.Run("the call's earlier deadline wins", func(t *testing.T) {
		parent, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		c := withDeadline(parent, time.Now().Add(time.Hour))
		defer c.release()
		pd, _ := parent.Deadline()
		d, _ := c.Deadline()
		assert.Equal(t, pd, d)
		<-c.Done()
		assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})
}

func TestDeadlineContextCallCancelled(t *testing.T) {
	for _, armFirst := range []bool{false, true} {
		parent, cancel := context.WithCancel(t.Context())
		c := withDeadline(parent, time.Now().Add(time.Hour))
		if armFirst {
			_ = c.Done()
		}
		cancel()
		assert.ErrorIs(t, c.Err(), context.Canceled, "armed first: %v", armFirst)
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("Done open after the call was cancelled (armed first: %v)", armFirst)
		}
		c.release()
	}
}

// A store call derives its own timeout from the check's context; it must
// end with the check's deadline, joined to the armed context rather than
// watched by a goroutine of the context package's (one per derived context).
func TestDeadlineContextDerived(t *testing.T) {
	c := withDeadline(t.Context(), time.Now().Add(50*time.Millisecond))
	defer c.release()
	before := runtime.NumGoroutine()
	children := make([]context.Context, 50)
	for i := range children {
		var cancel context.CancelFunc
		children[i], cancel = context.WithTimeout(c, time.Hour)
		defer cancel()
	}
	assert.Less(t, runtime.NumGoroutine()-before, 10, "no goroutine per derived context")
	for _, child := range children {
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a derived context outlived the check's deadline")
		}
		assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
	}
}

// Run with -race: the first Done may come from any goroutine.
func TestDeadlineContextConcurrent(t *testing.T) {
	c := withDeadline(t.Context(), time.Now().Add(30*time.Millisecond))
	defer c.release()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := 0; ; j++ {
				switch (i + j) % 3 {
				case 0:
					_ = c.Value(ctxKey{})
				case 1:
					_, _ = c.Deadline()
				default:
					select {
					case <-c.Done():
						return
					case <-time.After(time.Millisecond):
					}
				}
				if c.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
}
