package mlflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// refParseJSONObject is the previous one-pass reader over encoding/json's
// Token stream: slow, but obviously right. FuzzJSONMatchesReference holds
// parseJSONObject to it.
func refParseJSONObject(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		return nil, errJSONEncoding
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	budget := maxJSONTokens
	v, err := refReadJSONValue(dec, 0, &budget)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errJSONSyntax
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errJSONNotObject
	}
	return m, nil
}

func refReadJSONValue(dec *json.Decoder, depth int, budget *int) (any, error) {
	*budget--
	if *budget < 0 {
		return nil, errJSONTooLarge
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, errJSONSyntax
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, errJSONTooDeep
		}
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, errJSONSyntax
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errJSONSyntax
				}
				if _, dup := m[k]; dup {
					return nil, errJSONDuplicate
				}
				v, err := refReadJSONValue(dec, depth+1, budget)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if end, err := dec.Token(); err != nil || end != json.Delim('}') {
				return nil, errJSONSyntax
			}
			return m, nil
		case '[':
			l := []any{}
			for dec.More() {
				v, err := refReadJSONValue(dec, depth+1, budget)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if end, err := dec.Token(); err != nil || end != json.Delim(']') {
				return nil, errJSONSyntax
			}
			return l, nil
		}
		return nil, errJSONSyntax
	case string, json.Number, bool, nil:
		return t, nil
	}
	return nil, errJSONSyntax
}

// FuzzJSONMatchesReference: parseJSONObject accepts exactly what the
// reference accepts, reads the same tree, and on valid JSON refuses for the
// same reason (duplicate, depth, size). On invalid JSON both refuse, though
// possibly with different reasons: the scan may meet a duplicate key before
// the syntax error that stops the reference. Both are 400 denies.
func FuzzJSONMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a\"b":1,"a\"b":2}`, `{"a":{"b":1},"b":1}`,
		`{"a":[{"b":1},{"b":2}]}`, `{"a":"}","b":"{"}`, `{"a":1}x`, `{"a" 1}`, `[]`, ``, `{"a":tru}`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k3":0}`,
		strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
		strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
		`{"a":"\ud800"}`, `{"a":1e999,"b":-0.5E+3}`, `{"a":[1,2,[3,[4]]],"b":null,"c":false}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseJSONObject(body)
		want, wantErr := refParseJSONObject(body)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: got %v, reference %v", body, err, wantErr)
		}
		if err == nil {
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: read %#v, reference %#v", body, got, want)
			}
			return
		}
		if json.Valid(body) && err != wantErr {
			t.Fatalf("valid %q: refused with %v, reference %v", body, err, wantErr)
		}
	})
}

// refScanString is scanString as it was before it read eight bytes at a
// time and checked UTF-8 itself: byte by byte, any byte from 0x20 up but a
// quote or a backslash passed as it is. FuzzScanString and
// TestScanStringLanes hold scanString to it, with utf8.Valid as the
// reference for the UTF-8 check.
func refScanString(b []byte, i int) (end int, escaped, ok bool) {
	for i++; ; i++ {
		for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return i, false, false
		}
		switch b[i] {
		case '"':
			return i + 1, escaped, true
		case '\\':
			escaped = true
			if i++; i >= len(b) {
				return i, false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return i, false, false
				}
				i += 4
			default:
				return i, false, false
			}
		default: // a control character
			return i, false, false
		}
	}
}

// checkScanString compares scanString with the reference at every quote
// of b: the same verdict (a string the reference accepts is refused when
// its bytes are not UTF-8), and for an accepted string the same end and
// escape flag.
func checkScanString(t *testing.T, b []byte) {
	t.Helper()
	for i, c := range b {
		if c != '"' {
			continue
		}
		end, escaped, ok := scanString(b, i)
		wantEnd, wantEscaped, wantOK := refScanString(b, i)
		wantOK = wantOK && utf8.Valid(b[i+1:wantEnd-1])
		if ok != wantOK || ok && (end != wantEnd || escaped != wantEscaped) {
			t.Fatalf("%q at %d: scanString %d %v %v, reference %d %v %v", b, i, end, escaped, ok, wantEnd, wantEscaped, wantOK)
		}
	}
}

// FuzzScanString: the word-at-a-time string scanner answers as the
// byte-at-a-time one with utf8.Valid, on every string of any input.
func FuzzScanString(f *testing.F) {
	for _, s := range []string{
		`""`, `"a"`, `"abcdefgh"`, `"abcdefghijklmnopq"`, `"abc\"defghij"`, `"abcdefg\\"`, `"abcdefg\u00e9xyz"`,
		"\"abcdefg\x1fhij\"", "\"abcdefg\x7fhij\"", "\"héllo wörld, 日本語 🙂\"", "\"abcdef\xc3\"", "\"abcdef\xed\xa0\x80xx\"",
		"\"abcdefg\xf4\x90\x80\x80\"", "\"abcdefgh\xef\xbf\xbd\"", `"abcdefg\u12`, `"abcdefgh`, `{"a":"b","cdefghijkl":"mnop"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkScanString(t, b)
	})
}

// TestScanStringLanes puts every byte value, and multi-byte sequences, at
// every position of the first three words of a string and just past them,
// where the word-at-a-time scan must stop on it or pass it.
func TestScanStringLanes(t *testing.T) {
	var inserts [][]byte
	for c := range 256 {
		inserts = append(inserts, []byte{byte(c)})
	}
	for _, s := range []string{"é", "日", "🙂", "\uFFFD", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\xe6\x97", `\"`, `\\`, `\u00e9`, `\x`} {
		inserts = append(inserts, []byte(s))
	}
	for _, ins := range inserts {
		for at := range 26 {
			for _, tail := range []string{`"`, `abcdefghijk"`, ``} {
				b := append([]byte(`"`), bytes.Repeat([]byte("a"), at)...)
				b = append(append(b, ins...), tail...)
				checkScanString(t, b)
			}
		}
	}
}

// TestDigitsLanes puts every byte value at every position of the first
// three words of a run of digits and just past them, where the
// word-at-a-time scan must stop on it or pass it.
func TestDigitsLanes(t *testing.T) {
	ref := func(b []byte, i int) int {
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i
	}
	for c := range 256 {
		for at := range 26 {
			for _, tail := range []string{``, `1`, `12345678901`, `x`} {
				b := append(bytes.Repeat([]byte("7"), at), byte(c))
				b = append(b, tail...)
				for from := range min(len(b), 3) {
					if got, want := digits(b, from), ref(b, from); got != want {
						t.Fatalf("%q from %d: digits %d, byte by byte %d", b, from, got, want)
					}
				}
			}
		}
	}
}

// TestScalarLanes: where scalar reads a value itself, it ends where
// scanString or scanNumber says the value ends, for every byte at every
// position of the words it looks at and just past them.
func TestScalarLanes(t *testing.T) {
	for c := range 256 {
		for at := range 20 {
			for _, tail := range []string{``, `,"k":1}`, `1234567890123456789"`, `.5}`, `e5}`, `.}`, `E-1}`} {
				for _, head := range []string{`"`, `1`, `9`, `0`, `-`, `0.`, `3.1`, `12.`, `0.0`} {
					fill := "a"
					if head != `"` {
						fill = "7"
					}
					b := append([]byte(head), bytes.Repeat([]byte(fill), at)...)
					b = append(append(b, byte(c)), tail...)
					end := scalar(b, 0)
					if end == 0 {
						continue
					}
					var want int
					var ok bool
					if head == `"` {
						want, _, ok = scanString(b, 0)
					} else {
						want, ok = scanNumber(b, 0)
					}
					if !ok || want != end {
						t.Fatalf("%q: scalar ends at %d, the scanner at %d (%v)", b, end, want, ok)
					}
				}
			}
		}
	}
}

// TestRepeats: the member loop's two comparisons, samePrefix16 where its
// two words fit and repeats always, find a run of bytes equal to an
// earlier one, of every length around the two-word window, with the bytes
// after it any value, and find any one byte of difference.
func TestRepeats(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for _, pad := range []int{0, 3, 16} {
			run := []byte(`, "abcdefghijklmnopqrstu`)[:n]
			body := append(append(append([]byte{}, run...), 'X'), run...)
			body = append(body, bytes.Repeat([]byte{'Y'}, pad)...)
			at := n + 1
			if !sameRun(body, at, n) {
				t.Fatalf("%q: no run of %d at %d", body, n, at)
			}
			for k := range n {
				changed := append([]byte{}, body...)
				changed[at+k] ^= 0x01
				if sameRun(changed, at, n) {
					t.Fatalf("%q: a run of %d at %d with byte %d changed", changed, n, at, k)
				}
			}
		}
	}
}

// sameRun answers with both of the member loop's comparisons of body[at:]
// with the run of n bytes at body[0:], and fails the test where they
// differ.
func sameRun(body []byte, at, n int) bool {
	r := repeats(body, at, 0, n)
	if n <= 16 && at+16 <= len(body) && samePrefix16(body[at:at+16], body[:16], n) != r {
		panic(fmt.Sprintf("%q: samePrefix16 and repeats differ on %d bytes at %d", body, n, at))
	}
	return r
}
