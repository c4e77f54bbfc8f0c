package mlflow

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// compactBodies are bodies with arrays of objects alike their shape, and
// which of the array's elements the validating pass records compact
// ("c": no member nodes), as an object with member nodes ("o"), or as
// another value ("-"). FuzzJSONScannerMatchesTree starts from them too.
var compactBodies = []struct {
	name, body string
	list       string // the top-level key of the array; "m" when empty
	kinds      string
	err        error
}{
	{name: "log-batch", body: logBatchBody(4), list: "metrics", kinds: "occc"},
	{name: "later metrics have a model_id", list: "metrics", kinds: "occ",
		body: `{"metrics":[{"key":"a","model_id":"m-1"},{"key":"b","model_id":"m-2"},{"key":"c","model_id":"m-3"}]}`},
	{name: "later metrics have a modelId", list: "metrics", kinds: "occ",
		body: `{"metrics":[{"key":"a","modelId":"m-1"},{"key":"b","modelId":"m-2"},{"key":"c","modelId":"m-3"}]}`},
	{name: "a compact metric with a model_id in both spellings", list: "metrics", kinds: "oc",
		body: `{"metrics":[{"model_id":"a","modelId":"a"},{"model_id":"b","modelId":"c"}]}`},
	{name: "only the last metric has a model_id", list: "metrics", kinds: "oco",
		body: `{"metrics":[{"key":"a","value":1},{"key":"b","value":2},{"key":"c","value":3,"model_id":"m"}]}`},
	{name: "a metric without the shape's model_id", list: "metrics", kinds: "oco",
		body: `{"metrics":[{"key":"a","model_id":"m-1"},{"key":"b","model_id":"m-2"},{"key":"c"}]}`},
	{name: "every key in both spellings", kinds: "occ",
		body: `{"m":[{"run_id":"r","dataset_name":"d","datasetDigest":"x","step":1},{"run_id":"s","dataset_name":"e","datasetDigest":"y","step":2},{"run_id":"t","dataset_name":"f","datasetDigest":"z","step":3}]}`},
	{name: "long, escaped and literal values", kinds: "occccc",
		body: `{"m":[{"k":"short","v":1},{"k":"a string longer than eight bytes","v":-1.5e3},{"k":"esc\"aped\u00e9\n","v":true},{"k":"","v":null},{"k":"x","v":false},{"k":"日本","v":"\ud800"}]}`},
	{name: "nested values", kinds: "oooc",
		body: `{"m":[{"k":"a","v":{"x":1}},{"k":"b","v":{"x":2}},{"k":"c","v":[1]},{"k":"d","v":3}]}`},
	{name: "a container first", kinds: "oo", body: `{"m":[{"v":{"x":1},"k":"a"},{"v":[],"k":"b"}]}`},
	{name: "a container after values", kinds: "ooc",
		body: `{"m":[{"a":1,"b":"x","c":[3]},{"a":4,"b":"y","c":{"d":6}},{"a":7,"b":"z","c":9}]}`},
	{name: "mixed", kinds: "ocoo-oc-c",
		body: `{"m":[{"a":1,"b":2},{"a":3,"b":4},{"b":5,"a":6},{"a":7,"b":8},1,{},{"a":9,"b":0},"s",{"a":1,"b":2}],"n":{"a":1,"b":2}}`},
	{name: "whitespace that differs", kinds: "ooco",
		body: `{"m":[ {"a": 1,"b":2} , {"a":   1 ,"b":2 }, {"a":   1 ,"b":2}, {"a": 1,"b":2}]}`},
	{name: "whitespace that differs after the value", kinds: "oco", body: "{\"m\":[{\"a\":1 ,\"b\":2},{\"a\":1 ,\"b\":2\n},{\"a\":1\t,\"b\":2}]}"},
	{name: "escaped keys", kinds: "oo", body: `{"m":[{"a\u0062":1},{"a\u0062":2}]}`},
	{name: "fewer members", kinds: "oco", body: `{"m":[{"a":1,"b":2},{"a":1,"b":2},{"a":1}]}`},
	{name: "tags", list: "tags", kinds: "occ",
		body: `{"tags":[{"key":"a","value":"b"},{"key":"mlflow.user","value":"eve"},{"key":"mlflow\u002euser","value":"bob"}]}`},
	{name: "arrays in arrays", list: "m", kinds: "--",
		body: `{"m":[[{"a":1},{"a":2}],[{"a":3},{"a":4,"b":[{"a":1},{"a":2}]}]]}`},
	{name: "a duplicate after compact objects", err: errJSONDuplicate,
		body: `{"m":[{"a":1,"b":2},{"a":3,"b":4},{"a":5,"b":6,"b":7}]}`},
	{name: "a duplicate in an object alike at first", err: errJSONDuplicate, body: `{"m":[{"a":1,"b":2},{"a":1,"a":2}]}`},
	{name: "a number refused in an alike object", err: errJSONSyntax, body: `{"m":[{"a":1,"b":2},{"a":01,"b":2}]}`},
	{name: "a fraction refused in an alike object", err: errJSONSyntax, body: `{"m":[{"a":1,"b":2},{"a":1.,"b":2}]}`},
	{name: "an escape refused in an alike object", err: errJSONSyntax, body: `{"m":[{"a":"x","b":2},{"a":"\x","b":2}]}`},
	{name: "a literal refused in an alike object", err: errJSONSyntax, body: `{"m":[{"a":true},{"a":tru}]}`},
	{name: "an alike object cut short", err: errJSONSyntax, body: `{"m":[{"a":1,"b":2},{"a":1,"b":2`},
	{name: "an alike object cut after a key", err: errJSONSyntax, body: `{"m":[{"a":1,"b":2},{"a":`},
	{name: "invalid UTF-8 in an alike object", err: errJSONEncoding, body: "{\"m\":[{\"a\":\"x\"},{\"a\":\"\xff\"}]}"},
}

// TestJSONCompactObjects: objects alike their shape whose values hold no
// nodes are recorded compact, the others with member nodes, and every
// read of them (members, every key's lookup in both spellings, paths,
// claims, the tree) is encoding/json's, as FuzzJSONScannerMatchesTree
// checks it.
func TestJSONCompactObjects(t *testing.T) {
	for _, tt := range compactBodies {
		t.Run(tt.name, func(t *testing.T) {
			checkScannerMatchesTree(t, []byte(tt.body))
			obj, err := scanJSONObject([]byte(tt.body))
			require.Equal(t, tt.err, err)
			if err != nil {
				return
			}
			defer obj.doc.release()
			list := tt.list
			if list == "" {
				list = "m"
			}
			arr, ok := obj.get(list)
			require.True(t, ok)
			var kinds strings.Builder
			for e, more := arr.firstElem(); more; e, more = arr.nextElem(e) {
				switch o, ok := e.object(); {
				case !ok:
					kinds.WriteByte('-')
				case o.compact() && len(objectMembers(o)) > 0:
					kinds.WriteByte('c')
				default:
					kinds.WriteByte('o')
				}
			}
			assert.Equal(t, tt.kinds, kinds.String())
		})
	}
}

// TestJSONCompactModelIDs: a model id in a compact metric is read, in
// either spelling, and both spellings in one are refused.
func TestJSONCompactModelIDs(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   []string
		reason authz.Reason
	}{
		{name: "snake", body: compactBodies[1].body, want: []string{"m-1", "m-2", "m-3"}},
		{name: "camel", body: compactBodies[2].body, want: []string{"m-1", "m-2", "m-3"}},
		{name: "both spellings", body: compactBodies[3].body, reason: ReasonDuplicateParameter},
		{name: "only the last", body: compactBodies[4].body, want: []string{"m"}},
		{name: "twenty metrics, then one with a model id", want: []string{"m-9"},
			body: strings.Replace(logBatchBody(20), `"step": 19}`, `"step": 19, "model_id": "m-9"}`, 1)},
		{name: "twenty metrics, each with a model id", want: []string{"m-0", "m-1", "m-2"},
			body: `{"metrics":[{"key":"a","value":1,"model_id":"m-0"},{"key":"a","value":2,"model_id":"m-1"},{"key":"a","value":3,"model_id":"m-2"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := scanJSONObject([]byte(tt.body))
			require.NoError(t, err)
			defer obj.doc.release()
			got, d := jsonPathValues(obj, "metrics[].model_id", nil, true, true, nil)
			if tt.reason != "" {
				require.NotNil(t, d)
				assert.False(t, d.Allowed)
				assert.Equal(t, http.StatusBadRequest, d.Status)
				assert.Equal(t, tt.reason, d.Reason)
				return
			}
			require.Nil(t, d)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestJSONCompactTokenLimit: the members of compact objects count toward
// maxJSONTokens as the values they are.
func TestJSONCompactTokenLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 4 MB body")
	}
	// The top object, the array, and objects of one member: two values
	// each, maxJSONTokens in all.
	var b strings.Builder
	b.WriteString(`{"m":[`)
	for i := range (maxJSONTokens - 2) / 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"a":1}`)
	}
	b.WriteString(`]`)
	atLimit := b.String() + `}`
	obj, err := scanJSONObject([]byte(atLimit))
	require.NoError(t, err)
	arr, _ := obj.get("m")
	e, _ := arr.firstElem()
	e, _ = arr.nextElem(e)
	o, _ := e.object()
	assert.True(t, o.compact(), "the second object is compact")
	obj.doc.release()
	_, err = scanJSONObject([]byte(b.String() + `,"x":1}`))
	assert.Equal(t, errJSONTooLarge, err)
}
