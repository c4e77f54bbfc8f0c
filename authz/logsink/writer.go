package logsink

import (
	"io"
	"sync"
	"time"
)

// Writer defaults.
const (
	// DefaultFlushInterval is how long a line may wait in the buffer: short
	// enough that `kubectl logs -f` looks live, long enough that a busy
	// replica writes a few large chunks a second instead of one syscall per
	// check.
	DefaultFlushInterval = 100 * time.Millisecond
	// DefaultBufferSize is how many bytes are buffered before a write
	// happens whatever the timer says (about 200 decision lines).
	DefaultBufferSize = 64 << 10
)

// Writer buffers log lines and writes them to the underlying writer in
// order, in large chunks: when the buffer fills, when the oldest buffered
// line is FlushInterval old, on Flush and on Close. Nothing is dropped: a
// writer that blocks (a full pipe) holds up whoever fills the buffer, as it
// held up every line before. It is safe for concurrent use.
type Writer struct {
	out      io.Writer
	interval time.Duration
	limit    int

	mu     sync.Mutex
	buf    []byte
	armed  bool // the timer will flush buf
	closed bool
	timer  *time.Timer

	// flushMu keeps the chunks in order: a chunk is taken from buf and
	// written while holding it, so a later chunk cannot overtake it.
	flushMu sync.Mutex
	spare   []byte // the other buffer, guarded by flushMu
}

// NewWriter returns a Writer over out. An interval or size of zero or less
// selects the default.
func NewWriter(out io.Writer, interval time.Duration, size int) *Writer {
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	if size <= 0 {
		size = DefaultBufferSize
	}
	w := &Writer{out: out, interval: interval, limit: size, buf: make([]byte, 0, size), spare: make([]byte, 0, size)}
	w.timer = time.AfterFunc(time.Hour, func() { _ = w.Flush() })
	w.timer.Stop()
	return w
}

// Write buffers p, which should be whole lines. It writes through at once
// after Close, so a line logged late in shutdown still appears.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.flushMu.Lock()
		defer w.flushMu.Unlock()
		return w.out.Write(p)
	}
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= w.limit
	if !full && !w.armed {
		w.armed = true
		w.timer.Reset(w.interval)
	}
	w.mu.Unlock()
	if full {
		if err := w.Flush(); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Flush writes whatever is buffered.
func (w *Writer) Flush() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	chunk := w.buf
	w.buf, w.armed = w.spare[:0], false
	w.mu.Unlock()
	var err error
	if len(chunk) > 0 {
		_, err = w.out.Write(chunk)
	}
	// Keep the buffer for the next swap unless a burst grew it far past the
	// limit: a replica should not hold a burst's memory for ever.
	w.spare = chunk[:0]
	if cap(chunk) > 4*w.limit {
		w.spare = make([]byte, 0, w.limit)
	}
	return err
}

// Close flushes and stops the timer; later writes go straight through.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closed = true
	w.timer.Stop()
	w.mu.Unlock()
	return w.Flush()
}
