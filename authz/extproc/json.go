package extproc

import (
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"
)

// The JSON editor the response filters use. MLflow answers a search with
// one JSON object holding an array of rows; a filter walks down to that
// array, decides each row from one or two of its fields, and deletes the
// rows (or the members of a row) the caller may not see. Everything else of
// the body is copied byte for byte: the editor never builds a tree of the
// document and never re-encodes a value, so a kept row is exactly what
// MLflow sent, and the filter's memory is the body plus at most one copy.
//
// It is also a validator: every byte of the body is scanned once, and any
// syntax error, invalid UTF-8, a duplicate key in an object the filter
// reads, or nesting deeper than maxDepth fails the whole response. A body
// the filter cannot read completely is never passed on.

// maxDepth bounds nesting: MLflow's responses are a few levels deep.
const maxDepth = 128

// errMalformed is any body that is not one valid JSON value.
var errMalformed = errors.New("extproc: the response body is not valid JSON")

// errDuplicate is an object the filter reads with a key given twice: two
// JSON readers could see two different rows.
var errDuplicate = errors.New("extproc: duplicate key in the response body")

// span is a value's bytes: b[start:end].
type span struct{ start, end int }

// member is one "key": value of an object. Its bytes run from keyStart to
// val.end. key is the unescaped key: a slice of the body itself unless the
// key holds an escape, so reading a row's members allocates nothing.
type member struct {
	key      []byte
	keyStart int
	val      span
}

// edit replaces b[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

// jsonDoc is one body being filtered.
type jsonDoc struct {
	b     []byte
	edits []edit
}

// newDoc checks that b is valid UTF-8 (Python's json, which every MLflow
// client uses, refuses anything else) and returns its document.
func newDoc(b []byte) (*jsonDoc, error) {
	if !utf8.Valid(b) {
		return nil, errMalformed
	}
	return &jsonDoc{b: b}, nil
}

// root returns the members of the document's top-level object, checking
// that nothing but whitespace follows it.
func (d *jsonDoc) root() ([]member, error) {
	return d.rootWith("", nil)
}

// rootWith is root, with the value of the top-level member key read by
// read (which returns the index after the value) instead of skipped: the
// rows of a listing are scanned once, by the filter that decides them.
func (d *jsonDoc) rootWith(key string, read func(start int) (int, error)) ([]member, error) {
	i := d.ws(0)
	var hook func(k []byte, vs int) (int, bool, error)
	if read != nil {
		hook = func(k []byte, vs int) (int, bool, error) {
			if string(k) != key {
				return 0, false, nil
			}
			end, err := read(vs)
			return end, true, err
		}
	}
	ms, end, err := d.objectHook(i, 0, nil, hook)
	if err != nil {
		return nil, err
	}
	if d.ws(end) != len(d.b) {
		return nil, errMalformed
	}
	return ms, nil
}

func (d *jsonDoc) ws(i int) int {
	for i < len(d.b) {
		switch d.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// kind returns the first byte of the value at v: '{', '[', '"', 'n', ….
func (d *jsonDoc) kind(v span) byte { return d.b[v.start] }

// object parses the object starting at i, validating every member, and
// returns its members (appended to buf[:0]) and the index after its
// closing brace.
func (d *jsonDoc) object(i, depth int, buf []member) ([]member, int, error) {
	return d.objectHook(i, depth, buf, nil)
}

// objectHook is object, letting hook read a member's value itself (ok
// true) instead of it being skipped.
func (d *jsonDoc) objectHook(i, depth int, buf []member, hook func(key []byte, vs int) (int, bool, error)) ([]member, int, error) {
	if i >= len(d.b) || d.b[i] != '{' {
		return nil, 0, errMalformed
	}
	if depth >= maxDepth {
		return nil, 0, errMalformed
	}
	i = d.ws(i + 1)
	ms := buf[:0]
	if i < len(d.b) && d.b[i] == '}' {
		return ms, i + 1, nil
	}
	for {
		ks := i
		ke, err := d.str(i)
		if err != nil {
			return nil, 0, err
		}
		key, err := d.keyBytes(span{ks, ke})
		if err != nil {
			return nil, 0, err
		}
		i = d.ws(ke)
		if i >= len(d.b) || d.b[i] != ':' {
			return nil, 0, errMalformed
		}
		vs := d.ws(i + 1)
		var ve int
		handled := false
		if hook != nil {
			ve, handled, err = hook(key, vs)
			if err != nil {
				return nil, 0, err
			}
		}
		if !handled {
			if ve, err = d.value(vs, depth+1); err != nil {
				return nil, 0, err
			}
		}
		ms = append(ms, member{key: key, keyStart: ks, val: span{vs, ve}})
		i = d.ws(ve)
		if i >= len(d.b) {
			return nil, 0, errMalformed
		}
		if d.b[i] == '}' {
			if dupKey(ms) {
				return nil, 0, errDuplicate
			}
			return ms, i + 1, nil
		}
		if d.b[i] != ',' {
			return nil, 0, errMalformed
		}
		i = d.ws(i + 1)
	}
}

// dupKey reports a key given twice. Objects the filters read are small
// (a row's fields); a large one is indexed so the check stays linear.
func dupKey(ms []member) bool {
	if len(ms) <= 16 {
		for i := 1; i < len(ms); i++ {
			for j := 0; j < i; j++ {
				if string(ms[i].key) == string(ms[j].key) {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(ms))
	for _, m := range ms {
		if _, dup := seen[string(m.key)]; dup {
			return true
		}
		seen[string(m.key)] = struct{}{}
	}
	return false
}

// array parses the array starting at i, validating every element, and
// returns the elements' spans and the index after its closing bracket.
func (d *jsonDoc) array(i, depth int) ([]span, int, error) {
	if i >= len(d.b) || d.b[i] != '[' {
		return nil, 0, errMalformed
	}
	if depth >= maxDepth {
		return nil, 0, errMalformed
	}
	i = d.ws(i + 1)
	if i < len(d.b) && d.b[i] == ']' {
		return nil, i + 1, nil
	}
	var es []span
	for {
		end, err := d.value(i, depth+1)
		if err != nil {
			return nil, 0, err
		}
		es = append(es, span{i, end})
		i = d.ws(end)
		if i >= len(d.b) {
			return nil, 0, errMalformed
		}
		if d.b[i] == ']' {
			return es, i + 1, nil
		}
		if d.b[i] != ',' {
			return nil, 0, errMalformed
		}
		i = d.ws(i + 1)
	}
}

// members parses the object at v; a value that is not an object is
// malformed.
func (d *jsonDoc) members(v span, depth int) ([]member, error) {
	ms, _, err := d.object(v.start, depth, nil)
	return ms, err
}

// elements parses the array at v; a value that is not an array is
// malformed.
func (d *jsonDoc) elements(v span, depth int) ([]span, error) {
	es, _, err := d.array(v.start, depth)
	return es, err
}

// rows walks the array at v whose elements are all objects (MLflow's rows),
// parsing each element once and handing its members to fn, which returns
// whether to keep the row. It then deletes the rows not kept. The members
// slice is reused between calls.
func (d *jsonDoc) rows(v span, depth int, fn func(ms []member) (bool, error)) error {
	_, err := d.rowsAt(v.start, depth, fn)
	return err
}

// rowsAt is rows for the array starting at start, returning the index
// after it. null stands for no rows.
func (d *jsonDoc) rowsAt(start, depth int, fn func(ms []member) (bool, error)) (int, error) {
	if start < len(d.b) && d.b[start] == 'n' {
		return d.literal(start, "null")
	}
	if start >= len(d.b) || d.b[start] != '[' || depth >= maxDepth {
		return 0, errMalformed
	}
	var (
		es   []span
		keep []bool
		buf  []member
	)
	i := d.ws(start + 1)
	if i < len(d.b) && d.b[i] == ']' {
		return i + 1, nil
	}
	for {
		ms, end, err := d.object(i, depth+1, buf)
		if err != nil {
			return 0, err
		}
		buf = ms
		ok, err := fn(ms)
		if err != nil {
			return 0, err
		}
		es, keep = append(es, span{i, end}), append(keep, ok)
		i = d.ws(end)
		if i >= len(d.b) {
			return 0, errMalformed
		}
		if d.b[i] == ']' {
			break
		}
		if d.b[i] != ',' {
			return 0, errMalformed
		}
		i = d.ws(i + 1)
	}
	d.dropElements(es, keep)
	return i + 1, nil
}

// value validates the value starting at i and returns the index after it.
func (d *jsonDoc) value(i, depth int) (int, error) {
	if i >= len(d.b) {
		return 0, errMalformed
	}
	switch c := d.b[i]; {
	case c == '"':
		return d.str(i)
	case c == '{':
		_, end, err := d.skipContainer(i, depth)
		return end, err
	case c == '[':
		_, end, err := d.skipContainer(i, depth)
		return end, err
	case c == 't':
		return d.literal(i, "true")
	case c == 'f':
		return d.literal(i, "false")
	case c == 'n':
		return d.literal(i, "null")
	case c == '-' || '0' <= c && c <= '9':
		return d.number(i)
	}
	return 0, errMalformed
}

// skipContainer validates an object or array without recording its
// contents: keys are checked for syntax, not for duplicates (the filters
// never read such an object).
func (d *jsonDoc) skipContainer(i, depth int) (struct{}, int, error) {
	if depth >= maxDepth {
		return struct{}{}, 0, errMalformed
	}
	open := d.b[i]
	i = d.ws(i + 1)
	closer := byte('}')
	if open == '[' {
		closer = ']'
	}
	if i < len(d.b) && d.b[i] == closer {
		return struct{}{}, i + 1, nil
	}
	for {
		if open == '{' {
			ke, err := d.str(i)
			if err != nil {
				return struct{}{}, 0, err
			}
			i = d.ws(ke)
			if i >= len(d.b) || d.b[i] != ':' {
				return struct{}{}, 0, errMalformed
			}
			i = d.ws(i + 1)
		}
		end, err := d.value(i, depth+1)
		if err != nil {
			return struct{}{}, 0, err
		}
		i = d.ws(end)
		if i >= len(d.b) {
			return struct{}{}, 0, errMalformed
		}
		if d.b[i] == closer {
			return struct{}{}, i + 1, nil
		}
		if d.b[i] != ',' {
			return struct{}{}, 0, errMalformed
		}
		i = d.ws(i + 1)
	}
}

// plain marks the bytes a string may hold as they are: not '"', '\\', or
// a control character.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str validates the string starting at i and returns the index after its
// closing quote.
func (d *jsonDoc) str(i int) (int, error) {
	if i >= len(d.b) || d.b[i] != '"' {
		return 0, errMalformed
	}
	b := d.b
	for i++; i < len(b); i++ {
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			i++
			if i >= len(d.b) {
				return 0, errMalformed
			}
			switch d.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d.b) {
					return 0, errMalformed
				}
				for _, h := range d.b[i+1 : i+5] {
					if !isHex(h) {
						return 0, errMalformed
					}
				}
				i += 4
			default:
				return 0, errMalformed
			}
		case c < 0x20:
			return 0, errMalformed
		}
	}
	return 0, errMalformed
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (d *jsonDoc) literal(i int, lit string) (int, error) {
	if len(d.b)-i < len(lit) || string(d.b[i:i+len(lit)]) != lit {
		return 0, errMalformed
	}
	return i + len(lit), nil
}

// number validates a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *jsonDoc) number(i int) (int, error) {
	b := d.b
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return 0, errMalformed
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return 0, errMalformed
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return 0, errMalformed
		}
	}
	return i, nil
}

// unquote returns the string at v (which str validated), unescaped as a
// JSON reader sees it.
func (d *jsonDoc) unquote(v span) (string, error) {
	raw := d.b[v.start:v.end]
	if slices.Index(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errMalformed
	}
	return s, nil
}

// keyBytes returns the key at v unescaped, as a slice of the body when it
// holds no escape.
func (d *jsonDoc) keyBytes(v span) ([]byte, error) {
	raw := d.b[v.start+1 : v.end-1]
	if slices.Index(raw, '\\') < 0 {
		return raw, nil
	}
	s, err := d.unquote(v)
	return []byte(s), err
}

// text returns the string value at v; ok is false when v is not a string
// (null, a number, an object…).
func (d *jsonDoc) text(v span) (s string, ok bool, err error) {
	if d.kind(v) != '"' {
		return "", false, nil
	}
	s, err = d.unquote(v)
	return s, err == nil, err
}

// find returns the member called key, if any.
func find(ms []member, key string) (member, bool) {
	for _, m := range ms {
		if string(m.key) == key {
			return m, true
		}
	}
	return member{}, false
}

// dropElements deletes the array elements es[i] for which keep[i] is
// false, with their separating commas, so that the array stays valid.
func (d *jsonDoc) dropElements(es []span, keep []bool) {
	d.drop(len(es), func(i int) (int, int) { return es[i].start, es[i].end }, keep)
}

// dropMembers deletes the object members ms[i] for which keep[i] is false.
func (d *jsonDoc) dropMembers(ms []member, keep []bool) {
	d.drop(len(ms), func(i int) (int, int) { return ms[i].keyStart, ms[i].val.end }, keep)
}

// cut deletes b[start:end], merged with the previous deletion when the two
// touch: a page of a thousand rows with few kept makes a few edits.
func (d *jsonDoc) cut(start, end int) {
	if n := len(d.edits); n > 0 && d.edits[n-1].end == start && d.edits[n-1].repl == nil {
		d.edits[n-1].end = end
		return
	}
	d.edits = append(d.edits, edit{start: start, end: end})
}

// drop deletes items of a comma-separated list. Everything before the
// first kept item goes up to that item's start (so its trailing comma goes
// too); every later dropped item goes from the end of the item before it,
// taking the comma in front of it. Kept items, and any edits inside them,
// are untouched.
func (d *jsonDoc) drop(n int, at func(int) (int, int), keep []bool) {
	first := slices.Index(keep[:n], true)
	if first < 0 {
		if n > 0 {
			start, _ := at(0)
			_, end := at(n - 1)
			d.cut(start, end)
		}
		return
	}
	if first > 0 {
		start, _ := at(0)
		end, _ := at(first)
		d.cut(start, end)
	}
	for i := first + 1; i < n; i++ {
		if keep[i] {
			continue
		}
		_, start := at(i - 1)
		_, end := at(i)
		d.cut(start, end)
	}
}

// changed reports whether any edit was made.
func (d *jsonDoc) changed() bool { return len(d.edits) > 0 }

// output applies the edits and returns the new body. Edits must not
// overlap; if they do, a filter made a mistake, and the body is refused
// rather than guessed at.
func (d *jsonDoc) output() ([]byte, error) {
	if len(d.edits) == 0 {
		return d.b, nil
	}
	slices.SortFunc(d.edits, func(a, b edit) int { return a.start - b.start })
	size := len(d.b)
	at := 0
	for _, e := range d.edits {
		if e.start < at || e.end < e.start {
			return nil, errors.New("extproc: overlapping edits")
		}
		size += len(e.repl) - (e.end - e.start)
		at = e.end
	}
	out := make([]byte, 0, size)
	at = 0
	for _, e := range d.edits {
		out = append(out, d.b[at:e.start]...)
		out = append(out, e.repl...)
		at = e.end
	}
	return append(out, d.b[at:]...), nil
}
