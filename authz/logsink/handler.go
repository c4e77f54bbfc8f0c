package logsink

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler is a slog.Handler for the service's log. In JSON it formats the
// common records itself: strings, integers, booleans, durations and groups,
// LogValuers resolved, with no reflection and no intermediate maps, byte
// for byte as slog.JSONHandler would (a differential test and a fuzz target
// hold it to that). Anything else (floats, errors, any value, WithAttrs or
// WithGroup) goes to slog's own handler over the same Writer, so every line
// still reads as if slog.JSONHandler wrote it. Records at WARN and above
// are flushed at once: an operator must never wait for the line that says
// something is wrong.
type Handler struct {
	w     *Writer
	level slog.Leveler
	inner slog.Handler
	// fast is true while the JSON fast path may format records: no
	// attributes or groups were added with WithAttrs or WithGroup.
	fast bool
}

// Options configure New.
type Options struct {
	// Level is the minimum level logged (default INFO).
	Level slog.Leveler
	// Text selects slog's text format instead of JSON; it has no fast path.
	Text bool
	// FlushInterval and BufferSize configure the Writer (zero: defaults).
	FlushInterval time.Duration
	BufferSize    int
}

// New returns a logger that writes to out through a buffered Writer, and
// that Writer: Close it at shutdown, after the last line, so that nothing
// buffered is lost.
func New(out io.Writer, opts Options) (*slog.Logger, *Writer) {
	w := NewWriter(out, opts.FlushInterval, opts.BufferSize)
	return slog.New(NewHandler(w, opts)), w
}

// NewHandler returns a Handler writing to w. opts' FlushInterval and
// BufferSize are w's business and ignored here.
func NewHandler(w *Writer, opts Options) *Handler {
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	ho := &slog.HandlerOptions{Level: level}
	h := &Handler{w: w, level: level, fast: !opts.Text}
	if opts.Text {
		h.inner = slog.NewTextHandler(w, ho)
	} else {
		h.inner = slog.NewJSONHandler(w, ho)
	}
	return h
}

// Enabled reports whether level is logged.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// WithAttrs returns a handler that adds as to every record; its records
// take slog's own path.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &Handler{w: h.w, level: h.level, inner: h.inner.WithAttrs(as)}
}

// WithGroup returns a handler that nests every record's attributes in
// group name; its records take slog's own path.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{w: h.w, level: h.level, inner: h.inner.WithGroup(name)}
}

// Handle writes one record as one line.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if !h.fast || !h.handleFast(r) {
		err = h.inner.Handle(ctx, r)
	}
	if r.Level >= slog.LevelWarn {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// HandleAttrs writes the line Handle writes for a record of t, level, msg
// and attrs, without building the slog.Record: a Record holds five
// attributes inline and allocates for the rest, and the decision line has
// ten. attrs is not kept.
func (h *Handler) HandleAttrs(ctx context.Context, t time.Time, level slog.Level, msg string, attrs ...slog.Attr) error {
	if h.fast && h.writeFast(func(buf []byte) ([]byte, bool) { return appendLine(buf, t, level, msg, attrs) }) {
		if level >= slog.LevelWarn {
			return h.w.Flush()
		}
		return nil
	}
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	return h.Handle(ctx, r)
}

// lineBuf holds one line while it is formatted: the Writer copies it, so it
// goes back to the pool at once.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// handleFast formats r if every value is one the fast path knows, and
// reports whether it did; it writes nothing otherwise.
func (h *Handler) handleFast(r slog.Record) bool {
	return h.writeFast(func(buf []byte) ([]byte, bool) { return appendRecord(buf, r) })
}

// writeFast formats one line with format into a pooled buffer and writes
// it if format reports that it could.
func (h *Handler) writeFast(format func([]byte) ([]byte, bool)) bool {
	bp := lineBufs.Get().(*[]byte)
	buf, ok := format((*bp)[:0])
	if ok {
		_, _ = h.w.Write(buf)
	}
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		lineBufs.Put(bp)
	}
	return ok
}

// appendRecord appends r as slog.JSONHandler formats it with no
// HandlerOptions but the level: time, level, msg, then the attributes.
func appendRecord(buf []byte, r slog.Record) ([]byte, bool) {
	buf, ok := appendHead(buf, r.Time, r.Level, r.Message)
	if !ok {
		return buf, false
	}
	r.Attrs(func(a slog.Attr) bool {
		buf, _, ok = appendAttr(buf, a, true)
		return ok
	})
	if !ok {
		return buf, false
	}
	return append(buf, "}\n"...), true
}

// appendLine is appendRecord for a record given by its parts.
func appendLine(buf []byte, t time.Time, level slog.Level, msg string, attrs []slog.Attr) ([]byte, bool) {
	buf, ok := appendHead(buf, t, level, msg)
	for i := 0; ok && i < len(attrs); i++ {
		buf, _, ok = appendAttr(buf, attrs[i], true)
	}
	if !ok {
		return buf, false
	}
	return append(buf, "}\n"...), true
}

// appendHead appends a line's opening brace, time, level and message.
func appendHead(buf []byte, t time.Time, level slog.Level, msg string) ([]byte, bool) {
	buf = append(buf, '{')
	if !t.IsZero() {
		// slog.JSONHandler writes an error for a year RFC 3339 cannot hold;
		// leave that rarity to it.
		if y := t.Year(); y < 0 || y >= 10000 {
			return buf, false
		}
		buf = append(buf, `"time":"`...)
		buf = t.AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, `",`...)
	}
	buf = append(buf, `"level":`...)
	buf = appendString(buf, level.String())
	buf = append(buf, `,"msg":`...)
	buf = appendString(buf, msg)
	return buf, true
}

// appendAttr appends a as one member, after a comma when comma is set, and
// reports whether it wrote anything (an empty group writes nothing). ok is
// false for anything the fast path leaves to slog: a value of a kind it does
// not format, or an attribute with an empty key (elided when empty, inlined
// when a group).
func appendAttr(buf []byte, a slog.Attr, comma bool) (out []byte, wrote, ok bool) {
	v := a.Value
	if v.Kind() == slog.KindLogValuer {
		v = v.Resolve()
	}
	if a.Key == "" {
		return buf, false, false
	}
	if v.Kind() == slog.KindGroup {
		members := v.Group()
		if len(members) == 0 {
			return buf, false, true
		}
		if comma {
			buf = append(buf, ',')
		}
		buf = appendString(buf, a.Key)
		buf = append(buf, ':', '{')
		inner := false
		for _, m := range members {
			var w bool
			if buf, w, ok = appendAttr(buf, m, inner); !ok {
				return buf, false, false
			}
			inner = inner || w
		}
		return append(buf, '}'), true, true
	}
	if comma {
		buf = append(buf, ',')
	}
	buf = appendString(buf, a.Key)
	buf = append(buf, ':')
	switch v.Kind() {
	case slog.KindString:
		buf = appendString(buf, v.String())
	case slog.KindInt64:
		buf = strconv.AppendInt(buf, v.Int64(), 10)
	case slog.KindUint64:
		buf = strconv.AppendUint(buf, v.Uint64(), 10)
	case slog.KindBool:
		buf = strconv.AppendBool(buf, v.Bool())
	case slog.KindDuration:
		buf = strconv.AppendInt(buf, int64(v.Duration()), 10)
	default:
		return buf, false, false
	}
	return buf, true, true
}

// appendString appends s as a JSON string exactly as slog.JSONHandler does:
// no HTML escaping, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '\\', '"':
				buf = append(buf, '\\', b)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

const hexDigits = "0123456789abcdef"
