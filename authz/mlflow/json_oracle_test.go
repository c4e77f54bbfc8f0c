package mlflow

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
)

// The field scanner (scanJSONObject and the reads over jsonObject) replaced
// a reader that decoded the whole body into a map[string]any tree. That
// reader is kept here as the oracle: FuzzJSONScannerMatchesTree holds the
// scanner to it, refusal for refusal and value for value.

// treeParseJSONObject is the tree reader as it was: scanJSON for duplicates
// and limits, then one encoding/json Decode, the authority on syntax.
func treeParseJSONObject(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		return nil, errJSONEncoding
	}
	if err := scanJSON(body); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errJSONSyntax
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

// treePathValues is jsonPathValues over the tree, as it was.
func treePathValues(m map[string]any, path string, list, emptyUnset bool) ([]string, *authz.Decision) {
	var out []string
	var walk func(v any, rest string) *authz.Decision
	walk = func(v any, rest string) *authz.Decision {
		seg, tail, more := strings.Cut(rest, ".")
		key, isList := strings.CutSuffix(seg, "[]")
		obj, ok := v.(map[string]any)
		if !ok {
			return badParam("expected an object at " + key)
		}
		val, present, d := lookupMapKey(obj, key)
		if d != nil || !present || val == nil {
			return d
		}
		last := !more
		switch {
		case isList:
			arr, ok := val.([]any)
			if !ok {
				return badParam(key + " must be a list")
			}
			for _, e := range arr {
				if last {
					s, ok := e.(string)
					if !ok {
						return badParam(key + " must hold strings")
					}
					out = append(out, s)
					continue
				}
				if d := walk(e, tail); d != nil {
					return d
				}
			}
		case !last:
			return walk(val, tail)
		case list && !strings.Contains(path, "[]"):
			arr, ok := val.([]any)
			if !ok {
				return badParam(key + " must be a list of strings")
			}
			for _, e := range arr {
				s, ok := e.(string)
				if !ok {
					return badParam(key + " must be a list of strings")
				}
				out = append(out, s)
			}
		default:
			s, ok := val.(string)
			if !ok {
				return badParam(key + " must be a string")
			}
			out = append(out, s)
		}
		return nil
	}
	if d := walk(m, path); d != nil {
		return nil, d
	}
	return pathIDs(out, path, list, emptyUnset)
}

// treeClaims is reader.claims over the tree, as it was.
func treeClaims(body map[string]any) ([]string, *authz.Decision) {
	var claimed []string
	str := func(v any) string { s, _ := v.(string); return s }
	get := func(k string) (string, *authz.Decision) {
		v, _, d := lookupMapKey(body, k)
		return str(v), d
	}
	userID, d := get("user_id")
	if d != nil {
		return nil, d
	}
	if userID != "" {
		claimed = append(claimed, userID)
	}
	key, d := get("key")
	if d != nil {
		return nil, d
	}
	if key == mlflowUserTag {
		v, d := get("value")
		if d != nil {
			return nil, d
		}
		if v != "" {
			claimed = append(claimed, v)
		}
	}
	tags, _ := body["tags"].([]any)
	for _, t := range tags {
		m, ok := t.(map[string]any)
		if !ok {
			continue
		}
		if str(m["key"]) == mlflowUserTag && str(m["value"]) != "" {
			claimed = append(claimed, str(m["value"]))
		}
	}
	return claimed, nil
}

// rebuild turns a validated value into what encoding/json's Decode (with
// UseNumber) makes of it, through the scanner's own reads only.
func rebuild(t *testing.T, v jsonValue) any {
	switch {
	case v.isNull():
		return nil
	case v.isArray():
		l := []any{}
		for e, more := v.firstElem(); more; e, more = v.nextElem(e) {
			l = append(l, rebuild(t, e))
		}
		return l
	}
	if o, ok := v.object(); ok {
		return rebuildObject(t, o)
	}
	if s, ok := v.str(); ok {
		return s
	}
	switch string(v.raw()) {
	case "true":
		return true
	case "false":
		return false
	}
	return json.Number(v.raw())
}

// checkNodes checks the shape of a validated body's nodes: each value's
// bytes are one JSON value, and a container's nodes lie within it, in
// document order, each member's key before its value.
func checkNodes(t *testing.T, d *jsonDoc) {
	t.Helper()
	if len(d.nodes) == 0 || d.nodes[0].next != int32(len(d.nodes)) {
		t.Fatalf("%q: %d nodes, the top one ends at %d", d.body, len(d.nodes), d.nodes[0].next)
	}
	for i, n := range d.nodes {
		if n.start >= n.end || n.next <= int32(i) || n.next > int32(len(d.nodes)) || !json.Valid(d.body[n.start:n.end]) {
			t.Fatalf("%q: node %d %+v", d.body, i, n)
		}
		if c := d.body[n.start]; c != '{' && c != '[' && n.next != int32(i)+1 {
			t.Fatalf("%q: scalar node %d %+v has nodes within", d.body, i, n)
		}
		var keys uint64
		if o := (jsonObject{doc: d, n: int32(i)}); d.body[n.start] == '{' && o.compact() {
			// Its members are in its bytes: each a key without an escape
			// and a value without nodes, within the object.
			for _, m := range objectMembers(o) {
				raw := m.val.raw()
				if m.val.n != noNode || strings.ContainsRune(m.key, '\\') || raw[0] == '{' || raw[0] == '[' || !json.Valid(raw) ||
					m.val.at <= n.start || int(m.val.at)+len(raw) >= int(n.end) {
					t.Fatalf("%q: compact object %d %+v has member %q: %s at %d", d.body, i, n, m.key, raw, m.val.at)
				}
				keys |= keyBit(m.key)
			}
		}
		for c := int32(i) + 1; c < n.next; c = d.nodes[c].next {
			m := d.nodes[c]
			if m.start <= n.start || m.end >= n.end || (d.body[n.start] == '{') != (m.keyEnd > 0) || m.keyEnd > m.start {
				t.Fatalf("%q: node %d %+v inside node %d %+v", d.body, c, m, i, n)
			}
			switch {
			case m.keyEnd > 0:
				keys |= keyBit(d.key(&m))
			case d.body[m.start] == '{':
				keys |= m.keys // an array's object
			default:
				keys = ^uint64(0) // an array's other element
			}
		}
		if n.keys != keys {
			t.Fatalf("%q: node %d %+v has key bits %x, its members' keys %x", d.body, i, n, n.keys, keys)
		}
	}
}

func rebuildObject(t *testing.T, o jsonObject) map[string]any {
	m := map[string]any{}
	if o.doc == nil {
		return m
	}
	for _, mem := range objectMembers(o) {
		if _, dup := m[mem.key]; dup {
			t.Fatalf("duplicate key %q read from a validated body", mem.key)
		}
		m[mem.key] = rebuild(t, mem.val)
	}
	return m
}

// member is one member of an object, its key unescaped.
type member struct {
	key string
	val jsonValue
}

// objectMembers lists o's members, from their nodes or, in a compact
// object, from its bytes, as the readers find them.
func objectMembers(o jsonObject) []member {
	var ms []member
	d := o.doc
	if o.compact() {
		for i := int(d.nodes[o.n].start) + 1; ; {
			keyStart, keyEnd, start, end, ok := compactMember(d.body, i)
			if !ok {
				return ms
			}
			ms = append(ms, member{key: string(d.body[keyStart:keyEnd]), val: jsonValue{doc: d, n: noNode, at: int32(start)}})
			i = end
		}
	}
	for c := o.n + 1; c < d.nodes[o.n].next; c = d.nodes[c].next {
		ms = append(ms, member{key: d.key(&d.nodes[c]), val: jsonValue{doc: d, n: c}})
	}
	return ms
}

// snake is the snake-case name whose camel spelling k may be: an
// underscore and the lower case before each upper-case ASCII letter.
func snake(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if c := k[i]; 'A' <= c && c <= 'Z' {
			b.WriteByte('_')
			b.WriteByte(c + 'a' - 'A')
			continue
		}
		b.WriteByte(k[i])
	}
	return b.String()
}

// scannerPaths are the body paths the route table reads, and a few more
// shapes of path.
var scannerPaths = []struct {
	path             string
	list, emptyUnset bool
}{
	{path: "run_id"}, {path: "run_uuid"}, {path: "experiment_id"}, {path: "name"}, {path: "key"},
	{path: "experiment_ids", list: true},
	{path: "metrics[].model_id", list: true, emptyUnset: true},
	{path: "models[].model_id", list: true},
	{path: "trace.trace_info.trace_location.mlflow_experiment.experiment_id"},
	{path: "trace.trace_info.assessments[].trace_id", list: true, emptyUnset: true},
	{path: "locations[].mlflow_experiment.experiment_id", list: true},
	{path: "a.b[].c", list: true}, {path: "a[].b[]", list: true}, {path: "a.b"},
}

// FuzzJSONScannerMatchesTree: the scanner refuses exactly the bodies the
// tree reader refused, with the same error; what it accepts reads, value
// for value, as encoding/json decodes it; and the parameter reads over it
// (every path shape the route table uses, the claimed users) answer as the
// same reads over the tree did, denies included.
func FuzzJSONScannerMatchesTree(f *testing.F) {
	for _, s := range []string{
		`{}`, ` {} `, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a\"b":1,"a\"b":2}`, `{"a":{"b":1},"b":1}`,
		`{"a":[{"b":1},{"b":2}]}`, `{"a":"}","b":"{"}`, `{"a":1}x`, `{"a" 1}`, `[]`, ``, `{"a":tru}`, `{"a":tru,"a":1}`,
		`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":.5}`, `{"a":[1,]}`, `{"a":1,}`, `{,}`, `{"a":"\x"}`, "{\"a\":\"\t\"}",
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k3":0}`,
		strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
		strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
		`{"a":"\ud800"}`, `{"\ud800":1,"\udc00":2}`, `{"a":1e999,"b":-0.5E+3}`, `{"a":[1,2,[3,[4]]],"b":null,"c":false}`,
		`{"run_id":"r1","metrics":[{"key":"loss","value":0.25,"timestamp":1,"step":3,"model_id":"m-1"}],"params":[],"tags":[{"key":"mlflow.user","value":"eve"}]}`,
		`{"key":"mlflow\u002euser","value":"v","tags":[{"key":"mlflow\u002Euser","value":"w"},{"key":"mlflow.user","value":""}]}`,
		`{"m":[{"a":1,"b":2},{"a":1,"b":2},{"a":1},{"a":1,"b":2,"c":3},{"b":1,"a":2},{"a\u0062":1},{"ab":1,"ab":2}]}`,
		`{"m":[{"abcdefghijklmnopq":1,"r":{"s":1}},{"abcdefghijklmnopq":1,"r":{"s":1,"s":2}}]}`,
		`{"runId":"x","run_uuid":"y"}`, `{"run\u005fid":"x"}`, `{"runId":"x","run_id":"x"}`, `{"user_id":"u","key":"mlflow.user","value":"v"}`,
		`{"experiment_ids":["1","2"]}`, `{"experimentIds":["1",""]}`, `{"experiment_ids":"1"}`, `{"a":{"b":[{"c":"1"},{"c":null},{"C":1}]}}`,
		`{"trace":{"traceInfo":{"trace_location":{"mlflowExperiment":{"experiment_id":"1"}}}}}`,
		`{"locations":[{"mlflow_experiment":{"experiment_id":"1"}},{"mlflowExperiment":{"experimentId":"2"}}]}`,
		logBatchBody(3), // objects alike, as log-batch sends them
		`{"metrics":[{"key":"a"},1]}`, `{"metrics":[{"key":"a"},{"modelId":"m"}]}`, `{"a":{"b":[{"x":1},"s"]}}`, `{"metrics":[]}`,
	} {
		f.Add([]byte(s))
	}
	for _, s := range compactBodies {
		f.Add([]byte(s.body))
	}
	f.Fuzz(checkScannerMatchesTree)
}

// checkScannerMatchesTree is FuzzJSONScannerMatchesTree's check of one
// body.
func checkScannerMatchesTree(t *testing.T, body []byte) {
	obj, err := scanJSONObject(body)
	want, wantErr := treeParseJSONObject(body)
	if err != wantErr {
		t.Fatalf("%q: scanner %v, tree reader %v", body, err, wantErr)
	}
	if err != nil {
		return
	}
	defer obj.doc.release()
	checkNodes(t, obj.doc)
	if got := rebuildObject(t, obj); !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: scanner read %#v, encoding/json %#v", body, got, want)
	}
	if got, err := obj.tree(); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: tree %#v (%v), encoding/json %#v", body, got, err, want)
	}
	checkLookups(t, body, jsonValue(obj), want)
	for _, p := range scannerPaths {
		wantVals, wd := treePathValues(want, p.path, p.list, p.emptyUnset)
		// The path split here, and split before as the route table
		// does, into storage of the caller's that already holds a value.
		got, d := jsonPathValues(obj, p.path, nil, p.list, p.emptyUnset, nil)
		var buf [2]string
		got2, d2 := jsonPathValues(obj, p.path, splitBodyPath(p.path, nil), p.list, p.emptyUnset, append(buf[:0], "before"))
		if !reflect.DeepEqual(d, wd) || !slices.Equal(got, wantVals) || !reflect.DeepEqual(d2, wd) || !slices.Equal(got2, wantVals) {
			t.Fatalf("%q: %s read %q %+v (and %q %+v), tree %q %+v", body, p.path, got, d, got2, d2, wantVals, wd)
		}
	}
	rd := reader{req: &authz.Request{Body: body}}
	defer rd.release()
	var op Operation
	d := rd.claims(&op)
	wantClaims, wd := treeClaims(want)
	if !reflect.DeepEqual(d, wd) || !slices.Equal(op.ClaimedUsers, wantClaims) {
		t.Fatalf("%q: claims %q %+v, tree %q %+v", body, op.ClaimedUsers, d, wantClaims, wd)
	}
}

// checkLookups checks, in every object within v (which encoding/json
// decodes to want), every key's get, and its lookup as it is and as the
// snake-case name whose camel spelling it may be, against the tree, and
// that an object's key bits lack none of its keys.
func checkLookups(t *testing.T, body []byte, v jsonValue, want any) {
	t.Helper()
	switch w := want.(type) {
	case []any:
		i := 0
		for e, more := v.firstElem(); more; e, more = v.nextElem(e) {
			checkLookups(t, body, e, w[i])
			i++
		}
	case map[string]any:
		obj, ok := v.object()
		if !ok {
			t.Fatalf("%q: %s is not an object", body, v.raw())
		}
		for k, wv := range w {
			got, ok := obj.get(k)
			if !ok || !reflect.DeepEqual(rebuild(t, got), wv) {
				t.Fatalf("%q: get(%q) in %s = %s, %v", body, k, v.raw(), got.raw(), ok)
			}
			for _, k := range []string{k, snake(k)} {
				f := newFieldKey(k)
				got, has, both := obj.lookupField(&f)
				wv, wpresent, wd := lookupMapKey(w, k)
				if both != (wd != nil) || !both && (has != wpresent || has && !reflect.DeepEqual(rebuild(t, got), wv)) {
					t.Fatalf("%q: lookup(%q) in %s = %s %v %v, tree %#v %v %v", body, k, v.raw(), got.raw(), has, both, wv, wpresent, wd)
				}
				if wpresent && obj.lacks(&f) {
					t.Fatalf("%q: %s lacks %q by its key bits", body, v.raw(), k)
				}
			}
			checkLookups(t, body, got, wv)
		}
	}
}

// BenchmarkJSONBody reads what log-batch's check reads (run_id or run_uuid,
// metrics[].model_id, the claimed users) from a 20-metric body, with the
// field scanner and with the tree reader it replaced, side by side.
func BenchmarkJSONBody(b *testing.B) {
	body := []byte(logBatchBody(20))
	paths := []struct {
		path             string
		list, emptyUnset bool
	}{{path: "run_id"}, {path: "run_uuid"}, {path: "metrics[].model_id", list: true, emptyUnset: true}}
	b.Run("scanner", func(b *testing.B) {
		authztest.LoopCPU(b, func() {
			rd := reader{req: &authz.Request{Body: body}}
			obj, d := rd.loadBody(false)
			if d != nil {
				b.Fatal(d)
			}
			for _, p := range paths {
				if _, d := jsonPathValues(obj, p.path, nil, p.list, p.emptyUnset, nil); d != nil {
					b.Fatal(d)
				}
			}
			var op Operation
			if d := rd.claims(&op); d != nil {
				b.Fatal(d)
			}
			rd.release()
		})
	})
	b.Run("tree", func(b *testing.B) {
		authztest.LoopCPU(b, func() {
			m, err := treeParseJSONObject(body)
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range paths {
				if _, d := treePathValues(m, p.path, p.list, p.emptyUnset); d != nil {
					b.Fatal(d)
				}
			}
			if _, d := treeClaims(m); d != nil {
				b.Fatal(d)
			}
		})
	})
}

// BenchmarkJSONValidate is the validating pass alone over log-batch's
// 20-metric body: what every JSON body costs before a field is read.
func BenchmarkJSONValidate(b *testing.B) {
	body := []byte(logBatchBody(20))
	authztest.LoopCPU(b, func() {
		obj, err := scanJSONObject(body)
		if err != nil {
			b.Fatal(err)
		}
		obj.doc.release()
	})
}
