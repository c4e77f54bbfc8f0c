package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// fakeMLflow answers the routes the response filter acts on exactly as
// MLflow's server writes them: proto field names in snake_case
// (message_to_json), an empty repeated field left out, int64 fields as
// JSON numbers, a Scorer's int32 experiment_id as a number, and page
// tokens that are base64 of {"offset": n} (SearchUtils.create_page_token).
// It knows nothing of permissions: like MLflow without its auth app, it
// answers every row, which is what the filter must then cut.
type fakeMLflow struct {
	ds *dataset
	// Hooks for the fault tests: what to answer instead of the real body.
	fault atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	// lastRunsSearch is the experiment_ids the last runs/search asked for.
	lastRunsSearch atomic.Pointer[[]string]
}

func startFakeMLflow(t *testing.T, ds *dataset) (*fakeMLflow, *httptest.Server) {
	t.Helper()
	f := &fakeMLflow{ds: ds}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeMLflow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := f.fault.Load(); h != nil && (*h)(w, r) {
		return
	}
	p := r.URL.Path
	for _, pre := range []string{"/api/2.0", "/ajax-api/2.0", "/api/3.0", "/ajax-api/3.0"} {
		if rest, ok := strings.CutPrefix(p, pre); ok && strings.HasPrefix(rest, "/mlflow/") {
			p = rest
			break
		}
	}
	params := requestParams(r)
	var out any
	switch {
	case p == "/mlflow/experiments/search":
		out = page(params, "experiments", f.ds.experiments)
	case p == "/mlflow/registered-models/search":
		out = page(params, "registered_models", f.ds.models)
	case p == "/mlflow/model-versions/search":
		out = page(params, "model_versions", f.ds.versions)
	case p == "/mlflow/logged-models/search":
		out = page(params, "models", f.ds.loggedModels)
	case p == "/mlflow/scorers/list":
		out = obj("scorers", f.ds.scorers)
	case p == "/mlflow/gateway/secrets/list":
		out = obj("secrets", f.ds.secrets)
	case p == "/mlflow/gateway/endpoints/list":
		out = obj("endpoints", f.ds.endpoints)
	case p == "/mlflow/gateway/model-definitions/list":
		out = obj("model_definitions", f.ds.modelDefs)
	case p == "/mlflow/gateway/secrets/config":
		out = map[string]any{"secrets_available": true, "using_default_passphrase": true}
	case p == "/mlflow/registered-models/get":
		out = map[string]any{"registered_model": f.ds.model(params.first("name"))}
	case p == "/mlflow/traces/get":
		out = map[string]any{"trace": map[string]any{"trace_info": f.ds.traces[params.first("trace_id")], "spans": []any{}}}
	case strings.HasPrefix(p, "/mlflow/traces/tr-"):
		out = map[string]any{"trace": map[string]any{"trace_info": f.ds.traces[strings.TrimPrefix(p, "/mlflow/traces/")]}}
	case p == "/mlflow/traces/batchGet":
		var ts []any
		for _, id := range params["trace_ids"] {
			ts = append(ts, map[string]any{"trace_info": f.ds.traces[id], "spans": []any{}})
		}
		out = obj("traces", ts)
	case p == "/mlflow/traces/batchGetInfos":
		var ts []any
		for _, id := range params["trace_ids"] {
			ts = append(ts, f.ds.traces[id])
		}
		out = obj("trace_infos", ts)
	case p == "/mlflow/traces/search":
		out = obj("traces", f.ds.traceList())
	case p == "/mlflow/workspaces":
		out = obj("workspaces", []any{
			map[string]any{"name": "default", "description": "the default workspace"},
			map[string]any{"name": "team-b"}, map[string]any{"name": "team-c"},
		})
	case p == "/mlflow/runs/search":
		// MLflow's parser takes the proto name or its JSON (camel) name.
		ids := append(params["experiment_ids"], params["experimentIds"]...)
		f.lastRunsSearch.Store(&ids)
		out = obj("runs", f.ds.runsIn(ids))
	case r.URL.Path == "/graphql":
		out = f.graphql(params)
	default:
		http.Error(w, `{"error_code":"ENDPOINT_NOT_FOUND","message":"no such endpoint"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// values are a request's parameters as MLflow reads them: the query for
// GET, the JSON body otherwise (lists and scalars as strings).
type values map[string][]string

func (v values) first(k string) string {
	if len(v[k]) == 0 {
		return ""
	}
	return v[k][0]
}

func requestParams(r *http.Request) values {
	out := values{}
	if r.Method == http.MethodGet && r.URL.Path != "/graphql" {
		for k, v := range r.URL.Query() {
			out[k] = v
		}
		return out
	}
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for k, v := range m {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				out[k] = append(out[k], fmt.Sprint(e))
			}
		case string:
			out[k] = []string{v}
		case float64:
			out[k] = []string{strconv.Itoa(int(v))}
		default:
			raw, _ := json.Marshal(v)
			out[k] = []string{string(raw)}
		}
	}
	return out
}

// obj is a response with one repeated field, left out when empty.
func obj(key string, rows []any) map[string]any {
	if len(rows) == 0 {
		return map[string]any{}
	}
	return map[string]any{key: rows}
}

// page answers one page of a search: max_results rows from the offset in
// page_token, and a next_page_token while rows remain. A filter of
// "name = 'none'" matches nothing (the empty result).
func page(params values, key string, rows []any) map[string]any {
	if params.first("filter") == "name = 'none'" {
		return map[string]any{}
	}
	size := 1000
	if n, err := strconv.Atoi(params.first("max_results")); err == nil && n > 0 {
		size = n
	}
	offset := 0
	if tok := params.first("page_token"); tok != "" {
		raw, _ := base64.StdEncoding.DecodeString(tok)
		var t struct {
			Offset int `json:"offset"`
		}
		_ = json.Unmarshal(raw, &t)
		offset = t.Offset
	}
	end := min(offset+size, len(rows))
	out := obj(key, rows[min(offset, len(rows)):end])
	if end < len(rows) {
		out["next_page_token"] = base64.StdEncoding.EncodeToString(fmt.Appendf(nil, `{"offset": %d}`, end))
	}
	return out
}

// graphql executes the subset of MLflow's schema the UI uses for runs and
// model versions: mlflowSearchRuns (runs, their info and modelVersions),
// mlflowGetRun and mlflowSearchModelVersions, selecting fields (and
// aliases) as a GraphQL server does, with the input read from literals or
// variables.
func (f *fakeMLflow) graphql(params values) any {
	doc, err := parser.ParseQuery(&ast.Source{Input: params.first("query")})
	if err != nil {
		return map[string]any{"errors": []any{map[string]any{"message": err.Error()}}}
	}
	var vars map[string]any
	_ = json.Unmarshal([]byte(params.first("variables")), &vars)
	frags := map[string]*ast.FragmentDefinition{}
	for _, fr := range doc.Fragments {
		frags[fr.Name] = fr
	}
	data := map[string]any{}
	for _, op := range doc.Operations {
		for _, fld := range flatten(op.SelectionSet, frags) {
			input := map[string]any{}
			if a := fld.Arguments.ForName("input"); a != nil {
				v, _ := a.Value.Value(vars)
				input, _ = v.(map[string]any)
			}
			var val any
			switch fld.Name {
			case "mlflowSearchRuns":
				var ids []string
				for _, id := range asList(input["experimentIds"]) {
					ids = append(ids, fmt.Sprint(id))
				}
				f.lastRunsSearch.Store(&ids)
				val = map[string]any{"runs": f.ds.runObjects(ids)}
			case "mlflowGetRun":
				val = map[string]any{"run": f.ds.runObject(fmt.Sprint(input["runId"]))}
			case "mlflowSearchModelVersions":
				var mvs []any
				for _, v := range f.ds.versions {
					mvs = append(mvs, camelize(v))
				}
				val = map[string]any{"modelVersions": mvs}
			}
			data[responseName(fld)] = selectFields(val, fld.SelectionSet, frags)
		}
	}
	return map[string]any{"data": data}
}

func asList(v any) []any {
	switch v := v.(type) {
	case []any:
		return v
	case nil:
		return nil
	}
	return []any{v}
}

func responseName(f *ast.Field) string {
	if f.Alias != "" {
		return f.Alias
	}
	return f.Name
}

func flatten(ss ast.SelectionSet, frags map[string]*ast.FragmentDefinition) []*ast.Field {
	var out []*ast.Field
	for _, s := range ss {
		switch s := s.(type) {
		case *ast.Field:
			out = append(out, s)
		case *ast.InlineFragment:
			out = append(out, flatten(s.SelectionSet, frags)...)
		case *ast.FragmentSpread:
			out = append(out, flatten(frags[s.Name].SelectionSet, frags)...)
		}
	}
	return out
}

func selectFields(v any, ss ast.SelectionSet, frags map[string]*ast.FragmentDefinition) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = selectFields(e, ss, frags)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for _, f := range flatten(ss, frags) {
			out[responseName(f)] = selectFields(v[f.Name], f.SelectionSet, frags)
		}
		return out
	}
	return v
}

// camelize turns a snake_case REST row into its GraphQL form.
func camelize(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, val := range m {
		parts := strings.Split(k, "_")
		for i := 1; i < len(parts); i++ {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
		out[strings.Join(parts, "")] = camelize(val)
	}
	return out
}

// dataset is one MLflow installation: what the fake serves and what the
// service's store holds, from the same numbers.
type dataset struct {
	experiments, models, versions, loggedModels, scorers, secrets, endpoints, modelDefs []any
	traces                                                                              map[string]map[string]any
	runs                                                                                []map[string]any
}

// newDataset builds n experiments (ids 1..n) and, for each, a registered
// model model-NNN with two versions, a logged model and a run; scorers,
// gateway objects and traces for the few experiments the tests name.
func newDataset(n int) *dataset {
	ds := &dataset{traces: map[string]map[string]any{}}
	for i := 1; i <= n; i++ {
		id := strconv.Itoa(i)
		name := fmt.Sprintf("model-%03d", i)
		ds.experiments = append(ds.experiments, map[string]any{
			"experiment_id": id, "name": fmt.Sprintf("exp-%03d", i), "artifact_location": "mlflow-artifacts:/" + id,
			"lifecycle_stage": "active", "last_update_time": 1700000000000 + i, "creation_time": 1700000000000,
			"tags": []any{map[string]any{"key": "team", "value": "t" + id}},
		})
		v1 := map[string]any{"name": name, "version": "1", "creation_timestamp": 1, "current_stage": "None", "source": "models:/m-" + id, "run_id": runID(i), "status": "READY"}
		v2 := map[string]any{"name": name, "version": "2", "creation_timestamp": 2, "current_stage": "None", "source": "models:/m-" + id + "b", "run_id": runID(i), "status": "READY"}
		ds.models = append(ds.models, map[string]any{"name": name, "creation_timestamp": 1, "last_updated_timestamp": 2, "latest_versions": []any{v2}})
		ds.versions = append(ds.versions, v1, v2)
		ds.loggedModels = append(ds.loggedModels, map[string]any{
			"info": map[string]any{"model_id": "m-" + id, "experiment_id": id, "name": "clf", "creation_timestamp_ms": 1, "status": "LOGGED_MODEL_READY"},
			"data": map[string]any{"params": []any{map[string]any{"key": "lr", "value": "0.1"}}},
		})
		ds.runs = append(ds.runs, map[string]any{"info": map[string]any{"run_id": runID(i), "run_uuid": runID(i), "experiment_id": id, "status": "FINISHED"}, "data": map[string]any{}})
	}
	for _, s := range []struct {
		exp  int
		name string
	}{{7, "s7"}, {7, "s7b"}, {8, "s8"}, {42, "s42"}} {
		ds.scorers = append(ds.scorers, map[string]any{"experiment_id": s.exp, "scorer_name": s.name, "scorer_version": 1, "serialized_scorer": `{"name":"` + s.name + `"}`, "creation_time": 1})
	}
	for i := 1; i <= 3; i++ {
		id := strconv.Itoa(i)
		ds.secrets = append(ds.secrets, map[string]any{"secret_id": "sec-" + id, "secret_name": "key-" + id, "masked_values": map[string]any{"api_key": "sk-...00" + id}, "provider": "openai"})
		ds.endpoints = append(ds.endpoints, map[string]any{"endpoint_id": "ep-" + id, "name": "chat-" + id, "created_at": 1})
		ds.modelDefs = append(ds.modelDefs, map[string]any{"model_definition_id": "md-" + id, "name": "gpt-" + id, "secret_id": "sec-" + id})
	}
	for _, e := range []int{7, 8} {
		id := traceID(e)
		ds.traces[id] = map[string]any{"trace_id": id, "state": "OK",
			"trace_location": map[string]any{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": map[string]any{"experiment_id": strconv.Itoa(e)}},
			"assessments":    []any{map[string]any{"assessment_id": "a-" + id, "assessment_name": "correct", "feedback": map[string]any{"value": true}}}}
	}
	return ds
}

func runID(i int) string   { return fmt.Sprintf("%032d", i) }
func traceID(e int) string { return fmt.Sprintf("tr-%032d", e) }

func (ds *dataset) model(name string) any {
	for _, m := range ds.models {
		if m.(map[string]any)["name"] == name {
			return m
		}
	}
	return nil
}

func (ds *dataset) traceList() []any {
	var out []any
	for _, k := range slices.Sorted(maps.Keys(ds.traces)) {
		out = append(out, ds.traces[k])
	}
	return out
}

func (ds *dataset) runsIn(ids []string) []any {
	var out []any
	for _, r := range ds.runs {
		if slices.Contains(ids, r["info"].(map[string]any)["experiment_id"].(string)) {
			out = append(out, r)
		}
	}
	return out
}

// runObjects and runObject are runs in GraphQL's shape, with each run's
// model versions (MlflowRunExtension.modelVersions).
func (ds *dataset) runObjects(ids []string) []any {
	var out []any
	for _, r := range ds.runsIn(ids) {
		out = append(out, ds.runObject(r.(map[string]any)["info"].(map[string]any)["run_id"].(string)))
	}
	return out
}

func (ds *dataset) runObject(id string) any {
	for _, r := range ds.runs {
		info := r["info"].(map[string]any)
		if info["run_id"] != id {
			continue
		}
		var mvs []any
		for _, v := range ds.versions {
			if v.(map[string]any)["run_id"] == id {
				mvs = append(mvs, camelize(v))
			}
		}
		// Every run also names a version of model-099, whatever its
		// experiment: a run's versions may belong to any model.
		if len(ds.versions) >= 2*99 {
			mvs = append(mvs, camelize(ds.versions[2*98]))
		}
		return map[string]any{"info": camelize(info), "modelVersions": mvs}
	}
	return nil
}
