package mlflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// JSON limits. MLflow bodies that carry ids are small; trace payloads can be
// deeper but never this deep. Past the limits we deny rather than guess.
const (
	maxJSONDepth  = 64
	maxJSONTokens = 1 << 20
)

var (
	errJSONSyntax    = errors.New("mlflow: body is not valid JSON")
	errJSONDuplicate = errors.New("mlflow: duplicate key in JSON body")
	errJSONTooDeep   = errors.New("mlflow: JSON body nested too deeply")
	errJSONTooLarge  = errors.New("mlflow: JSON body has too many tokens")
	errJSONNotObject = errors.New("mlflow: JSON body is not an object")
	errJSONEncoding  = errors.New("mlflow: JSON body is not valid UTF-8")
)

// A JSON body is read in two steps. scanJSONObject validates all of it in
// one pass, as strictly as encoding/json's Decode, refusing any
// duplicate key at any depth: Python (and so MLflow) keeps the last
// duplicate, other parsers the first, so with a duplicate two readers can
// see two ids. Invalid UTF-8 is refused too: Go would replace it with U+FFFD
// while Python rejects the body. Then the parameter reader takes only the
// fields a route names from the validated bytes (jsonObject, jsonValue):
// log-batch's twenty metrics are skipped over, never built into a tree.
// What a field holds is exactly what encoding/json would decode there.

// jsonValue is one value inside a body scanJSONObject accepted: its bytes,
// without surrounding whitespace. Its methods rely on that validation.
type jsonValue []byte

// jsonMember is one member of the top-level object, its key unescaped.
type jsonMember struct {
	key []byte
	val jsonValue
}

// jsonObject is a validated JSON object. The body's top-level object comes
// with its members indexed, since a route reads several fields of it;
// nested objects are walked when read.
type jsonObject struct {
	raw     jsonValue
	members []jsonMember
	indexed bool
}

// parseJSONObject reads body into a tree of map[string]any, []any, string,
// json.Number, bool and nil (for the callers that want the whole tree:
// OTLP/JSON, the response filter), with the refusals of scanJSONObject.
func parseJSONObject(body []byte) (map[string]any, error) {
	obj, err := scanJSONObject(body, nil)
	if err != nil {
		return nil, err
	}
	return obj.tree()
}

// scanJSONObject validates body and indexes its top-level object's members
// (in members' storage, when large enough). It refuses exactly what
// encoding/json's Decode (one value, then nothing but whitespace) refuses,
// plus invalid UTF-8, duplicate keys, nesting deeper than maxJSONDepth and
// more than maxJSONTokens values. The error for a refused body is the one
// scanJSON names, else errJSONSyntax: the lenient walk says why, as it did
// before this reader existed.
func scanJSONObject(body []byte, members []jsonMember) (jsonObject, error) {
	if !utf8.Valid(body) {
		return jsonObject{}, errJSONEncoding
	}
	start := skipSpace(body, 0)
	end, top, ok := validateJSON(body, start, members[:0])
	if !ok {
		if err := scanJSON(body); err != nil {
			return jsonObject{}, err
		}
		return jsonObject{}, errJSONSyntax
	}
	if body[start] != '{' {
		return jsonObject{}, errJSONNotObject
	}
	return jsonObject{raw: body[start:end], members: top, indexed: true}, nil
}

// validFrame is one open object or array during validateJSON.
type validFrame struct {
	obj      bool
	keysFrom int                 // this object's keys are keys[keysFrom:]
	set      map[string]struct{} // the keys, once there are too many to search
}

// validateJSON validates the one value at body[i:], followed by nothing but
// whitespace, with scanJSON's limits and duplicate check, and appends the
// top-level object's members to top. It is one loop with its stacks in
// small arrays, so that a body costs no allocation unless a key is
// escaped, or nesting or an object is large.
func validateJSON(body []byte, i int, top []jsonMember) (end int, members []jsonMember, ok bool) {
	// The arrays hold what MLflow's bodies need and no more: a large frame
	// makes the handler's goroutine grow its stack, which costs a copy.
	var (
		stackBuf [8]validFrame
		keysBuf  [16][]byte
		stack    = stackBuf[:0]
		keys     = keysBuf[:0]
		values   int
		topKey   []byte // the top-level member whose value is being read
		topStart int
		inTop    bool // topKey's value is being read
	)
	for {
		// A value starts at i.
		if i >= len(body) {
			return i, nil, false
		}
		values++
		if values > maxJSONTokens {
			return i, nil, false
		}
		switch c := body[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return i, nil, false
			}
			stack = append(stack, validFrame{obj: c == '{', keysFrom: len(keys)})
			i = skipSpace(body, i+1)
			if i < len(body) && (body[i] == '}' && c == '{' || body[i] == ']' && c == '[') {
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '[' {
				continue // to the first element
			}
			// The first key; later ones are read after their comma below.
			var key []byte
			if i, key, ok = objectKey(body, i); !ok {
				return i, nil, false
			}
			keys = append(keys, key)
			if len(stack) == 1 {
				topKey, topStart, inTop = key, i, true
			}
			continue
		case '"':
			var ok bool
			if i, _, ok = scanString(body, i); !ok {
				return i, nil, false
			}
		case 't':
			if i, ok = literal(body, i, "true"); !ok {
				return i, nil, false
			}
		case 'f':
			if i, ok = literal(body, i, "false"); !ok {
				return i, nil, false
			}
		case 'n':
			if i, ok = literal(body, i, "null"); !ok {
				return i, nil, false
			}
		default:
			if i, ok = scanNumber(body, i); !ok {
				return i, nil, false
			}
		}
		// A value ended at i: close every container that ends here, then
		// go on to the next element or member.
		for {
			if inTop && len(stack) == 1 {
				top = append(top, jsonMember{key: topKey, val: body[topStart:i]})
				inTop = false
			}
			if len(stack) == 0 {
				if skipSpace(body, i) != len(body) {
					return i, nil, false
				}
				return i, top, true
			}
			i = skipSpace(body, i)
			if i >= len(body) {
				return i, nil, false
			}
			f := &stack[len(stack)-1]
			c := body[i]
			if c == ',' {
				i = skipSpace(body, i+1)
				if !f.obj {
					break
				}
				var key []byte
				if i, key, ok = objectKey(body, i); !ok {
					return i, nil, false
				}
				// Duplicates as scanJSON finds them: a linear search while
				// the object is small, a set once it is not.
				if f.set != nil {
					if _, dup := f.set[string(key)]; dup {
						return i, nil, false
					}
					f.set[string(key)] = struct{}{}
				} else {
					for _, k := range keys[f.keysFrom:] {
						if string(k) == string(key) {
							return i, nil, false
						}
					}
					keys = append(keys, key)
					if len(keys)-f.keysFrom > scanSetAfter {
						f.set = make(map[string]struct{}, 2*scanSetAfter)
						for _, k := range keys[f.keysFrom:] {
							f.set[string(k)] = struct{}{}
						}
					}
				}
				if len(stack) == 1 {
					topKey, topStart, inTop = key, i, true
				}
				break
			}
			if f.obj && c != '}' || !f.obj && c != ']' {
				return i, nil, false
			}
			keys = keys[:f.keysFrom]
			stack = stack[:len(stack)-1]
			i++
		}
	}
}

// objectKey reads the key at body[i], its colon and the whitespace after
// it: the key (unescaped as encoding/json does) and where its value
// starts.
func objectKey(body []byte, i int) (next int, key []byte, ok bool) {
	if i >= len(body) || body[i] != '"' {
		return i, nil, false
	}
	end, escaped, ok := scanString(body, i)
	if !ok {
		return i, nil, false
	}
	key = body[i+1 : end-1]
	if escaped {
		var k string
		if json.Unmarshal(body[i:end], &k) != nil {
			return i, nil, false
		}
		key = []byte(k)
	}
	i = skipSpace(body, end)
	if i >= len(body) || body[i] != ':' {
		return i, nil, false
	}
	return skipSpace(body, i+1), key, true
}

// plainString marks the bytes a JSON string holds as they are: anything
// but a control character, a quote or a backslash.
var plainString = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string starting at b[i] == '"' as JSON allows
// it (no control characters, only JSON's escapes) and returns where it
// ends and whether it holds an escape.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for i++; ; i++ {
		for i < len(b) && plainString[b[i]] {
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

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanNumber validates JSON's number grammar at b[i].
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the end of the validated value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := skipString(b, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(b) {
			for i < len(b) && !structural[b[i]] {
				i++
			}
			if i >= len(b) {
				break
			}
			switch b[i] {
			case '"':
				i, _ = skipString(b, i)
				continue
			case '{', '[':
				depth++
			default:
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) && !endsScalar[b[i]] {
		i++
	}
	return i
}

// structural marks the bytes skipValue stops at inside a container, and
// endsScalar those that end a number or literal.
var structural, endsScalar = func() (s, e [256]bool) {
	for _, c := range []byte(`"{}[]`) {
		s[c] = true
	}
	for _, c := range []byte(",}] \t\n\r") {
		e[c] = true
	}
	return s, e
}()

// skipString returns the end of the validated string at b[i] == '"', and
// whether it holds an escape.
func skipString(b []byte, i int) (end int, escaped bool) {
	for i++; i < len(b); i++ {
		for i < len(b) && plainString[b[i]] {
			i++
		}
		if i >= len(b) || b[i] == '"' {
			break
		}
		if b[i] == '\\' {
			escaped = true
			i++
		}
	}
	return i + 1, escaped
}

// members iterates over the members of a validated object.
type members struct {
	o jsonObject
	i int // the next member: an index in o.members, or an offset in o.raw
}

func (o jsonObject) iter() members {
	if o.indexed {
		return members{o: o}
	}
	return members{o: o, i: skipSpace(o.raw, 1)}
}

// next returns the next member, its key unescaped, or ok false after the
// last.
func (it *members) next() (key []byte, val jsonValue, ok bool) {
	if it.o.indexed {
		if it.i >= len(it.o.members) {
			return nil, nil, false
		}
		m := it.o.members[it.i]
		it.i++
		return m.key, m.val, true
	}
	b, i := it.o.raw, it.i
	if i >= len(b) || b[i] != '"' {
		return nil, nil, false
	}
	end, escaped := skipString(b, i)
	key = b[i+1 : end-1]
	if escaped {
		key = []byte(jsonValue(b[i:end]).unquote())
	}
	i = skipSpace(b, end) // at the colon
	i = skipSpace(b, i+1) // at the value
	end = skipValue(b, i)
	val = b[i:end]
	i = skipSpace(b, end) // at a comma or the closing brace
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	it.i = i
	return key, val, true
}

// get returns the member spelled exactly key.
func (o jsonObject) get(key string) (jsonValue, bool) {
	it := o.iter()
	for {
		k, v, ok := it.next()
		if !ok {
			return nil, false
		}
		if string(k) == key {
			return v, true
		}
	}
}

// lookup returns the member key in snake or camel case, as protobuf's JSON
// parser accepts both; has says whether either spelling is present, both
// says both are (a deny for the caller to phrase).
func (o jsonObject) lookup(key string) (val jsonValue, has, both bool) {
	val, has, both, _ = o.lookupEnd(key)
	return val, has, both
}

// lookupEnd is lookup that also returns where o ends in o.raw (after its
// closing brace) when o is not indexed: o.raw may then run past o, as when
// an array's elements are read without first skipping each to its end.
func (o jsonObject) lookupEnd(key string) (val jsonValue, has, both bool, end int) {
	var snake, camelCase bool
	// camel(key) is key without its underscores: only a key of that length
	// can be it.
	camelLen := len(key) - strings.Count(key, "_")
	hasCamel := camelLen != len(key)
	var sv, cv jsonValue
	it := o.iter()
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		switch {
		case string(k) == key:
			sv, snake = v, true
		case hasCamel && len(k) == camelLen && isCamelOf(k, key):
			cv, camelCase = v, true
		}
	}
	if !o.indexed {
		end = it.i + 1
	}
	switch {
	case snake && camelCase:
		return nil, true, true, end
	case camelCase:
		return cv, true, false, end
	}
	return sv, snake, false, end
}

// tree decodes o with encoding/json (numbers as json.Number); an empty
// jsonObject is an empty map.
func (o jsonObject) tree() (map[string]any, error) {
	m := map[string]any{}
	if len(o.raw) == 0 {
		return m, nil
	}
	if err := o.raw.decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// decode is encoding/json's reading of v, numbers as json.Number.
func (v jsonValue) decode(into any) error {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		return errJSONSyntax
	}
	return nil
}

func (v jsonValue) isNull() bool { return len(v) > 0 && v[0] == 'n' }

// object returns v as an object, if it is one.
func (v jsonValue) object() (jsonObject, bool) {
	if len(v) == 0 || v[0] != '{' {
		return jsonObject{}, false
	}
	return jsonObject{raw: v}, true
}

// elems calls fn with every element of v, which must be an array (isArray),
// until fn returns false.
func (v jsonValue) elems(fn func(jsonValue) bool) {
	i := skipSpace(v, 1)
	for i < len(v) && v[i] != ']' {
		end := skipValue(v, i)
		if !fn(v[i:end]) {
			return
		}
		i = skipSpace(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
}

func (v jsonValue) isArray() bool { return len(v) > 0 && v[0] == '[' }

// str returns v's string as encoding/json decodes it, if v is a string.
func (v jsonValue) str() (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	return v.unquote(), true
}

// unquote decodes the validated string v: a copy of its bytes when it holds
// no escape, else what encoding/json makes of it (a lone surrogate becomes
// U+FFFD, as there).
func (v jsonValue) unquote() string {
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner)
	}
	var s string
	_ = json.Unmarshal(v, &s)
	return s
}

// scanFrame is one open object or array during scanJSON.
type scanFrame struct {
	obj       bool
	expectKey bool
	keysFrom  int                 // this object's keys are keys[keysFrom:]
	set       map[string]struct{} // the keys, once there are too many to search
}

// scanSetAfter is how many keys an object may have before an object's keys
// are indexed in a map: linear search stays cheap for MLflow's small
// objects, and a body with a huge object cannot make the scan quadratic.
const scanSetAfter = 16

// scanJSON walks body once, in document order, and reports the first
// duplicate key (compared after unescaping, as a JSON reader sees them), a
// container nested deeper than maxJSONDepth, or more than maxJSONTokens
// values. It is lenient about syntax: it names why scanJSONObject refused a
// body, the first of these it meets walking on past a syntax error, as the
// reader before scanJSONObject did (reasons are part of the audit log). It
// never panics or loops on any input, and returns errJSONSyntax for what it
// cannot walk.
func scanJSON(body []byte) error {
	var (
		stackBuf [16]scanFrame
		keysBuf  [64][]byte
		stack    = stackBuf[:0]
		keys     = keysBuf[:0]
		values   int
	)
	for i := 0; i < len(body); {
		c := body[i]
		switch c {
		case ' ', '\t', '\n', '\r', ':':
			i++
		case ',':
			if n := len(stack); n > 0 && stack[n-1].obj {
				stack[n-1].expectKey = true
			}
			i++
		case '{', '[':
			if values++; values > maxJSONTokens {
				return errJSONTooLarge
			}
			if len(stack) >= maxJSONDepth {
				return errJSONTooDeep
			}
			stack = append(stack, scanFrame{obj: c == '{', expectKey: c == '{', keysFrom: len(keys)})
			i++
		case '}', ']':
			n := len(stack)
			if n == 0 {
				return errJSONSyntax
			}
			keys = keys[:stack[n-1].keysFrom]
			stack = stack[:n-1]
			i++
		case '"':
			end, escaped := i+1, false
			for ; end < len(body) && body[end] != '"'; end++ {
				if body[end] == '\\' {
					escaped = true
					end++
				}
			}
			if end >= len(body) {
				return errJSONSyntax
			}
			raw := body[i : end+1]
			i = end + 1
			n := len(stack)
			if n == 0 || !stack[n-1].obj || !stack[n-1].expectKey {
				if values++; values > maxJSONTokens {
					return errJSONTooLarge
				}
				continue
			}
			top := &stack[n-1]
			top.expectKey = false
			key := raw[1 : len(raw)-1]
			if escaped {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					return errJSONSyntax
				}
				key = []byte(s)
			}
			if top.set != nil {
				if _, dup := top.set[string(key)]; dup {
					return errJSONDuplicate
				}
				top.set[string(key)] = struct{}{}
				continue
			}
			for _, k := range keys[top.keysFrom:] {
				if bytes.Equal(k, key) {
					return errJSONDuplicate
				}
			}
			keys = append(keys, key)
			if len(keys)-top.keysFrom > scanSetAfter {
				top.set = make(map[string]struct{}, 2*scanSetAfter)
				for _, k := range keys[top.keysFrom:] {
					top.set[string(k)] = struct{}{}
				}
			}
		default:
			// A number, true, false or null (or garbage): one value, up
			// to the next delimiter.
			if values++; values > maxJSONTokens {
				return errJSONTooLarge
			}
			for i++; i < len(body); i++ {
				if d := body[i]; d == ',' || d == ']' || d == '}' || d == ':' || d == '"' || d == ' ' || d == '\t' || d == '\n' || d == '\r' || d == '{' || d == '[' {
					break
				}
			}
		}
	}
	return nil
}
