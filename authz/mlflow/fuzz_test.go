package mlflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// FuzzJSONParams: the duplicate-key parser never panics, and whatever it
// accepts encoding/json reads the same way; the id reader then returns only
// what is really in the body.
func FuzzJSONParams(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"run_id":"r1"}`, `{"run_id":"a","run_id":"b"}`, `{"runId":"x","run_uuid":"y"}`,
		`{"a":[{"b":{"c":[1,2,{"d":null}]}}]}`, `{"experiment_ids":["1","2"]}`, `[1]`, `"s"`, `{"a":1}x`,
		`{"trace":{"traceInfo":{"trace_location":{"mlflowExperiment":{"experiment_id":"1"}}}}}`,
		`{"locations":[{"mlflow_experiment":{"experiment_id":"1"}},{"mlflowExperiment":{"experimentId":"2"}}]}`,
		"{\"a\":\"\\ud800\"}", `{"a":1e999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := scanJSONObject(body)
		if err != nil {
			return
		}
		defer obj.doc.release()
		m, err := obj.tree()
		if err != nil {
			t.Fatalf("%q: validated, then not decoded: %v", body, err)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("we accepted %q, encoding/json did not: %v", body, err)
		}
		if !reflect.DeepEqual(any(m), want) {
			t.Fatalf("we read %#v, encoding/json %#v", m, want)
		}
		for _, p := range []param{runP, expsP, modelP, pr(idExperiment, srcParam, "trace.trace_info.trace_location.mlflow_experiment.experiment_id"), prList(idExperiment, srcParam, "locations[].mlflow_experiment.experiment_id")} {
			vals, d := bodyValues(obj, &p, nil)
			if d != nil {
				if d.Allowed || d.Status != http.StatusBadRequest || d.Reason == "" {
					t.Fatalf("bad deny %+v", d)
				}
				continue
			}
			if !p.list && len(vals) > 1 {
				t.Fatalf("single-valued %s yielded %v", p.name, vals)
			}
			for _, v := range vals {
				if !validID(v) {
					t.Fatalf("invalid id %q accepted", v)
				}
			}
			if p.name == "run_id" && len(vals) == 1 {
				found := false
				for _, k := range []string{"run_id", "runId", "run_uuid", "runUuid"} {
					if s, _ := m[k].(string); s == vals[0] {
						found = true
					}
				}
				if !found {
					t.Fatalf("run id %q is not in the body %s", vals[0], body)
				}
			}
		}
	})
}

// logBatchBody is log-batch as the Python client sends it on each training
// step: n metrics and a tag (the benchmark corpus's shape).
func logBatchBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"run_id": "0123456789abcdef0123456789abcdef", "metrics": [`)
	for s := range n {
		if s > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"key": "loss", "value": 0.%06d, "timestamp": %d, "step": %d}`, 123457*(s+1)%1000000, 1764400000000+s, s)
	}
	b.WriteString(`], "params": [], "tags": [{"key": "mlflow.source.name", "value": "train.py"}]}`)
	return b.String()
}

var gqlKnown = map[string]bool{"__typename": true, "__schema": true, "__type": true}

func init() {
	for k := range gqlQueries {
		gqlKnown[k] = true
	}
	for k := range gqlMutations {
		gqlKnown[k] = true
	}
}

// topFields lists the top-level field names of every operation, through
// fragments, independently of the classifier.
func topFields(doc *ast.QueryDocument) []string {
	var out []string
	var walk func(ss ast.SelectionSet, depth int)
	walk = func(ss ast.SelectionSet, depth int) {
		if depth > 20 {
			return
		}
		for _, s := range ss {
			switch s := s.(type) {
			case *ast.Field:
				out = append(out, s.Name)
			case *ast.InlineFragment:
				walk(s.SelectionSet, depth+1)
			case *ast.FragmentSpread:
				if f := doc.Fragments.ForName(s.Name); f != nil {
					walk(f.SelectionSet, depth+1)
				}
			}
		}
	}
	for _, o := range doc.Operations {
		walk(o.SelectionSet, 0)
	}
	return out
}

// FuzzGraphQL: never panics; an accepted document only touches known
// top-level fields, and all it needs is READ from the GraphQL arguments.
// cls is shared, so documents come from its cache as the fuzzer repeats
// them with other variables; each answer must be a new Classifier's.
func FuzzGraphQL(f *testing.F) {
	cls := NewClassifier("", StaticPrefixAPI)
	f.Add(`{ mlflowGetRun(input: {runId: "r1"}) { run { info { runId } } } }`, ``)
	f.Add(`query($i: MlflowGetRunInput) { a: mlflowGetRun(input: $i) { run { info { runId } } } }`, `{"i":{"runId":"r1"}}`)
	f.Add(`query { ...F } fragment F on Query { mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } }`, ``)
	f.Add(`mutation($e: [String]) { mlflowSearchRuns(input: {experimentIds: $e}) { runs { info { runId } } } }`, `{"e":["1"]}`)
	f.Add(`{ __schema { types { name } } }`, `{}`)
	f.Add(`subscription { x }`, ``)
	f.Fuzz(func(t *testing.T, query, vars string) {
		body := map[string]any{"query": query}
		if vars != "" {
			var v any
			if json.Unmarshal([]byte(vars), &v) == nil {
				body["variables"] = v
			}
		}
		b, err := json.Marshal(body)
		if err != nil {
			return
		}
		in := authz.RequestInput{Method: "POST", Target: "/graphql", Headers: map[string]string{"content-type": "application/json"}, Body: b}
		r, d := authz.NewRequest(in)
		if d != nil {
			return
		}
		op, d := cls.Classify(r)
		fresh, _ := authz.NewRequest(in)
		op2, d2 := NewClassifier("", StaticPrefixAPI).Classify(fresh)
		switch {
		case (d == nil) != (d2 == nil):
			t.Fatalf("cached %+v, uncached %+v", d, d2)
		case d != nil && (d.Status != d2.Status || d.Reason != d2.Reason || d.Message != d2.Message):
			t.Fatalf("cached %+v, uncached %+v", d, d2)
		case d == nil && (formatNeeds(op) != formatNeeds(op2) || op.Access != op2.Access):
			t.Fatalf("cached %s %v, uncached %s %v", formatNeeds(op), op.Access, formatNeeds(op2), op2.Access)
		}
		if d != nil {
			if d.Allowed || d.Reason == "" || d.Status < 400 {
				t.Fatalf("bad deny %+v", d)
			}
			return
		}
		doc, err := parser.ParseQuery(&ast.Source{Input: query})
		if err != nil {
			t.Fatalf("accepted a document that does not parse: %v", err)
		}
		for _, name := range topFields(doc) {
			if !gqlKnown[name] {
				t.Fatalf("accepted unknown field %q", name)
			}
		}
		for _, n := range op.Needs {
			if n.Source != "graphql" || n.Permission != store.Read {
				t.Fatalf("unexpected need %+v", n)
			}
		}
		if op.Access == AccessResource && len(op.Needs) == 0 {
			t.Fatal("resource access with nothing to check")
		}
	})
}

// FuzzClassify: never panics; every deny is a 4xx with a reason; every
// accepted resource operation names what it needs, with canonical ids.
func FuzzClassify(f *testing.F) {
	cls := NewClassifier("", StaticPrefixAPI)
	f.Add("GET", "/api/2.0/mlflow/runs/get", "run_id=r1", "", "")
	f.Add("POST", "/api/2.0/mlflow/runs/update", "", `{"run_id":"r1"}`, "application/json")
	f.Add("DELETE", "/ajax-api/2.0/mlflow/registered-models/delete", "name=m", `{"name":"m"}`, "text/plain")
	f.Add("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/x", "", "bytes", "application/octet-stream")
	f.Add("GET", "/api/2.0/mlflow-artifacts/artifacts", "path=1/r", "", "")
	f.Add("POST", "/api/3.0/mlflow/traces/search", "", `{"locations":[{"mlflow_experiment":{"experiment_id":"1"}}]}`, "application/json")
	f.Add("GET", "/graphql", "query=%7B__typename%7D", "", "")
	f.Add("GET", "/graphql", "", `{"query":"{ mlflowGetRun(input: {runId: \"r1\"}) { run { info { runId } } } }"}`, "text/plain")
	f.Add("POST", "/gateway/gemini/v1beta/models/ep:generateContent", "", `{}`, "application/json")
	f.Fuzz(func(t *testing.T, method, path, query, body, ct string) {
		target := path
		if query != "" {
			target += "?" + query
		}
		r, d := authz.NewRequest(authz.RequestInput{Method: method, Target: target, Headers: map[string]string{"content-type": ct}, Body: []byte(body)})
		if d != nil {
			return
		}
		op, d := cls.Classify(r)
		if d != nil {
			if d.Allowed || d.Reason == "" || d.Status < 400 || d.Status > 499 {
				t.Fatalf("bad deny %+v", d)
			}
			return
		}
		if op.Route == nil {
			t.Fatal("allowed without a route")
		}
		if op.Access == AccessResource && len(op.Needs) == 0 {
			t.Fatal("resource access with nothing to check")
		}
		for _, n := range op.Needs {
			if n.Permission < store.Read {
				t.Fatalf("need without a permission: %+v", n)
			}
			if n.Lookup == store.ExperimentByID && !validExperimentID(n.Key) {
				t.Fatalf("non-canonical experiment id %q", n.Key)
			}
			if n.Lookup != "" && !validID(n.Key) || n.Lookup == "" && !validID(n.Resource.ID) {
				t.Fatalf("invalid id in %+v", n)
			}
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	cls := NewClassifier("", StaticPrefixAPI)
	cases := []struct{ name, method, target, body string }{
		{"GetRun", "GET", "/api/2.0/mlflow/runs/get?run_id=0123456789abcdef0123456789abcdef", ""},
		{"LogMetric", "POST", "/api/2.0/mlflow/runs/log-metric", `{"run_id":"0123456789abcdef0123456789abcdef","key":"loss","value":0.25,"timestamp":1700000000000,"step":3}`},
		{"LogBatch", "POST", "/api/2.0/mlflow/runs/log-batch", `{"run_id":"0123456789abcdef0123456789abcdef","metrics":[{"key":"loss","value":0.25,"timestamp":1700000000000,"step":3},{"key":"acc","value":0.9,"timestamp":1700000000000,"step":3}],"params":[],"tags":[]}`},
		{"LogBatch20", "POST", "/api/2.0/mlflow/runs/log-batch", logBatchBody(20)},
		{"ArtifactDownload", "GET", "/api/2.0/mlflow-artifacts/artifacts/12/0123456789abcdef0123456789abcdef/artifacts/model/model.pkl", ""},
		{"TraceTags", "PATCH", "/api/3.0/mlflow/traces/tr-0123456789abcdef/tags", `{"key":"k","value":"v"}`},
		{"Static", "GET", "/static-files/static/js/main.js", ""},
		{"GraphQLGetRun", "POST", "/graphql", `{"query":"query($id: String) { mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }","variables":{"id":"r1"}}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r, d := authz.NewRequest(authz.RequestInput{Method: c.method, Target: c.target, Headers: map[string]string{"content-type": "application/json"}, Body: []byte(c.body)})
			if d != nil {
				b.Fatal(d)
			}
			authztest.LoopCPU(b, func() {
				if _, d := cls.Classify(r); d != nil {
					b.Fatal(d)
				}
			})
		})
	}
}

// FuzzUnquote holds unquote to encoding/json's decoding of every string
// token the body validator lets through (valid UTF-8, JSON's escapes only),
// those json.Marshal writes and those written by hand alike.
func FuzzUnquote(f *testing.F) {
	f.Add(`{ a(b: \"c\") }\n\t`)
	f.Add(`\u0041\ud83d\ude00\ud800`)
	f.Add(`\/ \\ \b\f\r`)
	f.Add("<&> caf\u00e9 \u2028")
	f.Fuzz(func(t *testing.T, s string) {
		marshalled, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range [][]byte{marshalled, []byte(`"` + s + `"`)} {
			var want string
			if !utf8.Valid(tok) || json.Unmarshal(tok, &want) != nil {
				continue // the validator refuses it before unquote sees it
			}
			if got := unquote(tok); got != want {
				t.Fatalf("unquote(%s) = %q, encoding/json: %q", tok, got, want)
			}
		}
	})
}
