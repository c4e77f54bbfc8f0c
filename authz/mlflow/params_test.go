package mlflow

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

type classifyCase struct {
	name    string
	method  string
	target  string
	body    string
	headers map[string]string
	trunc   bool
	// On allow: the needs. On deny: status and reason.
	needs  string
	access string
	status int
	reason authz.Reason
}

func runClassifyCases(t *testing.T, tests []classifyCase) {
	t.Helper()
	cls := NewClassifier("", StaticPrefixAPI)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReq(t, tt.method, tt.target, tt.body, tt.headers)
			r.BodyTruncated = tt.trunc
			op, d := cls.Classify(r)
			if tt.status != 0 {
				require.NotNil(t, d, "expected a deny, got needs %s", formatNeeds(op))
				assert.False(t, d.Allowed)
				assert.Equal(t, tt.status, d.Status, d.Message)
				assert.Equal(t, tt.reason, d.Reason, d.Message)
				return
			}
			require.Nil(t, d, "unexpected deny: %+v", d)
			assert.Equal(t, tt.needs, formatNeeds(op))
			if tt.access != "" {
				assert.Equal(t, tt.access, op.Access.String())
			}
		})
	}
}

func TestParameterRules(t *testing.T) {
	text := map[string]string{"content-type": "text/plain"}
	runClassifyCases(t, []classifyCase{
		// Single-valued parameters repeated, or in both spellings.
		{name: "repeated run_id in query", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a&run_id=b", status: 400, reason: ReasonDuplicateParameter},
		{name: "repeated identical run_id in query", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a&run_id=a", status: 400, reason: ReasonDuplicateParameter},
		{name: "snake and camel in query", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a&runId=b", status: 400, reason: ReasonDuplicateParameter},
		{name: "camel alone in query is ignored like MLflow does", method: "GET", target: "/api/2.0/mlflow/runs/get?runId=b", status: 400, reason: ReasonMissingParameter},
		{name: "run_id and run_uuid differ", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a&run_uuid=b", status: 400, reason: ReasonDuplicateParameter},
		{name: "run_id and run_uuid agree", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a&run_uuid=a", needs: "READ:query:run:a"},
		{name: "experiment_id repeated", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=1&experiment_id=2", status: 400, reason: ReasonDuplicateParameter},
		{name: "list params repeat legitimately", method: "GET", target: "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=a&run_id=b", needs: "READ:query:run:a,READ:query:run:b"},
		{name: "too many ids", method: "GET", target: "/ajax-api/2.0/mlflow/metrics/get-history-bulk?" + strings.Repeat("run_id=a&", maxListIDs+1), status: 400, reason: authz.ReasonInvalidParameter},
		{name: "bulk needs at least one run", method: "GET", target: "/ajax-api/2.0/mlflow/metrics/get-history-bulk?metric_key=m", status: 400, reason: ReasonMissingParameter},
		{name: "empty experiment_ids on trace search", method: "GET", target: "/api/2.0/mlflow/traces?max_results=1", status: 400, reason: ReasonMissingParameter},
		{name: "unparsable query", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=a;run_id=b", status: 400, reason: authz.ReasonInvalidParameter},

		// JSON bodies.
		{name: "duplicate key", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a","run_id":"b"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "duplicate key deep inside", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a","tags":[{"k":1,"k":2}]}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "duplicate key via escape", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a","run\u005fid":"b"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "snake and camel in body", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a","runId":"b"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "camel alone in body (protobuf accepts it)", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"runId":"victim"}`, needs: "EDIT:body:run:victim"},
		{name: "nested snake and camel", method: "POST", target: "/api/3.0/mlflow/traces", body: `{"trace":{"trace_info":{"trace_location":{"mlflow_experiment":{"experiment_id":"1","experimentId":"2"}}}}}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "nested both spellings of a parent", method: "POST", target: "/api/3.0/mlflow/traces", body: `{"trace":{"trace_info":{},"traceInfo":{}}}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "V3 trace without experiment", method: "POST", target: "/api/3.0/mlflow/traces", body: `{"trace":{"trace_info":{}}}`, status: 400, reason: ReasonMissingParameter},
		{name: "invalid JSON", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":`, status: 400, reason: ReasonInvalidJSON},
		{name: "trailing data", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a"} {"run_id":"b"}`, status: 400, reason: ReasonInvalidJSON},
		{name: "top-level array", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `[{"run_id":"a"}]`, status: 400, reason: ReasonInvalidJSON},
		{name: "double-encoded JSON string", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `"{\"run_id\":\"a\"}"`, status: 400, reason: ReasonInvalidJSON},
		{name: "invalid UTF-8", method: "POST", target: "/api/2.0/mlflow/runs/update", body: "{\"run_id\":\"a\xff\"}", status: 400, reason: ReasonInvalidJSON},
		{name: "NaN", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a","value":NaN}`, status: 400, reason: ReasonInvalidJSON},
		{name: "null id is missing", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":null}`, status: 400, reason: ReasonMissingParameter},
		{name: "empty id is missing", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":""}`, status: 400, reason: ReasonMissingParameter},
		{name: "run_uuid fallback in body", method: "POST", target: "/api/2.0/mlflow/runs/log-metric", body: `{"run_uuid":"r1"}`, needs: "EDIT:body:run:r1"},
		{name: "run_id and run_uuid differ in body", method: "POST", target: "/api/2.0/mlflow/runs/log-metric", body: `{"run_id":"a","run_uuid":"b"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "id as object", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":{"x":"a"}}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "list holds a number", method: "POST", target: "/api/2.0/mlflow/runs/search", body: `{"experiment_ids":["1",2]}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "list holds an empty id", method: "POST", target: "/api/2.0/mlflow/runs/search", body: `{"experiment_ids":["1",""]}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "list is a string", method: "POST", target: "/api/2.0/mlflow/runs/search", body: `{"experiment_ids":"1"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "runs/search without experiments", method: "POST", target: "/api/2.0/mlflow/runs/search", body: `{}`, needs: "-", access: "authenticated"},
		{name: "endpoint create without model configs", method: "POST", target: "/api/3.0/mlflow/gateway/endpoints/create", body: `{"name":"e"}`, needs: "-", access: "authenticated"},
		{name: "control character in id", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a\u0000b"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "replacement character in id", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a\ud800"}`, status: 400, reason: authz.ReasonInvalidParameter},

		// Experiment ids as MLflow parses them.
		{name: "experiment id as JSON number", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":1}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "negative experiment id", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"-1"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "plus sign", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=%2B1", status: 400, reason: authz.ReasonInvalidParameter},
		{name: "leading zero", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=01", status: 400, reason: authz.ReasonInvalidParameter},
		{name: "spaces", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=+1", status: 400, reason: authz.ReasonInvalidParameter},
		{name: "underscore digits", method: "GET", target: "/api/2.0/mlflow/experiments/get?experiment_id=1_0", status: 400, reason: authz.ReasonInvalidParameter},
		{name: "arabic-indic digit", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"١"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "fullwidth digit", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"１"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "huge experiment id", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"1234567890123456789"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "float experiment id", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"1.0"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "experiment zero", method: "POST", target: "/api/2.0/mlflow/experiments/delete", body: `{"experiment_id":"0"}`, needs: "MANAGE:body:experiment:0"},

		// Truncated bodies.
		{name: "truncated body with the id in it", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a"`, trunc: true, status: 413, reason: authz.ReasonBodyTruncated},
		{name: "truncated artifact upload, id in the path", method: "PUT", target: "/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/big.bin", body: "\x00partial", trunc: true, headers: map[string]string{"content-type": "application/octet-stream"}, needs: "EDIT:path:experiment:1"},
		{name: "truncated run upload, id in the query", method: "POST", target: "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=r1&path=x", body: "\x00partial", trunc: true, headers: map[string]string{"content-type": "application/octet-stream"}, needs: "EDIT:query:run:r1"},
		{name: "truncated mpu complete, id in the path", method: "POST", target: "/api/2.0/mlflow-artifacts/mpu/complete/1/r1/f", body: `{"parts":[`, trunc: true, needs: "EDIT:path:experiment:1"},
		{name: "truncated runs/create (identity claims unreadable)", method: "POST", target: "/api/2.0/mlflow/runs/create", body: `{"experiment_id":"1"`, trunc: true, status: 413, reason: authz.ReasonBodyTruncated},

		// Content types and sources.
		{name: "POST form to a JSON endpoint", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a"}`, headers: map[string]string{"content-type": "application/x-www-form-urlencoded"}, status: 400, reason: ReasonUnsupportedContentType},
		{name: "POST JSON without content type", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a"}`, headers: map[string]string{"content-type": ""}, status: 400, reason: ReasonUnsupportedContentType},
		{name: "POST JSON with charset", method: "POST", target: "/api/2.0/mlflow/runs/update", body: `{"run_id":"a"}`, headers: map[string]string{"content-type": "application/json; charset=utf-8"}, needs: "EDIT:body:run:a"},
		{name: "GET body is ignored; query is read", method: "GET", target: "/api/2.0/mlflow/runs/get?run_id=mine", body: `{"run_id":"victim"}`, needs: "READ:query:run:mine"},
		{name: "GET with the id only in the body", method: "GET", target: "/api/2.0/mlflow/runs/get", body: `{"run_id":"victim"}`, status: 400, reason: ReasonMissingParameter},
		{name: "POST query id is irrelevant, body read", method: "POST", target: "/api/2.0/mlflow/runs/update?run_id=mine", body: `{"run_id":"victim"}`, needs: "EDIT:body:run:victim"},
		{name: "POST with the id only in the query", method: "POST", target: "/api/2.0/mlflow/runs/update?run_id=mine", body: `{}`, status: 400, reason: ReasonMissingParameter},
		{name: "PATCH with text/plain is still parsed", method: "PATCH", target: "/api/2.0/mlflow/registered-models/update", body: `{"name":"victim"}`, headers: text, needs: "EDIT:body:registered_model:victim"},
		{name: "DELETE with JSON body", method: "DELETE", target: "/api/2.0/mlflow/registered-models/delete", body: `{"name":"m1"}`, needs: "MANAGE:body:registered_model:m1"},
		{name: "DELETE text/plain body wins over query", method: "DELETE", target: "/api/2.0/mlflow/registered-models/delete", body: `{"name":"victim"}`, headers: text, needs: "MANAGE:body:registered_model:victim"},
		{name: "DELETE body and query both name it", method: "DELETE", target: "/api/2.0/mlflow/registered-models/delete?name=mine", body: `{"name":"victim"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "DELETE non-JSON body", method: "DELETE", target: "/api/2.0/mlflow/registered-models/delete", body: `name=victim`, headers: text, status: 400, reason: ReasonInvalidJSON},
		{name: "DELETE without body reads the query", method: "DELETE", target: "/api/2.0/mlflow/registered-models/delete?name=m1", needs: "MANAGE:query:registered_model:m1"},
		{name: "scorer without name", method: "GET", target: "/api/3.0/mlflow/scorers/get?experiment_id=1", status: 400, reason: ReasonMissingParameter},
		{name: "scorer with bad experiment", method: "GET", target: "/api/3.0/mlflow/scorers/get?experiment_id=x&name=s", status: 400, reason: authz.ReasonInvalidParameter},

		// Headers and artifact paths.
		{name: "OTLP without experiment header", method: "POST", target: "/v1/traces", body: "\x00", headers: map[string]string{"content-type": "application/x-protobuf"}, status: 400, reason: ReasonMissingParameter},
		{name: "OTLP with a bad experiment header", method: "POST", target: "/v1/traces", body: "\x00", headers: map[string]string{"content-type": "application/x-protobuf", "x-mlflow-experiment-id": "1,2"}, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "artifact list path escapes", method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts?path=1/../2/x", status: 400, reason: authz.ReasonInvalidParameter},
		{name: "artifact list absolute path", method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts?path=/etc/passwd", status: 400, reason: authz.ReasonInvalidParameter},
		{name: "artifact path with leading zero", method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts/01/r1/f", needs: "-", access: "admin"},
		{name: "artifact path experiment only", method: "GET", target: "/api/2.0/mlflow-artifacts/artifacts/1", needs: "-", access: "admin"},
		{name: "gateway model from body", method: "POST", target: "/gateway/openai/v1/chat/completions", body: `{"model":"a","model":"b"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "gateway body read whatever the content type", method: "POST", target: "/gateway/openai/v1/chat/completions", body: `{"model":"ep"}`, headers: text, needs: "USE:body:gateway_endpoint_name:ep"},
		{name: "gateway without model", method: "POST", target: "/gateway/openai/v1/chat/completions", body: `{}`, status: 400, reason: ReasonMissingParameter},
	})
}

// TestWhatAWriteTouches: ids beside the obvious one that MLflow writes to
// or copies from (the newest validators: validate_can_log_metric,
// validate_can_create_model_version, validate_can_update_run_or_logged_model).
func TestWhatAWriteTouches(t *testing.T) {
	mv := func(name, source string, c classifyCase) classifyCase {
		c.name, c.method, c.target = name, "POST", "/api/2.0/mlflow/model-versions/create"
		c.body = `{"name":"m1","source":` + strconv.Quote(source) + `}`
		return c
	}
	rm := func(name string) string { return "EDIT:body:registered_model:m1,READ:body:registered_model:" + name }
	lm := func(id string) string { return "EDIT:body:registered_model:m1,READ:body:logged_model:" + id }
	runClassifyCases(t, []classifyCase{
		mv("models:/ version", "models:/m2/7", classifyCase{needs: rm("m2")}),
		mv("models:/ stage", "models:/m2/Production", classifyCase{needs: rm("m2")}),
		mv("models:/ latest", "models:/m2/latest", classifyCase{needs: rm("m2")}),
		mv("models:/ alias", "models:/m2@champion", classifyCase{needs: rm("m2")}),
		mv("models:/ alias with @ in the name", "models:/a@b@champion", classifyCase{needs: rm("a@b")}),
		mv("models:/ logged model id", "models:/m-0123", classifyCase{needs: lm("m-0123")}),
		mv("scheme in capitals, as urlparse reads it", "MODELS:/m2/1", classifyCase{needs: rm("m2")}),
		mv("a Databricks profile before the path", "models://profile@databricks/m2/1", classifyCase{needs: rm("m2")}),
		mv("run artifact source names nothing more", "runs:/r1/model", classifyCase{needs: "EDIT:body:registered_model:m1"}),
		mv("object store source names nothing more", "s3://bucket/1/r1/artifacts/model", classifyCase{needs: "EDIT:body:registered_model:m1"}),
		mv("leading space urlparse would strip", " models:/m2/1", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		mv("three path parts", "models:/m2/1/x", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		mv("no name", "models:/", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		mv("empty alias", "models:/m2@", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		mv("empty name before an alias", "models:/@champion", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		mv("blank suffix", "models:/m2/ ", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		mv("query in the URI", "models:/m2/1?x=1", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		mv("no slash after the scheme", "models:m2/1", classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		{name: "model version from a logged model, camelCase", method: "POST", target: "/api/2.0/mlflow/model-versions/create", body: `{"name":"m1","source":"s","modelId":"m-1"}`, needs: lm("m-1")},
		{name: "presigned upload for a logged model", method: "POST", target: "/api/2.0/mlflow/artifacts/presigned-upload-url", body: `{"model_id":"m-1","path":"p"}`, needs: "EDIT:body:logged_model:m-1"},
		{name: "presigned upload names both", method: "POST", target: "/api/2.0/mlflow/artifacts/presigned-upload-url", body: `{"run_id":"r1","model_id":"m-1"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "presigned upload names neither", method: "POST", target: "/api/2.0/mlflow/artifacts/presigned-upload-url", body: `{"path":"p"}`, status: 400, reason: ReasonMissingParameter},
		{name: "presigned upload run_uuid is no proto field", method: "POST", target: "/api/2.0/mlflow/artifacts/presigned-upload-url", body: `{"run_uuid":"r1"}`, status: 400, reason: ReasonMissingParameter},
		{name: "gateway endpoint by name", method: "GET", target: "/api/3.0/mlflow/gateway/endpoints/get?name=chat", needs: "READ:query:gateway_endpoint_name:chat"},
		{name: "gateway endpoint by id and name", method: "GET", target: "/api/3.0/mlflow/gateway/endpoints/get?name=chat&endpoint_id=e1", status: 400, reason: ReasonDuplicateParameter},
		{name: "log-batch model ids must be strings", method: "POST", target: "/api/2.0/mlflow/runs/log-batch", body: `{"run_id":"r1","metrics":[{"key":"a","model_id":5}]}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "log-batch model id in both spellings", method: "POST", target: "/api/2.0/mlflow/runs/log-batch", body: `{"run_id":"r1","metrics":[{"key":"a","model_id":"m-1","modelId":"m-2"}]}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "online configs named in the query and the body", method: "GET", target: "/api/3.0/mlflow/scorers/online-configs?scorer_ids=a", body: `{"scorer_ids":["b"]}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "online configs: a query string means the body is not read", method: "GET", target: "/api/3.0/mlflow/scorers/online-configs?x=1", body: `{"scorerIds":["b"]}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "online configs from a body of any content type", method: "GET", target: "/api/3.0/mlflow/scorers/online-configs", body: `{"scorer_ids":["b"]}`, headers: map[string]string{"content-type": "text/plain"}, needs: "READ:args_or_json:online_scoring_config?:b"},
		{name: "dataset needs an experiment", method: "POST", target: "/api/3.0/mlflow/datasets/create", body: `{"name":"d","experiment_ids":[]}`, status: 400, reason: ReasonMissingParameter},
		{name: "scorer invoke needs traces", method: "POST", target: "/ajax-api/3.0/mlflow/scorer/invoke", body: `{"experiment_id":"1","serialized_scorer":"{}"}`, status: 400, reason: ReasonMissingParameter},
		{name: "log-inputs models not a list", method: "POST", target: "/api/2.0/mlflow/runs/log-inputs", body: `{"run_id":"r1","models":{"model_id":"m-1"}}`, status: 400, reason: authz.ReasonInvalidParameter},
	})
}

func TestIdentityClaims(t *testing.T) {
	cls := NewClassifier("", StaticPrefixAPI)
	tests := []struct {
		name, target, body string
		claims             []string
	}{
		{"create with user_id", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","user_id":"bob"}`, []string{"bob"}},
		{"create with camel userId", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","userId":"bob"}`, []string{"bob"}},
		{"create with mlflow.user tag", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","tags":[{"key":"mlflow.user","value":"eve"}]}`, []string{"eve"}},
		{"set-tag mlflow.user", "/api/2.0/mlflow/runs/set-tag", `{"run_id":"r1","key":"mlflow.user","value":"eve"}`, []string{"eve"}},
		{"set-tag other key", "/api/2.0/mlflow/runs/set-tag", `{"run_id":"r1","key":"k","value":"eve"}`, nil},
		{"log-batch tags", "/api/2.0/mlflow/runs/log-batch", `{"run_id":"r1","tags":[{"key":"mlflow.user","value":"eve"}]}`, []string{"eve"}},
		{"no claim", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1"}`, nil},
		{"user_id in both spellings", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","user_id":"alice","userId":"bob"}`, []string{"deny"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, d := cls.Classify(newReq(t, "POST", tt.target, tt.body, nil))
			if len(tt.claims) == 1 && tt.claims[0] == "deny" {
				require.NotNil(t, d)
				assert.Equal(t, http.StatusBadRequest, d.Status)
				assert.Equal(t, ReasonDuplicateParameter, d.Reason)
				return
			}
			require.Nil(t, d)
			assert.Equal(t, tt.claims, op.ClaimedUsers)
		})
	}
}

func TestParseJSONObject(t *testing.T) {
	tests := []struct {
		body string
		err  error
	}{
		{`{}`, nil},
		{`{"a":[1,{"b":null}],"c":true}`, nil},
		{` {"a":1} `, nil},
		{`{"a":1,"a":1}`, errJSONDuplicate},
		{`{"a":{"b":1,"b":2}}`, errJSONDuplicate},
		{`{"a":[{"b":1,"b":2}]}`, errJSONDuplicate},
		{`[]`, errJSONNotObject},
		{`1`, errJSONNotObject},
		{`{"a":1}x`, errJSONSyntax},
		{`{"a" 1}`, errJSONSyntax},
		{``, errJSONSyntax},
		{"{\"a\":\"\xc3\"}", errJSONEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			_, err := parseJSONObject([]byte(tt.body))
			assert.Equal(t, tt.err, err)
		})
	}
	deep := ""
	for range maxJSONDepth + 1 {
		deep += `{"a":`
	}
	_, err := parseJSONObject([]byte(deep + "1" + repeat("}", maxJSONDepth+1)))
	assert.Equal(t, errJSONTooDeep, err)
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func TestDenyStatusesAreHTTP(t *testing.T) {
	// Every 4xx a classifier returns must map to an MLflow error code.
	d := deny(http.StatusRequestEntityTooLarge, authz.ReasonBodyTruncated, "x")
	assert.Equal(t, "INVALID_PARAMETER_VALUE", d.ErrorCode())
}

func TestLongArtifactPath(t *testing.T) {
	cls := NewClassifier("", StaticPrefixAPI)
	long := strings.Repeat("d/", 1500) + "f"
	op, d := cls.Classify(newReq(t, "GET", "/api/2.0/mlflow-artifacts/artifacts/1/"+long, "", nil))
	require.Nil(t, d)
	assert.Equal(t, "READ:path:experiment:1", formatNeeds(op))
	op, d = cls.Classify(newReq(t, "GET", "/api/2.0/mlflow-artifacts/artifacts?path=1/"+long, "", nil))
	require.Nil(t, d)
	assert.Equal(t, "READ:query:experiment:1", formatNeeds(op))
}

// TestValidIDMatchesRuneCheck: the ASCII pass of validID answers as the
// check over runes it stands in front of, for every byte at every place
// of the first two words and the bytes after them, and for longer and
// non-ASCII ids.
func TestValidIDMatchesRuneCheck(t *testing.T) {
	byRunes := func(s string) bool {
		if s == "" || len(s) > 1024 || !utf8.ValidString(s) {
			return false
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				return false
			}
		}
		return true
	}
	ids := []string{"", "r", strings.Repeat("a", 1024), strings.Repeat("a", 1025), "héllo", "\uFFFD", "a\xffb", "日本", "a\u0085b"}
	for c := range 256 {
		for n := range 18 {
			ids = append(ids, strings.Repeat("x", n)+string([]byte{byte(c)}), string([]byte{byte(c)})+strings.Repeat("x", n))
		}
	}
	for _, id := range ids {
		assert.Equal(t, byRunes(id), validID(id), "%q", id)
	}
}
