package mlflow

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// node is a jsonNode as a test reads it: the value's bytes, its key
// unescaped, and how many nodes its subtree holds.
type node struct {
	val, key string
	size     int32
}

func TestJSONNodes(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		nodes []node
	}{
		{name: "empty object", body: ` {} `, nodes: []node{{`{}`, "", 1}}},
		{name: "members", body: `{"a": 1, "b" :"x"}`, nodes: []node{{`{"a": 1, "b" :"x"}`, "", 3}, {`1`, "a", 1}, {`"x"`, "b", 1}}},
		{name: "nested", body: `{"m":[{"k":true},[],{}],"n":null}`, nodes: []node{
			{`{"m":[{"k":true},[],{}],"n":null}`, "", 7},
			{`[{"k":true},[],{}]`, "m", 5},
			{`{"k":true}`, "", 2},
			{`true`, "k", 1},
			{`[]`, "", 1},
			{`{}`, "", 1},
			{`null`, "n", 1},
		}},
		{name: "escaped key", body: `{"a\u005fb":-1.5e3,"c\"":"\n"}`, nodes: []node{{`{"a\u005fb":-1.5e3,"c\"":"\n"}`, "", 3}, {`-1.5e3`, "a_b", 1}, {`"\n"`, `c"`, 1}}},
		{name: "array element keys stay empty", body: `{"a":[1,{"b":2}]}`, nodes: []node{{`{"a":[1,{"b":2}]}`, "", 5}, {`[1,{"b":2}]`, "a", 4}, {`1`, "", 1}, {`{"b":2}`, "", 2}, {`2`, "b", 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := scanJSONObject([]byte(tt.body))
			require.NoError(t, err)
			defer obj.doc.release()
			var got []node
			for i, n := range obj.doc.nodes {
				k := ""
				if n.keyEnd > 0 {
					k = obj.doc.key(&obj.doc.nodes[i])
				}
				got = append(got, node{val: tt.body[n.start:n.end], key: k, size: n.next - int32(i)})
			}
			assert.Equal(t, tt.nodes, got)
		})
	}
}

// TestJSONDuplicateKeys: the validating pass compares member names one by
// one in a small object and in a set past scanSetAfter keys, unescaped in
// both, at every depth, and in an array's objects that repeat the keys of
// the object before.
func TestJSONDuplicateKeys(t *testing.T) {
	many := func(extra string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range scanSetAfter + 4 {
			b.WriteString(`"k` + string(rune('a'+i)) + `":0,`)
		}
		b.WriteString(extra + "}")
		return b.String()
	}
	tests := []struct {
		name string
		body string
		want error
	}{
		{name: "distinct", body: `{"a":1,"b":2,"ab":3}`},
		{name: "plain", body: `{"a":1,"b":2,"a":3}`, want: errJSONDuplicate},
		{name: "same length, different", body: `{"ab":1,"ba":2}`},
		{name: "escaped later", body: `{"ab":1,"\u0061b":2}`, want: errJSONDuplicate},
		{name: "escaped first", body: `{"\u0061b":1,"ab":2}`, want: errJSONDuplicate},
		{name: "both escaped", body: `{"\u0061":1,"\u0061":2}`, want: errJSONDuplicate},
		{name: "escaped, different", body: `{"\u0061":1,"\u0062":2,"a\"":3,"a\\":4}`},
		{name: "lone surrogates read as U+FFFD", body: `{"\ud800":1,"\udc00":2}`, want: errJSONDuplicate},
		{name: "nested", body: `{"a":{"x":1,"x":2}}`, want: errJSONDuplicate},
		{name: "in an array's object", body: `{"m":[{"k":1},{"k":1,"v":2,"k":3}]}`, want: errJSONDuplicate},
		{name: "same key in sibling objects", body: `{"m":[{"k":1},{"k":1}],"k":{"k":1}}`},
		{name: "like the array's object before, then a duplicate", body: `{"m":[{"a":1,"b":2},{"a":1,"a":2}]}`, want: errJSONDuplicate},
		{name: "like the array's object before, then more and a duplicate", body: `{"m":[{"a":1,"b":2},{"a":1,"b":2,"a":3}]}`, want: errJSONDuplicate},
		{name: "the array's object before's keys, another order", body: `{"m":[{"a":1,"b":2},{"b":1,"a":2},{"a":1,"b":2,"c":3},{"a":1}]}`},
		{name: "like an escaped key before, then a duplicate", body: `{"m":[{"a\u0062":1},{"ab":1,"ab":2}]}`, want: errJSONDuplicate},
		{name: "like a key before, escaped, then a duplicate", body: `{"m":[{"ab":1},{"a\u0062":1,"ab":2}]}`, want: errJSONDuplicate},
		{name: "a prefix of the key before", body: `{"m":[{"ab":1,"c":2},{"a":1,"ab":2,"c":3}]}`},
		{name: "like the object two elements before", body: `{"m":[{"a":1},2,"x",{"a":1,"a":2}]}`, want: errJSONDuplicate},
		{name: "long keys like the object before", body: `{"m":[{"abcdefghijklmnopq":1,"abcdefghijklmnopr":2},{"abcdefghijklmnopq":1,"abcdefghijklmnopr":2},{"abcdefghijklmnopq":1,"abcdefghijklmnopq":2}]}`, want: errJSONDuplicate},
		{name: "long keys, one byte apart", body: `{"m":[{"abcdefghijklmnopq":1},{"abcdefghijklmnopr":1,"abcdefghijklmnopq":2}]}`},
		{name: "nested objects have no shape", body: `{"m":[{"a":{"x":1}},{"a":{"x":1,"x":2}}]}`, want: errJSONDuplicate},
		{name: "large object", body: many(`"z":1`)},
		{name: "large object, duplicate", body: many(`"kc":1`), want: errJSONDuplicate},
		{name: "large object, escaped duplicate", body: many(`"k\u0063":1`), want: errJSONDuplicate},
		{name: "large object nested, duplicate", body: `{"o":` + many(`"kq":1`) + `}`, want: errJSONDuplicate},
		{name: "large objects alike, then a duplicate", body: `{"m":[` + many(`"z":1`) + `,` + many(`"z":1,"kb":2`) + `]}`, want: errJSONDuplicate},
		{name: "large objects alike", body: `{"m":[` + many(`"z":1`) + `,` + many(`"z":1`) + `,` + many(`"y":1`) + `]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := scanJSONObject([]byte(tt.body))
			assert.Equal(t, tt.want, err)
			_, wantErr := treeParseJSONObject([]byte(tt.body))
			assert.Equal(t, wantErr, err, "the tree reader's refusal")
			if err == nil {
				checkNodes(t, obj.doc) // each object's key bits too
			}
			obj.doc.release()
		})
	}
}

// TestJSONDocReuse: a document given back to the pool and taken again reads
// its new body only, even after a larger body grew its nodes.
func TestJSONDocReuse(t *testing.T) {
	for _, body := range []string{logBatchBody(200), `{"run_id":"r1"}`, `{"a\u0062":"x"}`, `{"run_id":"r2","metrics":[]}`} {
		obj, err := scanJSONObject([]byte(body))
		require.NoError(t, err)
		want, err := treeParseJSONObject([]byte(body))
		require.NoError(t, err)
		assert.Equal(t, want, rebuildObject(t, obj))
		assert.Len(t, obj.doc.escKeys, strings.Count(body, `\u`))
		obj.doc.release()
	}
}

// TestKeyBitsOfMLflowObjects: the keys that meet in MLflow's run-logging
// objects, and the keys looked up in them, in both spellings, fall on
// distinct bits, so that neither the duplicate check nor a lookup of a
// key the object lacks compares a key. Only speed depends on it.
func TestKeyBitsOfMLflowObjects(t *testing.T) {
	objects := map[string][]string{
		"a metric (log-batch metrics[], log-metric)": {"key", "value", "timestamp", "step", "model_id", "modelId", "dataset_name", "datasetName", "dataset_digest", "datasetDigest", "run_id", "runId", "run_uuid", "runUuid", "user_id", "userId", "tags"},
		"log-batch":   {"run_id", "runId", "run_uuid", "runUuid", "metrics", "params", "tags", "user_id", "userId", "key", "value"},
		"runs/create": {"experiment_id", "experimentId", "user_id", "userId", "start_time", "startTime", "tags", "run_name", "runName", "key", "value"},
	}
	for name, keys := range objects {
		seen := map[uint64]string{}
		for _, k := range keys {
			if other, ok := seen[keyBit(k)]; ok {
				t.Errorf("%s: %q and %q have the same key bit", name, other, k)
			}
			seen[keyBit(k)] = k
		}
	}
}
