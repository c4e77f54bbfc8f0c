package logsink

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// identity stands in for authz.Identity: a LogValuer that resolves to a
// group, as the decision line's identity does.
type identity struct{ kind, method, user string }

func (id *identity) LogValue() slog.Value {
	if id == nil {
		return slog.StringValue("")
	}
	as := append(make([]slog.Attr, 0, 3), slog.String("kind", id.kind), slog.String("method", id.method))
	if id.user != "" {
		as = append(as, slog.String("user", id.user))
	}
	return slog.GroupValue(as...)
}

// empty resolves to a group with no members.
type empty struct{}

func (empty) LogValue() slog.Value { return slog.GroupValue() }

var testTime = time.Date(2026, 11, 29, 21, 42, 15, 590947522, time.UTC)

// reference formats r with slog's own JSON handler.
func reference(t testing.TB, r slog.Record, level slog.Leveler) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: level}).Handle(context.Background(), r))
	return b.String()
}

// ours formats r with Handler and flushes.
func ours(t testing.TB, r slog.Record, opts Options) string {
	t.Helper()
	var b bytes.Buffer
	w := NewWriter(&b, time.Hour, 0)
	require.NoError(t, NewHandler(w, opts).Handle(context.Background(), r))
	require.NoError(t, w.Close())
	return b.String()
}

// oursAttrs formats r's parts with Handler.HandleAttrs and flushes: it
// must write what Handle writes.
func oursAttrs(t testing.TB, r slog.Record, opts Options) string {
	t.Helper()
	var as []slog.Attr
	r.Attrs(func(a slog.Attr) bool { as = append(as, a); return true })
	var b bytes.Buffer
	w := NewWriter(&b, time.Hour, 0)
	require.NoError(t, NewHandler(w, opts).HandleAttrs(context.Background(), r.Time, r.Level, r.Message, as...))
	require.NoError(t, w.Close())
	return b.String()
}

func record(level slog.Level, msg string, as ...slog.Attr) slog.Record {
	r := slog.NewRecord(testTime, level, msg, 0)
	r.AddAttrs(as...)
	return r
}

func TestHandlerMatchesSlogJSON(t *testing.T) {
	decision := []slog.Attr{
		slog.String("request_id", "4b0c3f6e-2c1d-4d7a-9a55-0d4f1a2b3c4d"),
		slog.String("app", "mlflow"),
		slog.String("host", "mlflow.test"),
		slog.String("method", "GET"),
		slog.String("path", "/api/2.0/mlflow/runs/get"),
		slog.Any("identity", &identity{"user", "jwt", "mallory"}),
		slog.String("decision", "deny"),
		slog.Int("status", 403),
		slog.String("reason", "permission_denied"),
		slog.Int64("latency_us", 8444),
	}
	tests := []struct {
		name string
		rec  slog.Record
		fast bool // the fast path must format it, not slog
	}{
		{"decision line", record(slog.LevelInfo, "decision", decision...), true},
		{"anonymous identity", record(slog.LevelInfo, "decision", slog.Any("identity", (*identity)(nil))), true},
		{"warn", record(slog.LevelWarn, "decision", decision...), true},
		{"odd level", record(slog.LevelInfo+2, "m"), true},
		{"zero time", slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0), true},
		{"local time zone", slog.NewRecord(testTime.In(time.FixedZone("X", -5*3600-1800)), slog.LevelError, "m", 0), true},
		{"escapes", record(slog.LevelInfo, "a\"b\\c\n\r\t\x00\x1f\x7f<>&\u2028\u2029é\xff\xfe", slog.String("k\"\n", "\xc3\x28 \u00e9 \U0001F600")), true},
		{"kinds", record(slog.LevelDebug, "m", slog.Int64("i", math.MinInt64), slog.Uint64("u", math.MaxUint64),
			slog.Bool("b", true), slog.Bool("f", false), slog.Duration("d", -1500*time.Millisecond)), true},
		{"nested groups", record(slog.LevelInfo, "m", slog.Group("g", slog.Int("a", 1), slog.Group("h", slog.String("b", "x")), slog.Int("c", 2))), true},
		{"empty group", record(slog.LevelInfo, "m", slog.Int("a", 1), slog.Group("g"), slog.Int("b", 2)), true},
		{"empty valuer first in a group", record(slog.LevelInfo, "m", slog.Group("g", slog.Any("e", empty{}), slog.Int("b", 2))), true},
		{"only an empty valuer in a group", record(slog.LevelInfo, "m", slog.Group("g", slog.Any("e", empty{}))), true},
		{"float", record(slog.LevelInfo, "m", slog.Float64("f", 0.1)), false},
		{"error", record(slog.LevelError, "m", slog.Any("error", errors.New("boom"))), false},
		{"time value", record(slog.LevelInfo, "m", slog.Time("t", testTime)), false},
		{"any", record(slog.LevelInfo, "m", slog.Any("m", map[string]int{"a": 1})), false},
		{"empty key", record(slog.LevelInfo, "m", slog.String("", "v")), false},
		{"inline group", record(slog.LevelInfo, "m", slog.Group("", slog.Int("a", 1))), false},
		{"empty attr", record(slog.LevelInfo, "m", slog.Attr{}, slog.Int("a", 1)), false},
		{"year 10000", slog.NewRecord(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m", 0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := reference(t, tc.rec, slog.LevelDebug)
			assert.Equal(t, want, ours(t, tc.rec, Options{Level: slog.LevelDebug}))
			assert.Equal(t, want, oursAttrs(t, tc.rec, Options{Level: slog.LevelDebug}), "HandleAttrs")
			_, ok := appendRecord(nil, tc.rec)
			assert.Equal(t, tc.fast, ok, "fast path")
		})
	}
}

func TestHandlerWithAttrsAndGroupsMatchSlog(t *testing.T) {
	var want, got bytes.Buffer
	w := NewWriter(&got, time.Hour, 0)
	ref := slog.New(slog.NewJSONHandler(&want, nil))
	l := slog.New(NewHandler(w, Options{}))
	for _, lg := range []*slog.Logger{ref, l} {
		lg.With("app", "mlflow").Info("with", "a", 1)
		lg.WithGroup("g").Info("group", "a", 1)
		lg.Info("plain", "a", 1)
		lg.Debug("hidden")
	}
	require.NoError(t, w.Close())
	assert.Equal(t, stripTimes(want.String()), stripTimes(got.String()))
}

// stripTimes blanks the "time" members, which differ between two loggers.
func stripTimes(s string) string {
	var out []byte
	for _, line := range bytes.Split([]byte(s), []byte("\n")) {
		if i := bytes.Index(line, []byte(`"time":"`)); i >= 0 {
			if j := bytes.IndexByte(line[i+8:], '"'); j >= 0 {
				line = append(append(append([]byte{}, line[:i+8]...), 'T'), line[i+8+j:]...)
			}
		}
		out = append(append(out, line...), '\n')
	}
	return string(out)
}

func TestHandlerTextIsSlogText(t *testing.T) {
	var want, got bytes.Buffer
	r := record(slog.LevelInfo, "decision", slog.String("app", "mlflow"), slog.Any("identity", &identity{"user", "jwt", "bob"}))
	require.NoError(t, slog.NewTextHandler(&want, nil).Handle(context.Background(), r))
	w := NewWriter(&got, time.Hour, 0)
	require.NoError(t, NewHandler(w, Options{Text: true}).Handle(context.Background(), r))
	require.NoError(t, w.Close())
	assert.Equal(t, want.String(), got.String())
}

func TestHandlerLevels(t *testing.T) {
	h := NewHandler(NewWriter(&bytes.Buffer{}, time.Hour, 0), Options{Level: slog.LevelWarn})
	assert.False(t, h.Enabled(context.Background(), slog.LevelInfo))
	assert.True(t, h.Enabled(context.Background(), slog.LevelWarn))
	assert.True(t, NewHandler(NewWriter(&bytes.Buffer{}, time.Hour, 0), Options{}).Enabled(context.Background(), slog.LevelInfo))
}

// TestHandlerFlushesWarnAtOnce: an INFO line waits for the timer, a WARN
// line goes out with everything before it.
func TestHandlerFlushesWarnAtOnce(t *testing.T) {
	var b lockedBuffer
	w := NewWriter(&b, time.Hour, 0)
	t.Cleanup(func() { _ = w.Close() })
	l := slog.New(NewHandler(w, Options{}))
	l.Info("first")
	assert.Empty(t, b.String(), "an INFO line is buffered")
	l.Warn("second")
	out := b.String()
	assert.Contains(t, out, `"msg":"first"`)
	assert.Contains(t, out, `"msg":"second"`)
	assert.Less(t, bytes.Index([]byte(out), []byte("first")), bytes.Index([]byte(out), []byte("second")))

	h := l.Handler().(*Handler)
	require.NoError(t, h.HandleAttrs(t.Context(), testTime, slog.LevelInfo, "third", slog.Int("a", 1)))
	assert.NotContains(t, b.String(), "third", "an INFO line is buffered")
	require.NoError(t, h.HandleAttrs(t.Context(), testTime, slog.LevelWarn, "fourth", slog.Float64("f", 0.5)))
	assert.Contains(t, b.String(), `"msg":"third","a":1}`)
	assert.Contains(t, b.String(), `"msg":"fourth","f":0.5}`, "a WARN line through slog's path is flushed too")
}

// FuzzHandlerMatchesSlogJSON builds records from arbitrary bytes and holds
// the handler's output to slog.JSONHandler's, fast path or not.
func FuzzHandlerMatchesSlogJSON(f *testing.F) {
	f.Add("decision", []byte("\x00request_id\x00abc\x01status\x00\x05identity\x00"), int64(403))
	f.Add("m\xff\u2028", []byte("\x02g\x00\x00a\x00\x03\x04x\x00\x06\x07"), int64(-1))
	f.Fuzz(func(t *testing.T, msg string, program []byte, n int64) {
		r := slog.NewRecord(testTime.Add(time.Duration(n)), slog.Level(n%13), msg, 0)
		r.AddAttrs(fuzzAttrs(program, n, 0)...)
		want := reference(t, r, slog.Level(-100))
		got := ours(t, r, Options{Level: slog.Level(-100)})
		if want != got {
			t.Fatalf("output differs\nslog: %q\nours: %q", want, got)
		}
		if got := oursAttrs(t, r, Options{Level: slog.Level(-100)}); want != got {
			t.Fatalf("HandleAttrs output differs\nslog: %q\nours: %q", want, got)
		}
	})
}

// fuzzAttrs reads attributes from program: each op byte picks a kind, and
// the NUL-terminated strings after it give the key (and string value).
func fuzzAttrs(program []byte, n int64, depth int) []slog.Attr {
	var as []slog.Attr
	next := func() string {
		i := bytes.IndexByte(program, 0)
		if i < 0 {
			s := string(program)
			program = nil
			return s
		}
		s := string(program[:i])
		program = program[i+1:]
		return s
	}
	for len(program) > 0 && len(as) < 20 {
		op := program[0]
		program = program[1:]
		switch op % 10 {
		case 0:
			as = append(as, slog.String(next(), next()))
		case 1:
			as = append(as, slog.Int64(next(), n))
		case 2:
			if depth < 3 {
				key := next()
				k := min(len(program), int(op/10))
				as = append(as, slog.Group(key, anySlice(fuzzAttrs(program[:k], n, depth+1))...))
				program = program[k:]
			}
		case 3:
			as = append(as, slog.Bool(next(), n%2 == 0))
		case 4:
			as = append(as, slog.Uint64(next(), uint64(n)))
		case 5:
			as = append(as, slog.Any(next(), &identity{next(), next(), next()}))
		case 6:
			as = append(as, slog.Duration(next(), time.Duration(n)))
		case 7:
			as = append(as, slog.Any(next(), empty{}))
		case 8:
			as = append(as, slog.Float64(next(), float64(n)/7))
		case 9:
			as = append(as, slog.Any(next(), (*identity)(nil)))
		}
	}
	return as
}

func anySlice(as []slog.Attr) []any {
	out := make([]any, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}

// BenchmarkDecisionLine formats and writes one decision line, as
// extauthz.Server does (a Record handed straight to the handler), through
// slog.JSONHandler writing each line and through Handler and its Writer.
// Both write to io.Discard; the syscall Handler's buffer saves is not in
// these figures.
func BenchmarkDecisionLine(b *testing.B) {
	id := &identity{"user", "jwt", "user00042"}
	line := func(h slog.Handler) {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, "decision", 0)
		r.AddAttrs(
			slog.String("request_id", "00000042-0000-4000-8000-000000000001"),
			slog.String("app", "mlflow"),
			slog.String("host", "mlflow.bench"),
			slog.String("method", "POST"),
			slog.String("path", "/api/2.0/mlflow/runs/log-batch"),
			slog.Any("identity", id),
			slog.String("decision", "allow"),
			slog.Int("status", 200),
			slog.String("reason", "allowed"),
			slog.Int64("latency_us", 37),
		)
		_ = h.Handle(context.Background(), r)
	}
	b.Run("slog", func(b *testing.B) {
		h := slog.NewJSONHandler(io.Discard, nil)
		b.ReportAllocs()
		for b.Loop() {
			line(h)
		}
	})
	b.Run("logsink", func(b *testing.B) {
		w := NewWriter(io.Discard, 0, 0)
		b.Cleanup(func() { _ = w.Close() })
		h := NewHandler(w, Options{})
		b.ReportAllocs()
		for b.Loop() {
			line(h)
		}
	})
}
