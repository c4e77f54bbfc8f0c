package mlflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"sync"
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
// while Python rejects the body. The same pass records every value of the
// body as a node (where its bytes are, its key, where the next value after
// it starts), so the parameter reader takes the fields a route names by
// following nodes, never by scanning bytes again: log-batch's twenty
// metrics are twenty hops over four keys each, never built into a tree.
// What a field holds is exactly what encoding/json would decode there.

// jsonNode is one value of a validated body, in document order: a
// container's members or elements are the nodes that follow it, up to its
// next. Offsets are int32 (a body over 2 GiB is refused), and the node holds
// no pointer, so a body's nodes are one block the collector never scans.
type jsonNode struct {
	start, end int32 // the value is body[start:end]
	next       int32 // the node after this value and everything inside it
	// A member's key, between its quotes, is body[keyStart:keyEnd]
	// (0, 0 for an array's element and the body's top value); when the key
	// holds an escape, keyEsc is 1 + its index in jsonDoc.escKeys, which
	// holds it unescaped.
	keyStart, keyEnd, keyEsc int32
}

// jsonDoc is a validated body and its nodes; nodes[0] is its top value.
type jsonDoc struct {
	body    []byte
	nodes   []jsonNode
	escKeys []string
}

// jsonDocs keeps the nodes' storage of bodies read before, so that reading
// one costs no allocation.
var jsonDocs = sync.Pool{New: func() any { return &jsonDoc{nodes: make([]jsonNode, 0, 128)} }}

// maxPooledNodes bounds the storage a document returns to jsonDocs: a large
// body's nodes go to the collector instead of staying in the pool.
const maxPooledNodes = 4096

// release returns d's storage to jsonDocs. Nothing read from d may be used
// after: what the readers return (strings, decoded trees) is copied out.
func (d *jsonDoc) release() {
	if d == nil {
		return
	}
	clear(d.escKeys)
	d.body, d.nodes, d.escKeys = nil, d.nodes[:0], d.escKeys[:0]
	if cap(d.nodes) <= maxPooledNodes {
		jsonDocs.Put(d)
	}
}

// parseJSONObject reads body into a tree of map[string]any, []any, string,
// json.Number, bool and nil (for the callers that want the whole tree:
// OTLP/JSON, the response filter), with the refusals of scanJSONObject.
func parseJSONObject(body []byte) (map[string]any, error) {
	obj, err := scanJSONObject(body)
	if err != nil {
		return nil, err
	}
	defer obj.doc.release()
	return obj.tree()
}

// scanJSONObject validates body and records its nodes, in storage from
// jsonDocs that the caller gives back with obj.doc.release(). It refuses
// exactly what encoding/json's Decode (one value, then nothing but
// whitespace) refuses, plus invalid UTF-8, duplicate keys, nesting deeper
// than maxJSONDepth, more than maxJSONTokens values and a body of 2 GiB or
// more (which no Envoy buffers for a check). The error for a refused body is
// the one scanJSON names, else errJSONSyntax: the lenient walk says why, as
// it did before this reader existed.
func scanJSONObject(body []byte) (jsonObject, error) {
	if len(body) > math.MaxInt32-1 {
		return jsonObject{}, errJSONTooLarge
	}
	if !utf8.Valid(body) {
		return jsonObject{}, errJSONEncoding
	}
	d := jsonDocs.Get().(*jsonDoc)
	d.body = body
	if !d.validate(skipSpace(body, 0)) {
		d.release()
		if err := scanJSON(body); err != nil {
			return jsonObject{}, err
		}
		return jsonObject{}, errJSONSyntax
	}
	if body[d.nodes[0].start] != '{' {
		d.release()
		return jsonObject{}, errJSONNotObject
	}
	return jsonObject{doc: d}, nil
}

// validFrame is one open object or array during validate.
type validFrame struct {
	node int32 // the container's node
	obj  bool
	keys int32               // how many members the object has so far
	set  map[string]struct{} // its keys, once there are too many to compare
}

// validate validates the one value at d.body[i:], followed by nothing but
// whitespace, with scanJSON's limits and duplicate check, and records its
// nodes. It is one loop with its stack in a small array, so that a body
// costs no allocation unless a key is escaped, nesting or an object is
// large, or the body has more values than the pooled nodes have room for.
func (d *jsonDoc) validate(i int) bool {
	body := d.body
	var (
		// The array holds what MLflow's bodies need and no more: a large
		// frame makes the handler's goroutine grow its stack, which costs
		// a copy.
		stackBuf [8]validFrame
		stack    = stackBuf[:0]
		nodes    = d.nodes[:cap(d.nodes)] // written in place, grown when full
		n        int32                    // how many nodes there are
		// The key of the member whose value starts at i (see jsonNode).
		keyStart, keyEnd, keyEsc int32
		ok                       bool
	)
	for {
		// A value starts at i.
		if i >= len(body) || n >= maxJSONTokens {
			return false
		}
		if int(n) == len(nodes) {
			nodes = append(nodes, make([]jsonNode, len(nodes)+16)...)
		}
		this := n
		nodes[this] = jsonNode{start: int32(i), keyStart: keyStart, keyEnd: keyEnd, keyEsc: keyEsc}
		n++
		switch c := body[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return false
			}
			i = skipSpace(body, i+1)
			if i < len(body) && (body[i] == '}' && c == '{' || body[i] == ']' && c == '[') {
				i++
				break
			}
			stack = append(stack, validFrame{node: this, obj: c == '{'})
			if c == '[' {
				keyStart, keyEnd, keyEsc = 0, 0, 0
				continue // to the first element
			}
			// The first key; later ones are read after their comma below.
			if i, keyStart, keyEnd, keyEsc, ok = d.objectKey(i); !ok {
				return false
			}
			stack[len(stack)-1].keys = 1
			continue
		case '"':
			if i, _, ok = scanString(body, i); !ok {
				return false
			}
		case 't':
			if i, ok = literal(body, i, "true"); !ok {
				return false
			}
		case 'f':
			if i, ok = literal(body, i, "false"); !ok {
				return false
			}
		case 'n':
			if i, ok = literal(body, i, "null"); !ok {
				return false
			}
		default:
			if i, ok = scanNumber(body, i); !ok {
				return false
			}
		}
		// A value (a scalar or an empty container) ended at i: close every
		// container that ends here, then go on to the next element or
		// member.
		nodes[this].end, nodes[this].next = int32(i), this+1
		for {
			if len(stack) == 0 {
				d.nodes = nodes[:n]
				return skipSpace(body, i) == len(body)
			}
			i = skipSpace(body, i)
			if i >= len(body) {
				return false
			}
			f := &stack[len(stack)-1]
			c := body[i]
			if c == ',' {
				i = skipSpace(body, i+1)
				if !f.obj {
					keyStart, keyEnd, keyEsc = 0, 0, 0
					break
				}
				if i, keyStart, keyEnd, keyEsc, ok = d.objectKey(i); !ok {
					return false
				}
				if d.duplicate(nodes[:n], f, keyStart, keyEnd, keyEsc) {
					return false
				}
				break
			}
			if f.obj && c != '}' || !f.obj && c != ']' {
				return false
			}
			i++
			nodes[f.node].end, nodes[f.node].next = int32(i), n
			stack = stack[:len(stack)-1]
		}
	}
}

// duplicate reports whether key is already a key of f's object, whose
// members so far are the nodes after f.node, compared after unescaping as
// scanJSON does: one by one while the object is small, in a set once it is
// not (so that a huge object cannot make the pass quadratic).
func (d *jsonDoc) duplicate(nodes []jsonNode, f *validFrame, keyStart, keyEnd, keyEsc int32) bool {
	key := &jsonNode{keyStart: keyStart, keyEnd: keyEnd, keyEsc: keyEsc}
	if f.set != nil {
		k := d.key(key)
		if _, dup := f.set[k]; dup {
			return true
		}
		f.set[k] = struct{}{}
		return false
	}
	for c := f.node + 1; c < int32(len(nodes)); c = nodes[c].next {
		m := &nodes[c]
		if m.keyEsc == 0 && keyEsc == 0 {
			// The common case, inline: neither key has an escape.
			if m.keyEnd-m.keyStart == keyEnd-keyStart && string(d.body[m.keyStart:m.keyEnd]) == string(d.body[keyStart:keyEnd]) {
				return true
			}
		} else if d.sameKey(m, key) {
			return true
		}
	}
	if f.keys++; f.keys > scanSetAfter {
		f.set = make(map[string]struct{}, 2*scanSetAfter)
		for c := f.node + 1; c < int32(len(nodes)); c = nodes[c].next {
			f.set[d.key(&nodes[c])] = struct{}{}
		}
		f.set[d.key(key)] = struct{}{}
	}
	return false
}

// objectKey reads the key at body[i], its colon and the whitespace after
// it: the key, as a node's key fields, and where its value starts. An
// escaped key is unescaped as encoding/json does, once.
func (d *jsonDoc) objectKey(i int) (next int, keyStart, keyEnd, keyEsc int32, ok bool) {
	body := d.body
	if i >= len(body) || body[i] != '"' {
		return i, 0, 0, 0, false
	}
	end, escaped, ok := scanString(body, i)
	if !ok {
		return i, 0, 0, 0, false
	}
	if escaped {
		var k string
		if json.Unmarshal(body[i:end], &k) != nil {
			return i, 0, 0, 0, false
		}
		d.escKeys = append(d.escKeys, k)
		keyEsc = int32(len(d.escKeys))
	}
	keyStart, keyEnd = int32(i+1), int32(end-1)
	i = skipSpace(body, end)
	if i >= len(body) || body[i] != ':' {
		return i, 0, 0, 0, false
	}
	return skipSpace(body, i+1), keyStart, keyEnd, keyEsc, true
}

// key returns n's key, unescaped, as a string of its own.
func (d *jsonDoc) key(n *jsonNode) string {
	if n.keyEsc > 0 {
		return d.escKeys[n.keyEsc-1]
	}
	return string(d.body[n.keyStart:n.keyEnd])
}

// keyIs reports whether n's key, unescaped, is k.
func (d *jsonDoc) keyIs(n *jsonNode, k string) bool {
	if n.keyEsc > 0 {
		return d.escKeys[n.keyEsc-1] == k
	}
	return string(d.body[n.keyStart:n.keyEnd]) == k
}

// sameKey reports whether a and b have the same key, unescaped. A key
// without an escape is its own unescaped form.
func (d *jsonDoc) sameKey(a, b *jsonNode) bool {
	switch {
	case a.keyEsc > 0:
		return d.keyIs(b, d.escKeys[a.keyEsc-1])
	case b.keyEsc > 0:
		return d.keyIs(a, d.escKeys[b.keyEsc-1])
	}
	return string(d.body[a.keyStart:a.keyEnd]) == string(d.body[b.keyStart:b.keyEnd])
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

// jsonValue is one value of a body scanJSONObject accepted: node n of doc.
// The zero jsonValue is an absent value. Its methods rely on the
// validation.
type jsonValue struct {
	doc *jsonDoc
	n   int32
}

// jsonObject is a jsonValue that is an object. The zero jsonObject is an
// empty one (an empty body).
type jsonObject jsonValue

// raw returns v's bytes, without surrounding whitespace.
func (v jsonValue) raw() []byte {
	if v.doc == nil {
		return nil
	}
	n := &v.doc.nodes[v.n]
	return v.doc.body[n.start:n.end]
}

// first is v's first byte, which says what kind of value it is; 0 when v
// is absent.
func (v jsonValue) first() byte {
	if v.doc == nil {
		return 0
	}
	return v.doc.body[v.doc.nodes[v.n].start]
}

func (v jsonValue) isNull() bool  { return v.first() == 'n' }
func (v jsonValue) isArray() bool { return v.first() == '[' }

// object returns v as an object, if it is one.
func (v jsonValue) object() (jsonObject, bool) {
	if v.first() != '{' {
		return jsonObject{}, false
	}
	return jsonObject(v), true
}

// elems calls fn with every element of v, which must be an array (isArray),
// until fn returns false.
func (v jsonValue) elems(fn func(jsonValue) bool) {
	nodes := v.doc.nodes
	for c := v.n + 1; c < nodes[v.n].next; c = nodes[c].next {
		if !fn(jsonValue{doc: v.doc, n: c}) {
			return
		}
	}
}

// str returns v's string as encoding/json decodes it, if v is a string.
func (v jsonValue) str() (string, bool) {
	if v.first() != '"' {
		return "", false
	}
	return unquote(v.raw()), true
}

// unquote decodes the validated string v: a copy of its bytes when it holds
// no escape, else what encoding/json makes of it (a lone surrogate becomes
// U+FFFD, as there).
func unquote(v []byte) string {
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner)
	}
	var s string
	_ = json.Unmarshal(v, &s)
	return s
}

// decode is encoding/json's reading of v, numbers as json.Number.
func (v jsonValue) decode(into any) error {
	dec := json.NewDecoder(bytes.NewReader(v.raw()))
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		return errJSONSyntax
	}
	return nil
}

// get returns the member spelled exactly key.
func (o jsonObject) get(key string) (jsonValue, bool) {
	if o.doc == nil {
		return jsonValue{}, false
	}
	nodes := o.doc.nodes
	for c := o.n + 1; c < nodes[o.n].next; c = nodes[c].next {
		if o.doc.keyIs(&nodes[c], key) {
			return jsonValue{doc: o.doc, n: c}, true
		}
	}
	return jsonValue{}, false
}

// lookup returns the member key in snake or camel case, as protobuf's JSON
// parser accepts both; has says whether either spelling is present, both
// says both are (a deny for the caller to phrase).
func (o jsonObject) lookup(key string) (val jsonValue, has, both bool) {
	if o.doc == nil {
		return jsonValue{}, false, false
	}
	// camel(key) is key without its underscores: only a key of that length
	// can be it.
	camelLen := int32(len(key))
	for i := 0; i < len(key); i++ {
		if key[i] == '_' {
			camelLen--
		}
	}
	hasCamel := int(camelLen) != len(key)
	var sv, cv jsonValue
	d := o.doc
	nodes := d.nodes
	for c := o.n + 1; c < nodes[o.n].next; c = nodes[c].next {
		n := &nodes[c]
		switch {
		case n.keyEsc > 0:
			k := d.escKeys[n.keyEsc-1]
			switch {
			case k == key:
				sv = jsonValue{doc: d, n: c}
			case hasCamel && isCamelOf(k, key):
				cv = jsonValue{doc: d, n: c}
			}
		case n.keyEnd-n.keyStart == int32(len(key)):
			if string(d.body[n.keyStart:n.keyEnd]) == key {
				sv = jsonValue{doc: d, n: c}
			}
		case hasCamel && n.keyEnd-n.keyStart == camelLen:
			if isCamelOf(d.body[n.keyStart:n.keyEnd], key) {
				cv = jsonValue{doc: d, n: c}
			}
		}
	}
	switch {
	case sv.doc != nil && cv.doc != nil:
		return jsonValue{}, true, true
	case cv.doc != nil:
		return cv, true, false
	}
	return sv, sv.doc != nil, false
}

// tree decodes o with encoding/json (numbers as json.Number); an empty
// jsonObject is an empty map.
func (o jsonObject) tree() (map[string]any, error) {
	m := map[string]any{}
	if o.doc == nil {
		return m, nil
	}
	if err := jsonValue(o).decode(&m); err != nil {
		return nil, err
	}
	return m, nil
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
