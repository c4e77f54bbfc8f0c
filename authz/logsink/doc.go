// Package logsink is where the service's log lines go: a slog.Handler that
// formats the common JSON records itself, byte for byte as slog.JSONHandler
// does but without its generic machinery, into a Writer that buffers lines
// and writes them in chunks.
//
// The decision log writes one line per check, so its cost is paid on every
// request: formatting through slog.JSONHandler and one write syscall per
// line were about a tenth of the service's CPU. Buffering moves the
// syscall off the check; the flush rules keep the log trustworthy:
//
//   - a line waits at most the flush interval (100ms by default);
//   - WARN and above are flushed at once;
//   - Close flushes, and main closes the Writer after the gRPC server has
//     drained, so no line of a finished check is lost at SIGTERM.
//
// Usage:
//
//	log, w := logsink.New(os.Stderr, logsink.Options{Level: slog.LevelInfo})
//	defer w.Close()
package logsink
