package mlflow

import (
	"bufio"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
)

// otlpTraceA is the OTel trace id of the "otlp" body of the route data.
var otlpTraceA = []byte{0xa1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// newReq builds a Request the way the ext_authz server would.
func newReq(t testing.TB, method, target, body string, headers map[string]string) *authz.Request {
	t.Helper()
	h := map[string]string{}
	for k, v := range headers {
		h[k] = v
	}
	if body != "" {
		if _, ok := h["content-type"]; !ok {
			h["content-type"] = "application/json"
		}
	}
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r, d := authz.NewRequest(authz.RequestInput{Method: method, Host: "mlflow.example.com", Target: target, Headers: h, Body: b})
	require.Nil(t, d, "NewRequest(%s %s)", method, target)
	return r
}

func formatNeeds(op Operation) string {
	if len(op.Needs) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(op.Needs))
	for _, n := range op.Needs {
		kind, key := string(n.Lookup), n.Key
		if n.Lookup == "" {
			kind, key = string(n.Resource.Kind), n.Resource.ID
			if n.Resource.Name != "" {
				key += "/" + n.Resource.Name
			}
		}
		if n.IfExists {
			kind += "?"
		}
		if n.MovedTo != "" {
			key += ">" + n.MovedTo
		}
		parts = append(parts, n.Permission.String()+":"+n.Source+":"+kind+":"+key)
	}
	return strings.Join(parts, ",")
}

var prefixPaths = map[string][]string{
	"v2":    {"/api/2.0", "/ajax-api/2.0"},
	"v3":    {"/api/3.0", "/ajax-api/3.0"},
	"api2":  {"/api/2.0"},
	"api3":  {"/api/3.0"},
	"ajax2": {"/ajax-api/2.0"},
	"ajax3": {"/ajax-api/3.0"},
	"ui":    {""},
	"root":  {""},
}

type routeRow struct {
	line                                               int
	prefixes, method, path, query, body, access, needs string
}

func readRouteRows(t *testing.T) []routeRow {
	t.Helper()
	f, err := os.Open("testdata/mlflow-routes.tsv")
	require.NoError(t, err)
	defer f.Close()
	var rows []routeRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		require.Len(t, c, 7, "line %d", n)
		rows = append(rows, routeRow{n, c[0], c[1], c[2], c[3], c[4], c[5], c[6]})
	}
	require.NoError(t, sc.Err())
	require.Greater(t, len(rows), 200)
	return rows
}

func (row routeRow) request(t *testing.T, prefix string) *authz.Request {
	target := prefix + row.path
	if row.query != "-" {
		target += "?" + row.query
	}
	headers := map[string]string{}
	body := ""
	switch row.body {
	case "-":
	case "raw":
		body = "\x00\x01 raw bytes"
		headers["content-type"] = "application/octet-stream"
	case "otlp":
		body = string(authztest.OTLPExport(authztest.OTLPSpan{TraceID: otlpTraceA}, authztest.OTLPSpan{TraceID: otlpTraceA, RequestID: "tr-1"}))
	default:
		body = row.body
	}
	if row.path == "/v1/traces" {
		headers["x-mlflow-experiment-id"] = "1"
		headers["content-type"] = "application/x-protobuf"
	}
	return newReq(t, row.method, target, body, headers)
}

// TestRouteTableConformance walks the hand-transcribed table in
// testdata/mlflow-routes.tsv and checks Classify against every row, under
// every prefix MLflow mounts the route at.
func TestRouteTableConformance(t *testing.T) {
	cls := NewClassifier("", StaticPrefixAPI)
	for _, row := range readRouteRows(t) {
		prefixes, ok := prefixPaths[row.prefixes]
		require.True(t, ok, "line %d: unknown prefix set %q", row.line, row.prefixes)
		for _, px := range prefixes {
			t.Run(row.method+" "+px+row.path, func(t *testing.T) {
				op, d := cls.Classify(row.request(t, px))
				require.Nil(t, d, "line %d: unexpected deny %+v", row.line, d)
				require.NotNil(t, op.Route)
				assert.Equal(t, row.access, op.Access.String(), "line %d: access", row.line)
				assert.Equal(t, row.needs, formatNeeds(op), "line %d: needs", row.line)
			})
		}
	}
}

// TestRouteTableCovered makes sure no route row is left out of the
// conformance file: every row of the code table is hit by some TSV line.
func TestRouteTableCovered(t *testing.T) {
	cls := NewClassifier("", StaticPrefixAPI)
	hit := map[*Route]bool{}
	for _, row := range readRouteRows(t) {
		for _, px := range prefixPaths[row.prefixes] {
			op, _ := cls.Classify(row.request(t, px))
			if op.Route != nil {
				hit[op.Route] = true
			}
		}
	}
	for _, r := range cls.Routes() {
		assert.True(t, hit[r], "route %s %v %s has no conformance row", r.Name, r.Methods, r.Path)
	}
}

func TestUnknownRoutesDeny404(t *testing.T) {
	cls := NewClassifier("", StaticPrefixAPI)
	tests := []struct{ method, target string }{
		{"GET", "/api/2.0/mlflow/experiments/nope"},
		{"GET", "/api/2.0/mlflow/experiments/delete"},         // known path, wrong method
		{"POST", "/api/2.0/mlflow/experiments/get"},           // known path, wrong method
		{"GET", "/api/2.0mlflow/experiments/search-datasets"}, // the proto typo path
		{"GET", "/static-filesX/app.js"},                      // no segment boundary
		{"GET", "/staticfoo"},
		{"GET", "/static/app.js"},
		{"GET", "/healthz"},
		{"GET", "/api/4.0/mlflow/experiments/get?experiment_id=1"},
		{"GET", "/api/3.0/mlflow/experiments/get?experiment_id=1"}, // v2-only endpoint under v3
		{"POST", "/api/2.0/mlflow/traces/search"},                  // v3-only endpoint under v2
		{"POST", "/ajax-api/2.0/mlflow/users/create-ui"},           // REST-only auth route
		{"GET", "/api/2.0/mlflow/roles/list"},                      // the role API is v3 only
		{"GET", "/gateway/proxy/chat-ep/"},                         // the raw proxy names a path after the endpoint
		{"POST", "/gateway/unknown/path"},
		{"POST", "/ajax-api/2.0/mlflow/logged-models/lm1/unknown"},
		{"GET", "/api/2.0/mlflow/traces/tr-1/unknown"},
		{"GET", "/api/2.0/mlflow/logged-models/lm1/artifacts/files"}, // ajax-only
		{"GET", "/v1/traces"},
		{"GET", "/version/extra"},
		{"DELETE", "/"},
		// FastAPI's jobs router: submit is "/" under its prefix; without the
		// slash the request reaches Flask, which has no such route.
		{"POST", "/ajax-api/3.0/jobs"},
		{"DELETE", "/ajax-api/3.0/jobs/j1"},
		{"GET", "/api/3.0/jobs/j1"},
		{"DELETE", "/ajax-api/3.0/mlflow/assistant/sessions/s1"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			op, d := cls.Classify(newReq(t, tt.method, tt.target, "", nil))
			require.NotNil(t, d)
			assert.Nil(t, op.Route)
			assert.Equal(t, http.StatusNotFound, d.Status)
			assert.Equal(t, authz.ReasonUnknownRoute, d.Reason)
			assert.False(t, d.Allowed)
		})
	}
}

// TestStaticPrefix: which routes --static-prefix moves, in both eras of
// MLflow. Before 3.12 /api/... stays at the root; from 3.12 on
// (mlflow#22159, handlers._get_rest_path applies _add_static_prefix) it is
// served under the prefix only. The FastAPI routes stay at the root in
// both. A route asked for where this era does not serve it is unknown: a
// stale mode fails closed, with a reason that names the setting.
func TestStaticPrefix(t *testing.T) {
	api := NewClassifier("/mlflow", StaticPrefixAPI)
	ajax := NewClassifier("/mlflow", StaticPrefixAjax)
	tests := []struct {
		method, target string
		// the route in each era; "" means unknown route
		routeAPI, routeAjax string
	}{
		{"GET", "/mlflow/", "UI", "UI"},
		{"GET", "/mlflow", "UI", "UI"},
		{"GET", "/mlflow/static-files/app.js", "StaticFiles", "StaticFiles"},
		{"GET", "/mlflow/health", "Health", "Health"},
		{"POST", "/mlflow/graphql", "GraphQL", "GraphQL"},
		{"GET", "/mlflow/get-artifact?run_id=r1", "GetArtifact", "GetArtifact"},
		{"GET", "/mlflow/ajax-api/2.0/mlflow/runs/get?run_id=r1", "GetRun", "GetRun"},
		{"GET", "/mlflow/api/2.0/mlflow/runs/get?run_id=r1", "GetRun", ""},
		{"GET", "/api/2.0/mlflow/runs/get?run_id=r1", "", "GetRun"},
		{"GET", "/mlflow/api/3.0/mlflow/scorers/list?experiment_id=1", "ListScorers", ""},
		{"GET", "/api/3.0/mlflow/scorers/list?experiment_id=1", "", "ListScorers"},
		{"POST", "/mlflow/api/2.0/mlflow/users/create", "CreateUser", ""},
		{"POST", "/api/2.0/mlflow/users/create", "", "CreateUser"},
		// An /api path is decided in its mount only, even where another
		// mount has the same path.
		{"GET", "/mlflow/api/2.0/mlflow/get-artifact?run_id=r1", "", ""},
		{"POST", "/v1/traces", "OTLPTraces", "OTLPTraces"}, // FastAPI stays at the root
		{"POST", "/mlflow/v1/traces", "", ""},
		{"POST", "/gateway/chat-ep/mlflow/invocations", "GatewayInvocations", "GatewayInvocations"},
		{"POST", "/mlflow/gateway/chat-ep/mlflow/invocations", "", ""},
		{"GET", "/ajax-api/2.0/mlflow/runs/get?run_id=r1", "", ""}, // ajax moved under the prefix
		{"GET", "/static-files/app.js", "", ""},
		{"GET", "/health", "", ""},
		{"GET", "/mlflowX/health", "", ""},
		{"GET", "/mlflowX/api/2.0/mlflow/runs/get?run_id=r1", "", ""},
		{"GET", "/", "", ""},
		// FastAPI routers under /ajax-api/3.0 stay at the root; the Flask
		// job views move under the prefix.
		{"POST", "/ajax-api/3.0/jobs/", "SubmitJob", "SubmitJob"},
		{"GET", "/ajax-api/3.0/jobs/j1", "GetJobFastAPI", "GetJobFastAPI"},
		{"GET", "/mlflow/ajax-api/3.0/jobs/j1", "", ""},
		{"POST", "/ajax-api/3.0/mlflow/assistant/message", "Assistant", "Assistant"},
		{"POST", "/mlflow/ajax-api/3.0/mlflow/assistant/message", "", ""},
		{"GET", "/mlflow/ajax-api/3.0/mlflow/jobs/j1", "GetJob", "GetJob"},
		{"GET", "/signup", "Signup", "Signup"}, // the auth app's /signup is not prefixed
		{"GET", "/mlflow/signup", "", ""},
		{"GET", "/ajax-api/3.0/mlflow/jobs/j1", "", ""},
	}
	for _, tt := range tests {
		for _, era := range []struct {
			mode  StaticPrefixMode
			cls   *Classifier
			route string
		}{{StaticPrefixAPI, api, tt.routeAPI}, {StaticPrefixAjax, ajax, tt.routeAjax}} {
			t.Run(string(era.mode)+" "+tt.method+" "+tt.target, func(t *testing.T) {
				h := map[string]string{"x-mlflow-experiment-id": "1"}
				if tt.target == "/v1/traces" {
					h["content-type"] = "application/x-protobuf"
				}
				body := ""
				switch {
				case strings.HasSuffix(tt.target, "/graphql"):
					body = `{"query":"{__typename}"}`
				case tt.method == "POST":
					body = `{}`
				}
				op, d := era.cls.Classify(newReq(t, tt.method, tt.target, body, h))
				if era.route == "" {
					require.NotNil(t, d)
					assert.Nil(t, op.Route)
					assert.Equal(t, http.StatusNotFound, d.Status)
					assert.Equal(t, authz.ReasonUnknownRoute, d.Reason)
					return
				}
				require.NotNil(t, op.Route, "%+v", d)
				assert.Equal(t, era.route, op.Route.Name)
			})
		}
	}
}

// TestStaticPrefixStaleMode: a request in the other era's form is refused
// with a message that names the setting, never decided as some other row.
func TestStaticPrefixStaleMode(t *testing.T) {
	tests := []struct {
		mode   StaticPrefixMode
		target string
		hint   string
	}{
		{StaticPrefixAPI, "/api/2.0/mlflow/runs/get?run_id=r1", "static_prefix_mode: ajax"},
		{StaticPrefixAjax, "/mlflow/api/2.0/mlflow/runs/get?run_id=r1", "static_prefix_mode: api"},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			_, d := NewClassifier("/mlflow", tt.mode).Classify(newReq(t, "GET", tt.target, "", nil))
			require.NotNil(t, d)
			assert.Equal(t, http.StatusNotFound, d.Status)
			assert.Equal(t, authz.ReasonUnknownRoute, d.Reason)
			assert.Contains(t, d.Message, tt.hint)
		})
	}
	// Without a prefix the modes agree and nothing is hinted.
	_, d := NewClassifier("", StaticPrefixAjax).Classify(newReq(t, "GET", "/api/2.0/mlflow/nope", "", nil))
	require.NotNil(t, d)
	assert.NotContains(t, d.Message, "static_prefix_mode")
}
