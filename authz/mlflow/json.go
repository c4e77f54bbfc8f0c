package mlflow

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/bits"
	"strings"
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
// while Python rejects the body. The same pass records the body's values
// as nodes (where its bytes are, its key, where the next value after it
// starts), so the parameter reader takes the fields a route names by
// following nodes, not by parsing bytes again. Each object's node holds
// a small hash set of its keys, and each array's the union of its
// objects', so a lookup of a key that is not there costs one test: finding
// that none of log-batch's twenty metrics has a model_id is one. What a
// field holds is exactly what encoding/json would decode there.
//
// One kind of object gets a node but none for its members: a compact
// object, an array's object whose members repeat, byte for byte between
// their values, those of an object before it in the array (its shape,
// see validator.object), each value a string, a number, true, false or
// null. Log-batch's metrics after the first are such objects, four
// numbers and strings each, whose member nodes no route reads (the
// array's key bits say none has a model_id). A reader that does
// walk one's members (jsonObject.get, lookupField) finds them in its
// bytes with compactMember, which the validation made simple to read:
// keys without an escape, values with nothing inside. A member found
// there is a jsonValue without a node (see jsonValue).

// jsonNode is one value of a validated body, in document order: a
// container's members or elements are the nodes that follow it, up to its
// next, except a compact object's, which have none (its next is the node
// after its own, as for {}; see jsonObject.compact). Offsets are int32 (a
// body over 2 GiB is refused), and the node holds no pointer, so a body's
// nodes are one block the collector never scans.
type jsonNode struct {
	start, end int32 // the value is body[start:end]
	next       int32 // the node after this value and everything inside it
	// A member's key, between its quotes, is body[keyStart:keyEnd]
	// (0, 0 for an array's element and the body's top value); when the key
	// holds an escape, keyEsc is 1 + its index in jsonDoc.escKeys, which
	// holds it unescaped.
	keyStart, keyEnd, keyEsc int32
	// keys, in an object's node, has the keyBit of each of its members'
	// keys set: a key whose bit is clear is not a member. In an array's
	// node it has those of every object the array holds, when it holds
	// nothing but objects, else every bit: a key whose bit is clear is in
	// none of its elements, which are all objects.
	keys uint64
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
	d := jsonDocs.Get().(*jsonDoc)
	d.body = body
	// validate checks UTF-8 as it goes (see scanString); a refused body is
	// looked at again to say why, invalid UTF-8 first, as it always was.
	if !d.validate(skipSpace(body, 0)) {
		d.release()
		if !utf8.Valid(body) {
			return jsonObject{}, errJSONEncoding
		}
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

// validator is the state of one validating pass over d.body.
type validator struct {
	d     *jsonDoc
	body  []byte
	nodes []jsonNode // written in place, grown when full
	n     int32      // how many nodes there are
	// limit is how many nodes the body may have: maxJSONTokens, less the
	// members of the compact objects so far, values without a node that
	// count all the same.
	limit int32
}

// validate validates the one value at d.body[i:], followed by nothing but
// whitespace, with scanJSON's limits and duplicate check, and records its
// nodes. It descends recursively, one call per object or array, so that
// where it is in the grammar is where it is in the code; the depth limit
// bounds the recursion (some 300 bytes of stack a level). A body costs no
// allocation unless a key is escaped, an object is large, or the body has
// more values than the pooled nodes have room for.
func (d *jsonDoc) validate(i int) bool {
	v := validator{d: d, body: d.body, nodes: d.nodes[:cap(d.nodes)], limit: maxJSONTokens}
	top, ok := v.node(i, 0, 0, 0)
	if ok {
		i, ok = v.value(i, 0, top, noShape)
	}
	d.nodes = v.nodes[:v.n]
	return ok && skipSpace(d.body, i) == len(d.body)
}

// node records a node for the value at body[i] with the given key fields
// (see jsonNode), and returns its index; false past maxJSONTokens values.
// A key travels as three integers, never as a jsonNode built field by field
// and copied whole: the copy's wide loads would wait for the narrow stores
// (a store-forwarding stall), which cost more than the rest of the node.
func (v *validator) node(i int, keyStart, keyEnd, keyEsc int32) (int32, bool) {
	if v.n >= v.limit {
		return 0, false
	}
	if int(v.n) == len(v.nodes) {
		v.nodes = append(v.nodes, make([]jsonNode, len(v.nodes)+16)...)
	}
	v.nodes[v.n] = jsonNode{start: int32(i), keyStart: keyStart, keyEnd: keyEnd, keyEsc: keyEsc}
	v.n++
	return v.n - 1, true
}

// value validates the value at body[i], node this, and those within it;
// depth is how many objects and arrays hold it. It returns where the value
// ends. shape is for an object (see object).
func (v *validator) value(i, depth int, this, shape int32) (int, bool) {
	body := v.body
	if i >= len(body) {
		return i, false
	}
	ok := false
	switch body[i] {
	case '{':
		if depth < maxJSONDepth {
			i, ok = v.object(i, depth+1, this, shape)
		}
	case '[':
		if depth < maxJSONDepth {
			i, ok = v.array(i, depth+1, this)
		}
	default:
		i, ok = leaf(body, i)
	}
	if !ok {
		return i, false
	}
	n := &v.nodes[this]
	n.end, n.next = int32(i), v.n
	return i, true
}

// leaf validates the string, number, true, false or null at body[i] and
// returns where it ends. It is also how a reader finds where a value without
// a node ends (a member of a compact object, see object), in a body it
// validated.
func leaf(body []byte, i int) (int, bool) {
	switch body[i] {
	case '"':
		end, _, ok := scanString(body, i)
		return end, ok
	case 't':
		return literal(body, i, "true")
	case 'f':
		return literal(body, i, "false")
	case 'n':
		return literal(body, i, "null")
	}
	return scanNumber(body, i)
}

// array validates the array at body[i] == '[', node this; depth counts it.
func (v *validator) array(i, depth int, this int32) (int, bool) {
	body := v.body
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		return i + 1, true
	}
	var (
		shape = int32(noShape) // the array's last object with member nodes
		keys  uint64           // see jsonNode.keys
	)
	for {
		elem, ok := v.node(i, 0, 0, 0)
		if !ok {
			return i, false
		}
		if i < len(body) && body[i] == '{' && depth < maxJSONDepth {
			// An object, as in most arrays MLflow reads: straight to
			// object, not through value.
			if i, ok = v.object(i, depth+1, elem, shape); !ok {
				return i, false
			}
			e := &v.nodes[elem]
			e.end, e.next = int32(i), v.n
			if e.next > elem+1 {
				// Not compact, nor {}: the objects after compare to it.
				// A compact one has no member nodes to compare to, and
				// it is the shape's, byte for byte, where they compare.
				shape = elem
			}
			keys |= e.keys
		} else {
			if i, ok = v.value(i, depth, elem, noShape); !ok {
				return i, false
			}
			keys = ^uint64(0)
		}
		if i = skipSpace(body, i); i >= len(body) {
			return i, false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case ']':
			v.nodes[this].keys = keys
			return i + 1, true
		default:
			return i, false
		}
	}
}

// noShape is the shape of an object that follows no other (see object).
const noShape = -1

// object validates the object at body[i] == '{', node this; depth counts
// it. Its keys are compared after unescaping, as scanJSON does: not at
// all while each key's keyBit is new to the object (the common case,
// distinct keys), else one by one while the object is small, and in a set
// once it is not, so that a huge object, or one of keys made to collide,
// cannot make the pass quadratic.
//
// shape is the last object before this one in the same array that has
// member nodes (its node), or noShape. MLflow's lists hold objects of one
// shape (log-batch's metrics, params and tags), and one client writes
// them alike: while the bytes between this object's members are the
// shape's, byte for byte (the comma, the key, the colon and the
// whitespace about them), a member needs no separator, key scan, hash or
// duplicate check of its own. The shape's keys were read and found
// distinct, so these are valid strings and distinct too.
//
// While its members are alike the shape's and their values hold no nodes
// (alikeLeaves), they get no nodes either: if the object ends there,
// having repeated every member of the shape, it is compact, its node
// alone recorded, with the shape's key bits. Otherwise the members read so
// far get their nodes (materialise), and the object is read on as before.
// A compact object is never a shape: the next object compares to the one
// this one repeated, which is the same where they compare.
func (v *validator) object(i, depth int, this, shape int32) (int, bool) {
	body := v.body
	var (
		bits  uint64              // the keyBit of each key (jsonNode.keys), unless alike
		count int                 // how many keys
		set   map[string]struct{} // the keys, once there are too many to compare
		// alike: every member so far is the shape's, and bits is not
		// kept; same is the shape's member the next may repeat, or the
		// shape's end when it has no more, and the bytes before it start
		// at from, in the shape.
		alike     = shape != noShape
		same, end int32
		from      int
	)
	i++
	if alike {
		var ok bool
		if i, same, from, count, ok = v.alikeLeaves(i, shape); !ok {
			return i, false
		}
		end = v.nodes[shape].next
		if j := skipSpace(body, i); same == end && j < len(body) && body[j] == '}' {
			// Compact: its members are values all the same.
			v.nodes[this].keys = v.nodes[shape].keys // they are the shape's
			if v.limit -= int32(count); v.n > v.limit {
				return j, false
			}
			return j + 1, true
		}
		// Not compact: the members so far get the nodes they would
		// have had, and the rest theirs as they come.
		if !v.materialise(this, count) {
			return i, false
		}
	}
	for {
		// i is just past the '{' or the last member's value. The next
		// member's key (a node's key fields, see jsonNode) and where its
		// value starts, declared before the goto that passes over their
		// reading for a member alike the shape's.
		var (
			keyStart, keyEnd, keyEsc int32
			start                    int
			next                     int
			escaped, ok              bool
			bit                      uint64
		)
		if alike && same < end {
			m := &v.nodes[same]
			n := int(m.start) - from
			var repeated bool
			if n <= 16 && i+16 <= len(body) {
				// The common case, a key of up to about a dozen bytes
				// and its separators: two words, compared without a call.
				repeated = samePrefix16(body[i:i+16], body[from:from+16], n)
			} else {
				repeated = repeats(body, i, from, n)
			}
			if repeated && m.keyEsc == 0 {
				keyStart = int32(i) + m.keyStart - int32(from)
				keyEnd = keyStart + m.keyEnd - m.keyStart
				from, same = int(m.end), m.next
				start = skipSpace(body, i+n)
				goto readValue
			}
		}
		if alike {
			if j := skipSpace(body, i); same == end && j < len(body) && body[j] == '}' {
				v.nodes[this].keys = v.nodes[shape].keys // they are the shape's
				return j + 1, true
			}
			// Another member, or fewer: from here on, as for any object.
			alike, bits = false, v.memberBits(this)
		}
		// The comma before a member but the first, or the object's end.
		if i = skipSpace(body, i); i >= len(body) {
			return i, false
		}
		if body[i] == '}' {
			v.nodes[this].keys = bits
			return i + 1, true
		}
		if count > 0 {
			if body[i] != ',' {
				return i, false
			}
			if i = skipSpace(body, i+1); i >= len(body) {
				return i, false
			}
		}
		// The key, read here rather than in a function of its own: one
		// call and five results fewer for every member.
		if body[i] != '"' {
			return i, false
		}
		if next, escaped, ok = scanString(body, i); !ok {
			return i, false
		}
		keyStart, keyEnd = int32(i+1), int32(next-1)
		if escaped {
			if keyEsc, ok = v.unescapeKey(body[i:next]); !ok {
				return i, false
			}
			bit = keyBit(v.d.escKeys[keyEsc-1])
		} else {
			bit = keyBit(body[keyStart:keyEnd])
		}
		if bits&bit != 0 || count >= scanSetAfter {
			if v.duplicate(this, &jsonNode{keyStart: keyStart, keyEnd: keyEnd, keyEsc: keyEsc}, count, &set) {
				return i, false
			}
		}
		bits |= bit
		if i = skipSpace(body, next); i >= len(body) || body[i] != ':' {
			return i, false
		}
		start = skipSpace(body, i+1)
	readValue:
		count++
		member, ok := v.node(start, keyStart, keyEnd, keyEsc)
		if !ok {
			return i, false
		}
		// A short string or a plain number here, anything else through
		// value: a call costs the loop a spill and a reload of all it
		// holds (Go has no callee-saved registers), and scalar's are few.
		if end := scalar(body, start); end > 0 {
			n := &v.nodes[member]
			n.end, n.next = int32(end), v.n
			i = end
		} else if i, ok = v.value(start, depth, member, noShape); !ok {
			return i, false
		}
	}
}

// alikeLeaves reads the members of an object, from body[i] just past its
// '{', that repeat those of its shape (see object), as long as each value
// is a string, a number, true, false or null: a value with no node within.
// It records no node; it returns where it stopped (past the last such
// value), the shape's member the next may repeat and where the bytes
// before it start in the shape (object's same and from), and how many
// members it read. It is false for a value that is not valid JSON.
func (v *validator) alikeLeaves(i int, shape int32) (int, int32, int, int, bool) {
	body, nodes := v.body, v.nodes
	same, end, from := shape+1, nodes[shape].next, int(nodes[shape].start)+1
	count := 0
	for same < end {
		m := &nodes[same]
		n := int(m.start) - from
		// The comparison of object's member loop, repeated here: as a
		// function of its own it would not be inlined, and its call
		// would cost this loop some 5%.
		var repeated bool
		if n <= 16 && i+16 <= len(body) {
			repeated = samePrefix16(body[i:i+16], body[from:from+16], n)
		} else {
			repeated = repeats(body, i, from, n)
		}
		if !repeated || m.keyEsc != 0 {
			break
		}
		start := skipSpace(body, i+n)
		valEnd := scalar(body, start)
		if valEnd == 0 {
			if start >= len(body) || body[start] == '{' || body[start] == '[' {
				break // a container: object reads it
			}
			var ok bool
			if valEnd, ok = leaf(body, start); !ok {
				return valEnd, 0, 0, 0, false
			}
		}
		i, from, same = valEnd, int(m.end), m.next
		count++
	}
	return i, same, from, count, true
}

// materialise records the nodes of the first count members of object this,
// which alikeLeaves read without, as object would have recorded them: the
// object turned out not to be compact.
func (v *validator) materialise(this int32, count int) bool {
	i := int(v.nodes[this].start) + 1
	for range count {
		keyStart, keyEnd, start, end, _ := compactMember(v.body, i)
		m, ok := v.node(start, int32(keyStart), int32(keyEnd), 0)
		if !ok {
			return false
		}
		v.nodes[m].end, v.nodes[m].next = int32(end), v.n
		i = end
	}
	return true
}

// compactMember reads the member of a validated object that follows
// body[i], just past the object's '{' or a member's value, when every
// member up to it has a key without an escape and a value that is not an
// object or an array, as in a compact object: where its key is, between
// its quotes, and where its value starts and ends. It is false at the
// object's '}'.
func compactMember(body []byte, i int) (keyStart, keyEnd, start, end int, ok bool) {
	i = skipSpace(body, i)
	switch body[i] {
	case '}':
		return 0, 0, 0, 0, false
	case ',':
		i = skipSpace(body, i+1)
	}
	keyStart = i + 1
	keyEnd = keyStart + bytes.IndexByte(body[keyStart:], '"')
	start = skipSpace(body, skipSpace(body, keyEnd+1)+1) // past the colon
	end, _ = leaf(body, start)
	return keyStart, keyEnd, start, end, true
}

// repeats reports whether the n bytes at body[i:] are those at
// body[from:], from < i: the member loop's comparison when samePrefix16's
// two words do not cover them.
func repeats(body []byte, i, from, n int) bool {
	return i+n <= len(body) && string(body[i:i+n]) == string(body[from:from+n])
}

// samePrefix16 reports whether a[:n] is b[:n], for a and b of 16 bytes
// and n from 1 to 16: two words from each, compared, the bytes past n
// shifted out. Inlined where a and b are sliced to a constant length, its
// loads need no bounds checks.
func samePrefix16(a, b []byte, n int) bool {
	lo := binary.LittleEndian.Uint64(a[:8]) ^ binary.LittleEndian.Uint64(b[:8])
	hi := binary.LittleEndian.Uint64(a[8:16]) ^ binary.LittleEndian.Uint64(b[8:16])
	if n <= 8 {
		return lo<<(64-8*n) == 0
	}
	return lo == 0 && hi<<(128-8*n) == 0
}

// memberBits returns the keyBit of each key of object this's members so far.
func (v *validator) memberBits(this int32) uint64 {
	var bits uint64
	for c := this + 1; c < v.n; c = v.nodes[c].next {
		if m := &v.nodes[c]; m.keyEsc > 0 {
			bits |= keyBit(v.d.escKeys[m.keyEsc-1])
		} else {
			bits |= keyBit(v.body[m.keyStart:m.keyEnd])
		}
	}
	return bits
}

// duplicate reports whether key is already a key of object this, whose
// count members so far are the nodes after it: one by one until *set holds
// them, which it does once there are scanSetAfter.
func (v *validator) duplicate(this int32, key *jsonNode, count int, set *map[string]struct{}) bool {
	d, nodes := v.d, v.nodes[:v.n]
	if *set == nil {
		for c := this + 1; c < int32(len(nodes)); c = nodes[c].next {
			if d.sameKey(&nodes[c], key) {
				return true
			}
		}
		if count < scanSetAfter {
			return false
		}
		*set = make(map[string]struct{}, 2*scanSetAfter)
		for c := this + 1; c < int32(len(nodes)); c = nodes[c].next {
			(*set)[d.key(&nodes[c])] = struct{}{}
		}
	}
	k := d.key(key)
	if _, dup := (*set)[k]; dup {
		return true
	}
	(*set)[k] = struct{}{}
	return false
}

// unescapeKey unescapes the key quoted in raw as encoding/json does and
// keeps it in escKeys, once; keyEsc is its place there (see jsonNode).
func (v *validator) unescapeKey(raw []byte) (keyEsc int32, ok bool) {
	var k string
	if json.Unmarshal(raw, &k) != nil {
		return 0, false
	}
	v.d.escKeys = append(v.d.escKeys, k)
	return int32(len(v.d.escKeys)), true
}

// keyBit is the bit of key k in an object's set of keys (jsonNode.keys):
// one of 64, from a multiplicative hash of k's length and three of its
// bytes. A collision costs only the exact comparison the bit would have
// saved; the multiplier is one of the random odd numbers under which the
// keys of MLflow's run-logging objects, in both spellings, fall on
// distinct bits (TestKeyBitsOfMLflowObjects), as they do on every
// log-metric and log-batch.
func keyBit[K []byte | string](k K) uint64 {
	n := len(k)
	h := uint64(n)
	if n > 0 {
		h |= uint64(k[0])<<8 | uint64(k[n/2])<<16 | uint64(k[n-1])<<24
	}
	return 1 << (h * 0x69630f7593d108c3 >> 58)
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

// plainASCII marks the bytes a JSON string holds as they are and that
// need no further look: ASCII, but not a control character, a quote or a
// backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string starting at b[i] == '"' as JSON allows
// it (no control characters, only JSON's escapes) and as UTF-8, and
// returns where it ends and whether it holds an escape. The UTF-8 check
// lives here because a byte outside a string that is not ASCII is a syntax
// error anyway: a body validate accepts is valid UTF-8 without a pass of
// its own.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	i++
	for {
		// To the next byte to look at: eight bytes at a time while eight
		// are left (most of a string is plain ASCII, and a word of it is
		// passed in a few instructions), then one by one.
		if i+8 <= len(b) {
			m := stringStops(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) / 8
		} else {
			for i < len(b) && plainASCII[b[i]] {
				i++
			}
			if i >= len(b) {
				return i, false, false
			}
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
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
			i++
		case c < 0x20: // a control character
			return i, false, false
		default: // the first byte of a multi-byte sequence, or an invalid one
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false, false
			}
			i += size
		}
	}
}

// scalar returns where the value at b[i] ends when it is a short plain
// string or a number without a sign or an exponent, the values most
// members hold; else 0, for value to read it.
func scalar(b []byte, i int) int {
	if i+10 > len(b) {
		return 0
	}
	c := b[i]
	if c == '"' {
		// The closing quote at most eight bytes on, and no byte before
		// it that scanString would look at.
		j := i + 1 + bits.TrailingZeros64(stringStops(binary.LittleEndian.Uint64(b[i+1:])))/8
		if b[j] == '"' {
			return j + 1
		}
		return 0
	}
	if c < '0' || c > '9' {
		return 0
	}
	// As scanNumber reads it: 0 or a run of digits, then a fraction.
	j := i + 1
	if c != '0' {
		j = digits(b, j)
	}
	if j < len(b) && b[j] == '.' {
		k := digits(b, j+1)
		if k == j+1 {
			return 0 // no digit after the point: scanNumber refuses it
		}
		j = k
	}
	if j < len(b) && b[j]|0x20 == 'e' {
		return 0
	}
	return j
}

// Lanes of a 64-bit word, for looking at eight bytes at once.
const (
	lanesLow  = 0x0101010101010101 // 1 in every byte
	lanesHigh = 0x8080808080808080 // the top bit of every byte
)

// stringStops returns w (eight bytes of a string, the first in the low
// byte) with the top bit set in the byte of each quote, backslash, control
// character and non-ASCII byte, the bytes scanString must look at. Bytes
// above the first such byte may be marked wrongly (a borrow runs upward),
// so only the lowest mark counts. These are the classic tests for a zero
// byte, (x-0x01…)&^x, and for a byte below n, (x-n…)&^x, where
// "&^ x" is already covered for bytes with the top bit set by "| w".
func stringStops(w uint64) uint64 {
	q := w ^ (lanesLow * '"')
	s := w ^ (lanesLow * '\\')
	return ((q-lanesLow)&^q | (s-lanesLow)&^s | (w - lanesLow*0x20) | w) & lanesHigh
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

// digits returns where the run of ASCII digits at b[i] ends, eight bytes
// at a time while eight are left: a timestamp is thirteen digits.
func digits(b []byte, i int) int {
	for i+8 <= len(b) {
		if m := nonDigits(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// nonDigits returns w with the top bit set in each byte that is not an
// ASCII digit (as stringStops, only the lowest mark counts): a byte below
// '0' borrows in w-'0', one above '9' (and below 0x80) carries into its
// top bit in w+0x46, and one from 0x80 up has it already.
func nonDigits(w uint64) uint64 {
	return ((w + lanesLow*(0x80-'9'-1)) | (w - lanesLow*'0') | w) & lanesHigh
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// skipSpace returns where the first byte at or after b[i] that is not
// JSON whitespace is. Every JSON token but whitespace is above ' ', so one
// compare passes the common case, and a shift tells the four whitespace
// bytes from the other control characters.
func skipSpace(b []byte, i int) int {
	const space uint64 = 1<<' ' | 1<<'\t' | 1<<'\n' | 1<<'\r'
	for i < len(b) && b[i] <= ' ' && space>>b[i]&1 != 0 {
		i++
	}
	return i
}

// jsonValue is one value of a body scanJSONObject accepted: node n of doc,
// or, for a member of a compact object, which has no node, the value at
// doc.body[at] (n is noNode). The zero jsonValue is an absent value. Its
// methods rely on the validation.
type jsonValue struct {
	doc *jsonDoc
	n   int32
	at  int32
}

// noNode is the n of a jsonValue without a node (see jsonValue).
const noNode = -1

// jsonObject is a jsonValue that is an object. The zero jsonObject is an
// empty one (an empty body).
type jsonObject jsonValue

// raw returns v's bytes, without surrounding whitespace.
func (v jsonValue) raw() []byte {
	switch {
	case v.doc == nil:
		return nil
	case v.n == noNode:
		end, _ := leaf(v.doc.body, int(v.at))
		return v.doc.body[v.at:end]
	}
	n := &v.doc.nodes[v.n]
	return v.doc.body[n.start:n.end]
}

// first is v's first byte, which says what kind of value it is; 0 when v
// is absent.
func (v jsonValue) first() byte {
	switch {
	case v.doc == nil:
		return 0
	case v.n == noNode:
		return v.doc.body[v.at]
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

// firstElem and nextElem walk v's elements (v.isArray(), which a value
// without a node never is; a compact object's members have no nodes to
// walk): for e, ok := v.firstElem(); ok; e, ok = v.nextElem(e).
func (v jsonValue) firstElem() (jsonValue, bool) {
	if v.n+1 < v.doc.nodes[v.n].next {
		return jsonValue{doc: v.doc, n: v.n + 1}, true
	}
	return jsonValue{}, false
}

// nextElem returns the element of v after e (see firstElem).
func (v jsonValue) nextElem(e jsonValue) (jsonValue, bool) {
	if c := v.doc.nodes[e.n].next; c < v.doc.nodes[v.n].next {
		return jsonValue{doc: v.doc, n: c}, true
	}
	return jsonValue{}, false
}

// str returns v's string as encoding/json decodes it, if v is a string.
func (v jsonValue) str() (string, bool) {
	if v.first() != '"' {
		return "", false
	}
	return unquote(v.raw()), true
}

// strIs reports whether v is a string that encoding/json decodes to s,
// without a copy of v unless it holds an escape: a tag's key is compared
// on every log-batch, and kept only when it is mlflow.user.
func (v jsonValue) strIs(s string) bool {
	if v.first() != '"' {
		return false
	}
	raw := v.raw()
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == s
	}
	return unquote(raw) == s
}

// unquote decodes the validated string v (valid UTF-8, only JSON's
// escapes): a copy of its bytes when it holds no escape, the short escapes
// (a GraphQL query's \n and \") decoded here, and a string with a \u
// escape as encoding/json decodes it (a lone surrogate becomes U+FFFD, as
// there). FuzzUnquote holds it to encoding/json.
func unquote(v []byte) string {
	inner := v[1 : len(v)-1]
	i := bytes.IndexByte(inner, '\\')
	if i < 0 {
		return string(inner)
	}
	var out strings.Builder // one allocation: its String does not copy
	out.Grow(len(inner))
	for ; i >= 0; i = bytes.IndexByte(inner, '\\') {
		out.Write(inner[:i])
		c := inner[i+1]
		switch c {
		case '"', '\\', '/':
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		default: // 'u'
			var s string
			_ = json.Unmarshal(v, &s)
			return s
		}
		out.WriteByte(c)
		inner = inner[i+2:]
	}
	out.Write(inner)
	return out.String()
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
	if o.doc == nil || o.doc.nodes[o.n].keys&keyBit(key) == 0 {
		return jsonValue{}, false
	}
	if o.compact() {
		return o.getCompact(key)
	}
	nodes := o.doc.nodes
	for c := o.n + 1; c < nodes[o.n].next; c = nodes[c].next {
		if o.doc.keyIs(&nodes[c], key) {
			return jsonValue{doc: o.doc, n: c}, true
		}
	}
	return jsonValue{}, false
}

// getCompact is get in a compact object, whose members are in its bytes
// only, their keys without escapes; out of get's way, which it would slow
// down inline.
func (o jsonObject) getCompact(key string) (jsonValue, bool) {
	body := o.doc.body
	for i := int(o.doc.nodes[o.n].start) + 1; ; {
		keyStart, keyEnd, start, end, ok := compactMember(body, i)
		if !ok {
			return jsonValue{}, false
		}
		if string(body[keyStart:keyEnd]) == key {
			return jsonValue{doc: o.doc, n: noNode, at: int32(start)}, true
		}
		i = end
	}
}

// compact reports whether o's members have no nodes: a compact object
// (see object), whose members a reader finds in its bytes with
// compactMember, or {}.
func (o jsonObject) compact() bool {
	return o.doc.nodes[o.n].next == o.n+1
}

// fieldKey is a field name made ready for lookups in both of its
// spellings, once for every object it is looked up in.
type fieldKey struct {
	snake string
	// camelLen is the length of camel(snake), which is snake without its
	// underscores: only a key of that length can be it. It is len(snake)
	// when snake has no underscore, and so no other spelling.
	camelLen int32
	bits     uint64 // the keyBit of each spelling
}

func newFieldKey(snake string) fieldKey {
	f := fieldKey{snake: snake, camelLen: int32(len(snake)), bits: keyBit(snake)}
	if strings.IndexByte(snake, '_') < 0 {
		return f
	}
	// camel(snake) in a buffer of the stack (a field name fits), to hash
	// it without building a string.
	var buf [64]byte
	c := buf[:0]
	for b, i, ok := camelNext(snake, 0); ok; b, i, ok = camelNext(snake, i) {
		c = append(c, b)
	}
	f.camelLen, f.bits = int32(len(c)), f.bits|keyBit(c)
	return f
}

// lacks reports whether o has no member f in either spelling, from its
// key bits alone (a false answer says nothing).
func (o jsonObject) lacks(f *fieldKey) bool {
	return jsonValue(o).lacks(f)
}

// lacks reports, from v's key bits alone (see jsonNode.keys), whether v is
// an object without member f, or an array of nothing but objects without
// it (a false answer says nothing).
func (v jsonValue) lacks(f *fieldKey) bool {
	return v.doc != nil && v.n != noNode && v.doc.nodes[v.n].keys&f.bits == 0
}

// lookup returns the member key in snake or camel case, as protobuf's JSON
// parser accepts both; has says whether either spelling is present, both
// says both are (a deny for the caller to phrase).
func (o jsonObject) lookup(key string) (val jsonValue, has, both bool) {
	f := newFieldKey(key)
	return o.lookupField(&f)
}

// lookupField is lookup for a prepared field name.
func (o jsonObject) lookupField(f *fieldKey) (val jsonValue, has, both bool) {
	if o.doc == nil || o.doc.nodes[o.n].keys&f.bits == 0 {
		return jsonValue{}, false, false
	}
	key, camelLen := f.snake, f.camelLen
	hasCamel := int(camelLen) != len(key)
	var sv, cv jsonValue
	d := o.doc
	nodes := d.nodes
	if o.compact() {
		sv, cv = o.spellingsCompact(f)
	}
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

// spellingsCompact returns the members of compact object o spelled
// f.snake and camel(f.snake), absent when not there: lookupField's search,
// out of its way, in o's bytes, where keys have no escapes.
func (o jsonObject) spellingsCompact(f *fieldKey) (sv, cv jsonValue) {
	key, camelLen := f.snake, int(f.camelLen)
	hasCamel := camelLen != len(key)
	d := o.doc
	for i := int(d.nodes[o.n].start) + 1; ; {
		keyStart, keyEnd, start, end, ok := compactMember(d.body, i)
		if !ok {
			return sv, cv
		}
		switch k := d.body[keyStart:keyEnd]; {
		case len(k) == len(key):
			if string(k) == key {
				sv = jsonValue{doc: d, n: noNode, at: int32(start)}
			}
		case hasCamel && len(k) == camelLen:
			if isCamelOf(k, key) {
				cv = jsonValue{doc: d, n: noNode, at: int32(start)}
			}
		}
		i = end
	}
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
