package integration

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
)

// actsOnCase is one request whose check must cover what MLflow then does
// with it, not only what the request seems to name.
type actsOnCase struct {
	name    string
	who     string
	method  string
	target  string
	body    string
	headers map[string]string
	allow   bool
	status  int
	reason  string
}

// TestMLflowActsOnWhatWeCheck sends, through gRPC Check on PostgreSQL and
// SQLite, requests where MLflow acts on something other than the obvious
// id: a GraphQL document in the body of a GET (bob may read experiment 1,
// never 3), a StartTraceV3 into a trace id that already exists, OTLP spans
// that name a trace of another experiment, and writes that name a logged
// model or a source model besides their run or registered model, and the
// scorer and issue-detection jobs, which read whatever traces they are given.
func TestMLflowActsOnWhatWeCheck(t *testing.T) {
	getExp := func(id string) string {
		return `{"query":"{ mlflowGetExperiment(input: {experimentId: \"` + id + `\"}) { experiment { name } } }"}`
	}
	tests := []actsOnCase{
		// MLflow's handlers._graphql reads the JSON body for GET as for POST.
		{name: "graphql GET decided from the body", who: "bob", method: "GET", target: "/graphql", body: getExp("3"),
			status: http.StatusForbidden, reason: "permission_denied"},
		{name: "graphql GET with a readable body", who: "bob", method: "GET", target: "/graphql", body: getExp("1"), allow: true},
		{name: "graphql GET body under a harmless URL query", who: "bob", method: "GET", target: "/graphql?query=%7B__typename%7D", body: getExp("3"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql GET URL query that agrees with the body", who: "bob", method: "GET",
			target: "/graphql?query=%7B%20mlflowGetExperiment(input%3A%20%7BexperimentId%3A%20%221%22%7D)%20%7B%20experiment%20%7B%20name%20%7D%20%7D%20%7D", body: getExp("1"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql GET URL query only", who: "bob", method: "GET", target: "/graphql?query=%7B__typename%7D",
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql POST with operationName in the URL", who: "bob", method: "POST", target: "/graphql?operationName=Q", body: getExp("1"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql POST with variables in the URL", who: "bob", method: "POST", target: "/graphql?variables=%7B%7D", body: getExp("1"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql GET without a body", who: "bob", method: "GET", target: "/graphql",
			status: http.StatusBadRequest, reason: "missing_parameter"},
		{name: "graphql GET body of any content type", who: "bob", method: "GET", target: "/graphql", body: getExp("3"),
			headers: map[string]string{"content-type": "text/plain"}, status: http.StatusForbidden, reason: "permission_denied"},
		{name: "graphql POST still needs JSON", who: "bob", method: "POST", target: "/graphql", body: getExp("1"),
			headers: map[string]string{"content-type": "text/plain"}, status: http.StatusBadRequest, reason: "unsupported_content_type"},
	}
	tests = append(tests, startTraceCases()...)
	tests = append(tests, otlpCases(t)...)
	tests = append(tests, loggedModelCases()...)
	tests = append(tests, invokeCases()...)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startOn(t, b)
			for _, s := range actsOnSeed {
				storetestMust(t, h, s)
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					res := h.check(t, h.as(hostMLflow, tt.who, tt.method, tt.target, tt.body, tt.headers))
					requireDecision(t, res, tt.allow, tt.status, tt.reason)
				})
			}
			t.Run("a trace created after a cached not-found", func(t *testing.T) {
				// The check reads past the cache's 2 s not-found: a trace
				// created meanwhile in experiment 3 must not be merged into
				// from experiment 1.
				body := startTraceV3("tr-created-late", "1", "")
				res := h.check(t, h.as(hostMLflow, "alice", "POST", "/api/3.0/mlflow/traces", body, nil))
				requireDecision(t, res, true, 0, "")
				storetestMust(t, h, `INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status) VALUES ('tr-created-late', 3, 1, 'OK')`)
				res = h.check(t, h.as(hostMLflow, "alice", "POST", "/api/3.0/mlflow/traces", body, nil))
				requireDecision(t, res, false, http.StatusForbidden, "permission_denied")
			})
		})
	}
}

// actsOnSeed adds to the harness seed: alice may also EDIT experiment 2,
// frank may EDIT experiments 1 and 2 (not MANAGE either), and experiment 3
// holds assessment a-3 on trace3.
var actsOnSeed = []string{
	`INSERT INTO scorers (experiment_id, scorer_name, scorer_id) VALUES (3, 'judge', 'sc-3'), (1, 'unscheduled', 'sc-1')`,
	`INSERT INTO online_scoring_configs (online_scoring_config_id, scorer_id, sample_rate, experiment_id) VALUES ('osc-3', 'sc-3', 1, 3)`,
	`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('2', 1, 'EDIT'), ('1', 7, 'EDIT'), ('2', 7, 'EDIT')`,
	`INSERT INTO assessments (assessment_id, trace_id, name, assessment_type, value, created_timestamp,
		last_updated_timestamp, source_type, valid) VALUES ('a-3', '` + trace3 + `', 'correct', 'feedback', 'true', 1, 1, 'HUMAN', true)`,
}

func storetestMust(t *testing.T, h *harness, stmt string) {
	t.Helper()
	if err := h.exec(t.Context(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// startTraceV3 is a StartTraceV3 body for traceID into experiment exp, with
// the assessments JSON list if any.
func startTraceV3(traceID, exp, assessments string) string {
	b := `{"trace":{"trace_info":{"trace_id":"` + traceID + `","trace_location":{"type":"MLFLOW_EXPERIMENT","mlflow_experiment":{"experiment_id":"` + exp + `"}},"request_time":"2026-01-01T00:00:00Z","state":"OK"`
	if assessments != "" {
		b += `,"assessments":` + assessments
	}
	return b + `}}}`
}

// invokeCases: the UI's scorer and issue-detection jobs read every trace they
// are given, whatever its experiment, and may annotate it; online-scoring
// configurations are read through their experiments. alice may MANAGE
// experiment 1; trace3 and scorer sc-3's configuration are in experiment 3.
func invokeCases() []actsOnCase {
	c := func(name, method, target, body string, allow bool, status int, reason string) actsOnCase {
		return actsOnCase{name: name, who: "alice", method: method, target: target, body: body, allow: allow, status: status, reason: reason}
	}
	denied := func(name, method, target, body string) actsOnCase {
		return c(name, method, target, body, false, http.StatusForbidden, "permission_denied")
	}
	const scorerInvoke, issuesInvoke = "/ajax-api/3.0/mlflow/scorer/invoke", "/ajax-api/3.0/mlflow/issues/invoke"
	return []actsOnCase{
		c("scorer invoke on its own traces", "POST", scorerInvoke, `{"experiment_id":"1","serialized_scorer":"{}","trace_ids":["`+trace1+`"]}`, true, 0, ""),
		denied("scorer invoke on another experiment's trace", "POST", scorerInvoke, `{"experiment_id":"1","serialized_scorer":"{}","trace_ids":["`+trace1+`","`+trace3+`"],"log_assessments":true}`),
		denied("scorer invoke into another experiment", "POST", scorerInvoke, `{"experiment_id":"3","serialized_scorer":"{}","trace_ids":["`+trace1+`"]}`),
		c("issue detection on its own traces", "POST", issuesInvoke, `{"experiment_id":"1","trace_ids":["`+trace1+`"],"provider":"openai","model":"gpt-4o"}`, true, 0, ""),
		denied("issue detection on another experiment's trace", "POST", issuesInvoke, `{"experiment_id":"1","trace_ids":["`+trace3+`"]}`),
		c("issue detection with alice's endpoint", "POST", issuesInvoke, `{"experiment_id":"1","trace_ids":["`+trace1+`"],"endpoint_name":"chat-ep"}`, true, 0, ""),
		denied("issue detection with an endpoint she may not use", "POST", issuesInvoke, `{"experiment_id":"1","trace_ids":["`+trace1+`"],"endpoint_name":"secret-ep"}`),
		denied("issue detection decrypting a secret she may not use", "POST", issuesInvoke, `{"experiment_id":"1","trace_ids":["`+trace1+`"],"secret_id":"sec-other"}`),
		denied("online scoring configs of another experiment's scorer", "GET", "/api/3.0/mlflow/scorers/online-configs?scorer_ids=sc-3", ""),
		denied("online scoring configs named in the body", "GET", "/ajax-api/3.0/mlflow/scorers/online-configs", `{"scorer_ids":["sc-1","sc-3"]}`),
		c("online scoring configs of a scorer that has none", "GET", "/api/3.0/mlflow/scorers/online-configs?scorer_ids=sc-1", "", true, 0, ""),
		c("online scoring config set in her experiment", "PUT", "/api/3.0/mlflow/scorers/online-config", `{"experiment_id":"1","name":"unscheduled","sample_rate":0.5}`, true, 0, ""),
		denied("online scoring config set in another experiment", "PUT", "/api/3.0/mlflow/scorers/online-config", `{"experiment_id":"3","name":"judge","sample_rate":1}`),
		denied("guardrail attached to an endpoint she may only use", "POST", "/api/3.0/mlflow/gateway/guardrails/add-to-endpoint", `{"endpoint_id":"ep-1","guardrail_id":"g1"}`),
		c("guardrails of an endpoint she may use", "GET", "/api/3.0/mlflow/gateway/guardrails/list-for-endpoint?endpoint_id=ep-1", "", true, 0, ""),
		c("guardrail creation is for admins", "POST", "/api/3.0/mlflow/gateway/guardrails/create", `{"name":"g"}`, false, http.StatusForbidden, "admin_required"),
	}
}

// loggedModelCases: a metric, an input or output, a presigned upload and a
// model version can each name a logged model (or a registered model as a
// source) that MLflow then writes to or copies from. alice may MANAGE
// experiment 1 (lm1, runA) and fraud-model; lm3 is in experiment 3 and
// secret-model has no grant.
func loggedModelCases() []actsOnCase {
	post := func(name, target, body string, allow bool, status int, reason string) actsOnCase {
		return actsOnCase{name: name, who: "alice", method: "POST", target: target, body: body, allow: allow, status: status, reason: reason}
	}
	denied := func(name, target, body string) actsOnCase {
		return post(name, target, body, false, http.StatusForbidden, "permission_denied")
	}
	const (
		logMetric = "/api/2.0/mlflow/runs/log-metric"
		logBatch  = "/api/2.0/mlflow/runs/log-batch"
		presigned = "/api/2.0/mlflow/artifacts/presigned-upload-url"
		createMV  = "/api/2.0/mlflow/model-versions/create"
	)
	return []actsOnCase{
		post("LogMetric to its own logged model", logMetric, `{"run_id":"`+runA+`","key":"k","value":1,"timestamp":1,"model_id":"`+lm1+`"}`, true, 0, ""),
		denied("LogMetric to another experiment's logged model", logMetric, `{"run_id":"`+runA+`","key":"k","value":1,"timestamp":1,"model_id":"`+lm3+`"}`),
		denied("LogMetric to another experiment's logged model, camelCase", logMetric, `{"run_id":"`+runA+`","key":"k","value":1,"timestamp":1,"modelId":"`+lm3+`"}`),
		post("LogMetric to a logged model that does not exist", logMetric, `{"run_id":"`+runA+`","key":"k","value":1,"timestamp":1,"model_id":"m-ffff"}`,
			false, http.StatusNotFound, "resource_not_found"),
		denied("LogBatch with one metric on another experiment's logged model", logBatch,
			`{"run_id":"`+runA+`","metrics":[{"key":"a","value":1,"timestamp":1,"model_id":"`+lm1+`"},{"key":"b","value":1,"timestamp":1,"model_id":"`+lm3+`"}]}`),
		denied("LogInputs linking another experiment's logged model", "/api/2.0/mlflow/runs/log-inputs", `{"run_id":"`+runA+`","models":[{"model_id":"`+lm3+`"}]}`),
		denied("LogOutputs linking another experiment's logged model", "/ajax-api/2.0/mlflow/runs/outputs", `{"run_id":"`+runA+`","models":[{"model_id":"`+lm3+`","step":0}]}`),
		post("presigned upload for its own logged model", presigned, `{"model_id":"`+lm1+`","path":"p"}`, true, 0, ""),
		denied("presigned upload for another experiment's logged model", presigned, `{"model_id":"`+lm3+`","path":"p"}`),
		post("presigned upload naming a run and a model", presigned, `{"run_id":"`+runA+`","model_id":"`+lm1+`","path":"p"}`, false, http.StatusBadRequest, "duplicate_parameter"),
		post("model version from its own logged model", createMV, `{"name":"fraud-model","source":"models:/`+lm1+`","model_id":"`+lm1+`"}`, true, 0, ""),
		denied("model version from another experiment's logged model", createMV, `{"name":"fraud-model","source":"s3://b/3","model_id":"`+lm3+`"}`),
		denied("model version whose models:/ source is another experiment's logged model", createMV, `{"name":"fraud-model","source":"models:/`+lm3+`"}`),
		denied("model version copied from an unreadable registered model", createMV, `{"name":"fraud-model","source":"models:/secret-model/1"}`),
		denied("model version copied by alias", createMV, `{"name":"fraud-model","source":"models:/secret-model@champion"}`),
		post("model version copied from a readable registered model", createMV, `{"name":"fraud-model","source":"models:/fraud-model/1"}`, true, 0, ""),
	}
}

// otlpCases: MLflow writes OTLP spans into the trace each names, where that
// trace is, whatever X-MLflow-Experiment-Id says (sqlalchemy_store.log_spans);
// a span's mlflow.traceRequestId attribute names its trace over its OTel id.
func otlpCases(t *testing.T) []actsOnCase {
	id3, err := hex.DecodeString(strings.TrimPrefix(trace3, "tr-"))
	if err != nil {
		t.Fatal(err)
	}
	id1, err := hex.DecodeString(strings.TrimPrefix(trace1, "tr-"))
	if err != nil {
		t.Fatal(err)
	}
	fresh := []byte("fresh-trace-0001")
	pb := func(exp string) map[string]string {
		return map[string]string{"content-type": "application/x-protobuf", "x-mlflow-experiment-id": exp}
	}
	gz := func(b []byte) string {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.String()
	}
	export := func(spans ...authztest.OTLPSpan) string { return string(authztest.OTLPExport(spans...)) }
	o := func(name, who, exp, body string, headers map[string]string, allow bool, status int, reason string) actsOnCase {
		if headers == nil {
			headers = pb(exp)
		}
		return actsOnCase{name: "OTLP " + name, who: who, method: "POST", target: "/v1/traces", body: body, headers: headers, allow: allow, status: status, reason: reason}
	}
	denied := func(name, who, exp, body string, headers map[string]string) actsOnCase {
		return o(name, who, exp, body, headers, false, http.StatusForbidden, "permission_denied")
	}
	withEncoding := pb("1")
	withEncoding["content-encoding"] = "gzip"
	asJSON := map[string]string{"content-type": "application/json", "x-mlflow-experiment-id": "1"}
	return []actsOnCase{
		o("spans of a new trace", "alice", "1", export(authztest.OTLPSpan{TraceID: fresh}), nil, true, 0, ""),
		o("spans of a trace in the header's experiment", "alice", "1", export(authztest.OTLPSpan{TraceID: id1}), nil, true, 0, ""),
		denied("spans into a trace of another experiment, by OTel id", "alice", "1", export(authztest.OTLPSpan{TraceID: fresh}, authztest.OTLPSpan{TraceID: id3}), nil),
		denied("spans into a trace of another experiment, by mlflow.traceRequestId", "alice", "1", export(authztest.OTLPSpan{TraceID: fresh, RequestID: trace3}), nil),
		denied("spans into a trace of another experiment, gzip", "alice", "1", gz(authztest.OTLPExport(authztest.OTLPSpan{TraceID: id3})), withEncoding),
		denied("spans into a trace of another experiment, JSON", "alice", "1",
			`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"`+strings.TrimPrefix(trace3, "tr-")+`","spanId":"0102030405060708","name":"s"}]}]}]}`, asJSON),
		denied("EDIT on the header's experiment", "bob", "1", export(authztest.OTLPSpan{TraceID: fresh}), nil),
		o("snake_case OTLP/JSON MLflow would read differently", "alice", "1", `{"resource_spans":[]}`, asJSON, false, http.StatusBadRequest, "invalid_parameter"),
		o("not OTLP", "alice", "1", "\x00\x01 raw bytes", nil, false, http.StatusBadRequest, "invalid_parameter"),
		o("not a content type MLflow reads", "alice", "1", export(authztest.OTLPSpan{TraceID: fresh}), map[string]string{"content-type": "text/plain", "x-mlflow-experiment-id": "1"},
			false, http.StatusBadRequest, "unsupported_content_type"),
	}
}

// startTraceCases: MLflow's store merges a StartTraceV3 into an existing
// trace_id, rewriting its experiment_id, and upserts assessments by
// assessment_id wherever they are (sqlalchemy_store.start_trace). alice
// may MANAGE experiment 1 and EDIT 2; frank may EDIT 1 and 2; trace1 is
// in experiment 1, trace3 in experiment 3.
func startTraceCases() []actsOnCase {
	const v3 = "/api/3.0/mlflow/traces"
	st := func(name, who, body string, allow bool, status int, reason string) actsOnCase {
		return actsOnCase{name: "StartTraceV3 " + name, who: who, method: "POST", target: v3, body: body, allow: allow, status: status, reason: reason}
	}
	deny := func(name, who, body string) actsOnCase {
		return st(name, who, body, false, http.StatusForbidden, "permission_denied")
	}
	return []actsOnCase{
		st("new trace", "frank", startTraceV3("tr-new-1", "1", ""), true, 0, ""),
		st("new trace, camelCase", "frank", `{"trace":{"traceInfo":{"traceId":"tr-new-2","traceLocation":{"mlflowExperiment":{"experimentId":"1"}}}}}`, true, 0, ""),
		st("merge into a trace of the same experiment", "frank", startTraceV3(trace1, "1", ""), true, 0, ""),
		deny("merge into another user's trace, moving it", "alice", startTraceV3(trace3, "1", "")),
		deny("merge into another user's trace, camelCase", "alice", `{"trace":{"traceInfo":{"traceId":"`+trace3+`","traceLocation":{"mlflowExperiment":{"experimentId":"1"}}}}}`),
		deny("move out of an experiment the caller may only EDIT", "frank", startTraceV3(trace1, "2", "")),
		st("move out of an experiment the caller may MANAGE", "alice", startTraceV3(trace1, "2", ""), true, 0, ""),
		deny("move needs EDIT on the destination too", "alice", startTraceV3(trace1, "3", "")),
		deny("a workload moves another experiment's trace", trainerMTLS, startTraceV3(trace1, "2", "")),
		deny("existing assessment of another experiment", "alice", startTraceV3("tr-new-3", "1", `[{"assessment_id":"a-3","assessment_name":"x","feedback":{"value":true}}]`)),
		deny("existing assessment, camelCase", "alice", startTraceV3("tr-new-3", "1", `[{"assessmentId":"a-3","assessmentName":"x","feedback":{"value":true}}]`)),
		deny("assessment naming another experiment's trace", "alice", startTraceV3("tr-new-3", "1", `[{"trace_id":"`+trace3+`","assessment_name":"x","feedback":{"value":true}}]`)),
		st("new assessments", "alice", startTraceV3("tr-new-3", "1", `[{"assessment_id":"a-new","assessment_name":"x","feedback":{"value":true}},{"assessment_name":"y","feedback":{"value":1}}]`), true, 0, ""),
		st("no trace_id: MLflow would store an empty id and merge into it", "alice", `{"trace":{"trace_info":{"trace_location":{"mlflow_experiment":{"experiment_id":"1"}}}}}`,
			false, http.StatusBadRequest, "missing_parameter"),
		st("trace_id in both spellings", "alice", `{"trace":{"trace_info":{"trace_id":"tr-new-4","traceId":"`+trace3+`","trace_location":{"mlflow_experiment":{"experiment_id":"1"}}}}}`,
			false, http.StatusBadRequest, "duplicate_parameter"),
		st("assessments not a list", "alice", startTraceV3("tr-new-5", "1", `{"assessment_id":"a-3"}`),
			false, http.StatusBadRequest, "invalid_parameter"),
	}
}
