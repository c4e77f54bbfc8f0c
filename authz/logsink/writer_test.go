package logsink

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer that the timer's goroutine and the test
// may use at once, counting the writes it receives.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Writes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

func TestWriterFlushesOnTimer(t *testing.T) {
	var b lockedBuffer
	w := NewWriter(&b, 20*time.Millisecond, 0)
	t.Cleanup(func() { _ = w.Close() })
	_, err := w.Write([]byte("one\n"))
	require.NoError(t, err)
	_, err = w.Write([]byte("two\n"))
	require.NoError(t, err)
	assert.Empty(t, b.String(), "lines wait for the timer")
	require.Eventually(t, func() bool { return b.String() == "one\ntwo\n" }, 2*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, b.Writes(), "both lines in one write")

	// The timer re-arms for the next line.
	_, err = w.Write([]byte("three\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.String() == "one\ntwo\nthree\n" }, 2*time.Second, 5*time.Millisecond)
}

func TestWriterFlushesWhenFull(t *testing.T) {
	var b lockedBuffer
	w := NewWriter(&b, time.Hour, 100)
	t.Cleanup(func() { _ = w.Close() })
	line := []byte(strings.Repeat("x", 39) + "\n")
	for range 2 {
		_, err := w.Write(line)
		require.NoError(t, err)
	}
	assert.Empty(t, b.String())
	_, err := w.Write(line)
	require.NoError(t, err)
	assert.Equal(t, 120, len(b.String()), "the third line fills the buffer")
}

func TestWriterCloseFlushesAndWritesThrough(t *testing.T) {
	var b lockedBuffer
	w := NewWriter(&b, time.Hour, 0)
	_, err := w.Write([]byte("buffered\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	assert.Equal(t, "buffered\n", b.String())
	_, err = w.Write([]byte("late\n"))
	require.NoError(t, err)
	assert.Equal(t, "buffered\nlate\n", b.String(), "a line after Close is written at once")
}

// TestWriterKeepsEveryLineInOrder writes from many goroutines with a small
// buffer and a short timer, so flushes by size, by timer and by hand race;
// every line must arrive whole, once, and each goroutine's in order.
func TestWriterKeepsEveryLineInOrder(t *testing.T) {
	var b lockedBuffer
	w := NewWriter(&b, time.Millisecond, 512)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(w, "g%d %d\n", g, i)
				if i%97 == 0 {
					_ = w.Flush()
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Close())
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, got, writers*lines)
	for _, l := range got {
		var g, i int
		_, err := fmt.Sscanf(l, "g%d %d", &g, &i)
		require.NoError(t, err, l)
		require.Equal(t, next[g], i, "goroutine %d out of order", g)
		next[g]++
	}
}
