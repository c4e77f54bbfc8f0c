package integration

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/integration/envoyfront"
)

// The response filter end to end: a client, the Envoy-semantics front
// (ext_authz, then ext_proc, as the manifests wire them), the real service
// on PostgreSQL and SQLite, and a fake MLflow that answers every row.

const hostFiltered = "mlflow.test"

// filterConfig is the service of the filter tests: one MLflow application
// with the filter deployed, deny by default.
const filterConfig = `
server:
  grpc_addr: 127.0.0.1:0
  http_addr: 127.0.0.1:0
  check_timeout: 2s
  shutdown_grace: 1s
issuers:
  - name: dev
    issuer: "${ISSUER}"
    audiences: [mlflow]
    admin_groups: [mlflow-admin]
ext_proc:
  max_body_bytes: 2097152
` + storePostgres + `apps:
  - name: mlflow
    type: mlflow
    hosts: [` + hostFiltered + `]
    mlflow:
      default_permission: NO_PERMISSIONS
      ext_proc_filter: true
`

// filterUsers: alice reads experiments 7 (own READ), 99 (own EDIT) and 42
// (group ml) and the models of the same numbers; bob and gina (no users
// row) read 42 and 55 through team-a; erin is in team-a but her own
// NO_PERMISSIONS row on 42 leaves her 55; carol is an admin by users.is_admin
// and dave by token group; mallory reads nothing.
var filterUsers = []devissuer.User{
	{Username: "alice", Groups: []string{"/ml"}},
	{Username: "bob", Groups: []string{"/team-a"}},
	{Username: "erin", Groups: []string{"/team-a"}},
	{Username: "gina", Groups: []string{"/team-a"}},
	{Username: "carol"},
	{Username: "dave", Groups: []string{"/mlflow-admin"}},
	{Username: "mallory"},
}

// readableBy is what each caller may read of the 100 experiments (and of
// the models with the same numbers); nil means everything.
var readableBy = map[string][]int{
	"alice": {7, 42, 99}, "bob": {42, 55}, "gina": {42, 55}, "erin": {55},
	"carol": nil, "dave": nil, "mallory": {},
}

const datasetSize = 100

func filterSeed(ds *dataset) []string {
	var exps, runs, models, versions, lms []string
	for i := 1; i <= datasetSize; i++ {
		exps = append(exps, fmt.Sprintf("(%d, 'exp-%03d', 'active')", i, i))
		runs = append(runs, fmt.Sprintf("('%s', %d, 'active')", runID(i), i))
		models = append(models, fmt.Sprintf("('model-%03d')", i))
		versions = append(versions, fmt.Sprintf("('model-%03d', 1, '%s'), ('model-%03d', 2, '%s')", i, runID(i), i, runID(i)))
		lms = append(lms, fmt.Sprintf("('m-%d', %d, 'clf', 'x', 1, 1, 1, 'active')", i, i))
	}
	return []string{
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (0, 'Default', 'active'), ` + strings.Join(exps, ", "),
		`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage) VALUES ` + strings.Join(runs, ", "),
		`INSERT INTO registered_models (name) VALUES ` + strings.Join(models, ", "),
		`INSERT INTO model_versions (name, version, run_id) VALUES ` + strings.Join(versions, ", "),
		`INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage) VALUES ` + strings.Join(lms, ", "),
		`INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status) VALUES ('` + traceID(7) + `', 7, 1, 'OK'), ('` + traceID(8) + `', 8, 1, 'OK')`,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', false), (2, 'bob', false), (3, 'carol', true), (4, 'erin', false), (5, 'mallory', false)`,
		`INSERT INTO groups (id, group_name) VALUES (1, 'team-a'), (2, '/ml')`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('7', 1, 'READ'), ('99', 1, 'EDIT'), ('42', 4, 'NO_PERMISSIONS')`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES ('42', 1, 'READ'), ('55', 1, 'READ'), ('42', 2, 'READ')`,
		`INSERT INTO registered_model_permissions (name, user_id, permission) VALUES ('model-007', 1, 'READ'), ('model-099', 1, 'MANAGE'), ('model-042', 4, 'NO_PERMISSIONS')`,
		`INSERT INTO registered_model_group_permissions (name, group_id, permission) VALUES ('model-042', 1, 'READ'), ('model-055', 1, 'READ'), ('model-042', 2, 'READ')`,
		`INSERT INTO scorer_permissions (experiment_id, scorer_name, user_id, permission) VALUES ('7', 's7', 1, 'READ'), ('8', 's8', 1, 'READ')`,
		`INSERT INTO gateway_secret_permissions (secret_id, user_id, permission) VALUES ('sec-1', 1, 'READ')`,
		`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('ep-2', 1, 'USE')`,
		`INSERT INTO gateway_model_definition_permissions (model_definition_id, user_id, permission) VALUES ('md-3', 1, 'MANAGE')`,
	}
}

// filterProcessing is the ext_proc filter as manifests/components/filter
// configures it (manifests_test checks the manifest against the same
// values): request headers only by default, the server asks for more
// with mode_override, fail closed.
func filterProcessing() *extprocfilterv3.ExternalProcessor {
	modes := []*extprocfilterv3.ProcessingMode{
		{ResponseHeaderMode: extprocfilterv3.ProcessingMode_SKIP},
		{ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseBodyMode: extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL},
		{RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SKIP},
		{RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseBodyMode: extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL},
		{ResponseBodyMode: extprocfilterv3.ProcessingMode_NONE},
	}
	return &extprocfilterv3.ExternalProcessor{
		ProcessingMode:       &extprocfilterv3.ProcessingMode{ResponseHeaderMode: extprocfilterv3.ProcessingMode_SKIP},
		AllowModeOverride:    true,
		AllowedOverrideModes: modes,
		MessageTimeout:       durationpb.New(3 * time.Second),
		FailureModeAllow:     false,
		StatusOnError:        &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		RequestAttributes:    []string{"connection.uri_san_peer_certificate"},
	}
}

// filterManifest is the EnvoyFilter that wires the filter in Istio.
const filterManifest = "../manifests/components/filter/envoyfilter.yaml"

// filteredPaths is the manifest's own path matcher: the front skips the
// filter for any other path, as Envoy's ExtensionWithMatcher does.
func filteredPaths(t *testing.T) *regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile(filterManifest)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*regex: '([^']+)'$`).FindSubmatch(data)
	require.NotNil(t, m, "no regex in %s", filterManifest)
	return regexp.MustCompile(string(m[1]))
}

type filterEnv struct {
	h     *harness
	fake  *fakeMLflow
	ds    *dataset
	front *httptest.Server
	// workspace, when set, is sent as X-MLFLOW-WORKSPACE.
	workspace string
}

func startFilter(t *testing.T, b backend, bufferLimit int) *filterEnv {
	t.Helper()
	return startFilterWith(t, b, bufferLimit, filterConfig)
}

// startFilterWith is startFilter with the service's configuration doc and
// extra seed statements.
func startFilterWith(t *testing.T, b backend, bufferLimit int, doc string, seed ...string) *filterEnv {
	t.Helper()
	ds := newDataset(datasetSize)
	h := startWith(t, b, startOptions{doc: doc, seed: append(filterSeed(ds), seed...), tokenUsers: filterUsers})
	fake, up := startFakeMLflow(t, ds)
	conn, err := grpc.NewClient(h.run.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	u, _ := url.Parse(up.URL)
	front := httptest.NewServer(envoyfront.New(authv3.NewAuthorizationClient(conn), u, envoyfront.Options{
		StatusOnError: http.StatusServiceUnavailable,
		ExtProc: &envoyfront.ExtProc{
			Client:      extprocv3.NewExternalProcessorClient(conn),
			Config:      filterProcessing(),
			Match:       filteredPaths(t),
			BufferLimit: bufferLimit,
		},
	}))
	t.Cleanup(front.Close)
	return &filterEnv{h: h, fake: fake, ds: ds, front: front}
}

// do sends one request through the front as user, the way MLflow's
// clients do: the Host of the MLflow app, a bearer token, JSON bodies.
func (e *filterEnv) do(t *testing.T, user, method, target string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.front.URL+target, rd)
	require.NoError(t, err)
	req.Host = hostFiltered
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+e.h.tokens[user])
	req.Header.Set("Accept-Encoding", "gzip")
	if e.workspace != "" {
		req.Header.Set("X-MLFLOW-WORKSPACE", e.workspace)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, out
}

// want returns the numbers user may read among 1..n.
func want(user string, n int) []int {
	if readableBy[user] == nil {
		out := make([]int, n)
		for i := range out {
			out[i] = i + 1
		}
		return out
	}
	return readableBy[user]
}

// listing is one paginated search route and how to read its rows.
type listing struct {
	name   string
	method string
	path   string
	// request builds the query string (GET) or JSON body (POST) of a page.
	request func(pageSize int, token string) (query string, body any)
	key     string
	// number reads the experiment/model number a row stands for.
	number func(row map[string]any) int
}

func numberOf(s string) int {
	n, _ := strconv.Atoi(strings.TrimLeft(s[strings.LastIndexAny(s, "-")+1:], "0"))
	return n
}

var listings = []listing{
	{name: "experiments, MlflowClient.search_experiments()", method: "POST", path: "/api/2.0/mlflow/experiments/search",
		request: func(n int, tok string) (string, any) {
			b := map[string]any{"view_type": "ACTIVE_ONLY", "max_results": n}
			if tok != "" {
				b["page_token"] = tok
			}
			return "", b
		},
		key: "experiments", number: func(r map[string]any) int { n, _ := strconv.Atoi(r["experiment_id"].(string)); return n }},
	{name: "experiments, the UI's experiment list", method: "POST", path: "/ajax-api/2.0/mlflow/experiments/search",
		request: func(n int, tok string) (string, any) {
			b := map[string]any{"max_results": n, "order_by": []string{"last_update_time DESC"}}
			if tok != "" {
				b["page_token"] = tok
			}
			return "", b
		},
		key: "experiments", number: func(r map[string]any) int { n, _ := strconv.Atoi(r["experiment_id"].(string)); return n }},
	{name: "experiments, GET", method: "GET", path: "/api/2.0/mlflow/experiments/search",
		request: func(n int, tok string) (string, any) { return pageQuery(n, tok), nil },
		key:     "experiments", number: func(r map[string]any) int { n, _ := strconv.Atoi(r["experiment_id"].(string)); return n }},
	{name: "registered models", method: "GET", path: "/api/2.0/mlflow/registered-models/search",
		request: func(n int, tok string) (string, any) { return pageQuery(n, tok), nil },
		key:     "registered_models", number: func(r map[string]any) int { return numberOf(r["name"].(string)) }},
	{name: "registered models, the UI", method: "GET", path: "/ajax-api/2.0/mlflow/registered-models/search",
		request: func(n int, tok string) (string, any) { return pageQuery(n, tok) + "&order_by=name+ASC", nil },
		key:     "registered_models", number: func(r map[string]any) int { return numberOf(r["name"].(string)) }},
	{name: "model versions", method: "GET", path: "/api/2.0/mlflow/model-versions/search",
		request: func(n int, tok string) (string, any) { return pageQuery(n, tok), nil },
		key:     "model_versions", number: func(r map[string]any) int { return numberOf(r["name"].(string)) }},
	{name: "logged models", method: "POST", path: "/api/2.0/mlflow/logged-models/search",
		request: func(n int, tok string) (string, any) {
			ids := make([]string, datasetSize)
			for i := range ids {
				ids[i] = strconv.Itoa(i + 1)
			}
			b := map[string]any{"experiment_ids": ids, "max_results": n}
			if tok != "" {
				b["page_token"] = tok
			}
			return "", b
		},
		key: "models", number: func(r map[string]any) int {
			n, _ := strconv.Atoi(r["info"].(map[string]any)["experiment_id"].(string))
			return n
		}},
}

func pageQuery(n int, tok string) string {
	q := url.Values{"max_results": {strconv.Itoa(n)}}
	if tok != "" {
		q.Set("page_token", tok)
	}
	return "?" + q.Encode()
}

// collect pages through a listing until the token runs out, returning the
// numbers of every row seen and how many pages it took.
func (e *filterEnv) collect(t *testing.T, user string, l listing, pageSize int) ([]int, int) {
	t.Helper()
	var seen []int
	tok, pages := "", 0
	for {
		q, body := l.request(pageSize, tok)
		resp, out := e.do(t, user, l.method, l.path+q, body)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s as %s: %s", l.name, user, out)
		assert.Empty(t, resp.Header.Get("Content-Encoding"))
		var page map[string]any
		require.NoError(t, json.Unmarshal(out, &page), string(out))
		rows, _ := page[l.key].([]any)
		assert.LessOrEqual(t, len(rows), pageSize)
		for _, r := range rows {
			seen = append(seen, l.number(r.(map[string]any)))
		}
		pages++
		next, _ := page["next_page_token"].(string)
		if next == "" {
			return seen, pages
		}
		tok = next
		require.Less(t, pages, 50, "pagination does not end")
	}
}

// TestFilterDoneWhen: a user with READ on 3 of 100 experiments sees exactly
// those 3 through the filter, in the UI's list and in MlflowClient's
// search, and the same for registered models and model versions; every
// caller sees exactly their readable rows, each once, across three pages.
func TestFilterDoneWhen(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := startFilter(t, b, 0)
			for _, l := range listings {
				t.Run(l.name, func(t *testing.T) {
					for _, user := range []string{"alice", "bob", "gina", "erin", "carol", "dave", "mallory"} {
						seen, pages := e.collect(t, user, l, 40)
						wantRows := want(user, datasetSize)
						if l.key == "model_versions" {
							// two versions per model, in model order
							w := []int{}
							for _, n := range wantRows {
								w = append(w, n, n)
							}
							wantRows = w
							assert.Equal(t, 5, pages, "%s: 200 versions, 40 a page", user)
						} else {
							assert.Equal(t, 3, pages, "%s: 100 rows, 40 a page", user)
						}
						slices.Sort(seen)
						if seen == nil {
							seen = []int{}
						}
						assert.Equal(t, wantRows, seen, "%s sees exactly the rows they may read, each once", user)
					}
				})
			}
			t.Run("the empty result", func(t *testing.T) {
				resp, out := e.do(t, "alice", "GET", "/api/2.0/mlflow/registered-models/search?filter="+url.QueryEscape("name = 'none'"), nil)
				require.Equal(t, http.StatusOK, resp.StatusCode)
				assert.JSONEq(t, `{}`, string(out))
			})
			t.Run("a page of unreadable rows keeps its token", func(t *testing.T) {
				resp, out := e.do(t, "alice", "GET", "/api/2.0/mlflow/experiments/search?max_results=5", nil)
				require.Equal(t, http.StatusOK, resp.StatusCode)
				var page struct {
					Experiments []any  `json:"experiments"`
					Token       string `json:"next_page_token"`
				}
				require.NoError(t, json.Unmarshal(out, &page))
				assert.Empty(t, page.Experiments)
				assert.NotEmpty(t, page.Token, "the client must go on to the next page")
			})
		})
	}
}

// TestFilterLists covers the unpaginated lists and the redactions.
func TestFilterLists(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := startFilter(t, b, 0)
			names := func(out []byte, key, field string) []string {
				var m map[string][]map[string]any
				require.NoError(t, json.Unmarshal(out, &m), string(out))
				var got []string
				for _, r := range m[key] {
					got = append(got, fmt.Sprint(r[field]))
				}
				return got
			}
			tests := []struct {
				user, path, key, field string
				want                   []string
			}{
				{"alice", "/ajax-api/3.0/mlflow/scorers/list", "scorers", "scorer_name", []string{"s7"}},
				{"alice", "/api/3.0/mlflow/scorers/list?experiment_id=7", "scorers", "scorer_name", []string{"s7"}},
				{"carol", "/api/3.0/mlflow/scorers/list", "scorers", "scorer_name", []string{"s7", "s7b", "s8", "s42"}},
				{"bob", "/api/3.0/mlflow/scorers/list", "scorers", "scorer_name", nil},
				{"alice", "/api/3.0/mlflow/gateway/secrets/list", "secrets", "secret_id", []string{"sec-1"}},
				{"alice", "/ajax-api/3.0/mlflow/gateway/endpoints/list", "endpoints", "endpoint_id", []string{"ep-2"}},
				{"alice", "/api/3.0/mlflow/gateway/model-definitions/list", "model_definitions", "model_definition_id", []string{"md-3"}},
				{"mallory", "/api/3.0/mlflow/gateway/endpoints/list", "endpoints", "endpoint_id", nil},
				{"dave", "/api/3.0/mlflow/gateway/secrets/list", "secrets", "secret_id", []string{"sec-1", "sec-2", "sec-3"}},
			}
			for _, tt := range tests {
				resp, out := e.do(t, tt.user, "GET", tt.path, nil)
				require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", tt.user, tt.path, out)
				assert.Equal(t, tt.want, names(out, tt.key, tt.field), "%s %s", tt.user, tt.path)
			}

			resp, out := e.do(t, "alice", "GET", "/ajax-api/3.0/mlflow/gateway/secrets/config", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.JSONEq(t, `{"secrets_available":true}`, string(out), "the passphrase posture is for admins")
			_, out = e.do(t, "carol", "GET", "/ajax-api/3.0/mlflow/gateway/secrets/config", nil)
			assert.JSONEq(t, `{"secrets_available":true,"using_default_passphrase":true}`, string(out))

			// Assessments stay on traces of readable experiments (the only
			// ones the check lets through).
			resp, out = e.do(t, "alice", "GET", "/api/3.0/mlflow/traces/get?trace_id="+traceID(7), nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			assert.Contains(t, string(out), `"assessments"`)
			resp, out = e.do(t, "alice", "POST", "/api/3.0/mlflow/traces/batchGetInfos", map[string]any{"trace_ids": []string{traceID(7)}})
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			assert.Contains(t, string(out), `"assessments"`)
			resp, out = e.do(t, "alice", "POST", "/api/3.0/mlflow/traces/search", map[string]any{"locations": []any{map[string]any{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": map[string]any{"experiment_id": "7"}}}})
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			var search struct {
				Traces []map[string]any `json:"traces"`
			}
			require.NoError(t, json.Unmarshal(out, &search))
			require.Len(t, search.Traces, 2, "the fake answers both traces")
			for _, tr := range search.Traces {
				exp := tr["trace_location"].(map[string]any)["mlflow_experiment"].(map[string]any)["experiment_id"]
				_, has := tr["assessments"]
				assert.Equal(t, exp == "7", has, "assessments only on the readable experiment's trace (%v)", exp)
			}

			resp, out = e.do(t, "alice", "GET", "/api/2.0/mlflow/registered-models/get?name=model-007", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			assert.Contains(t, string(out), `"latest_versions"`)
		})
	}
}

// TestFilterNarrowsRunsSearch: runs/search over mixed ids returns the
// readable runs, REST and GraphQL alike; none readable is a 403.
func TestFilterNarrowsRunsSearch(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := startFilter(t, b, 0)
			runsOf := func(out []byte) []string {
				var m struct {
					Runs []struct {
						Info struct {
							ExperimentID string `json:"experiment_id"`
						} `json:"info"`
					} `json:"runs"`
				}
				require.NoError(t, json.Unmarshal(out, &m), string(out))
				var got []string
				for _, r := range m.Runs {
					got = append(got, r.Info.ExperimentID)
				}
				return got
			}
			resp, out := e.do(t, "alice", "POST", "/api/2.0/mlflow/runs/search", map[string]any{"experiment_ids": []string{"7", "8", "42", "55"}, "max_results": 100})
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			assert.Equal(t, []string{"7", "42"}, runsOf(out))
			assert.Equal(t, []string{"7", "42"}, *e.fake.lastRunsSearch.Load(), "MLflow was asked only for the readable experiments")

			resp, out = e.do(t, "bob", "POST", "/ajax-api/2.0/mlflow/runs/search", map[string]any{"experimentIds": []string{"7", "55"}})
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			assert.Equal(t, []string{"55"}, runsOf(out))

			resp, out = e.do(t, "mallory", "POST", "/api/2.0/mlflow/runs/search", map[string]any{"experiment_ids": []string{"7", "8"}})
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Equal(t, "no_readable_experiment", resp.Header.Get("x-authz-reason"))
			assertMLflowError(t, out, "PERMISSION_DENIED", "no_readable_experiment")

			resp, _ = e.do(t, "carol", "POST", "/api/2.0/mlflow/runs/search", map[string]any{"experiment_ids": []string{"7", "8"}})
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, []string{"7", "8"}, *e.fake.lastRunsSearch.Load(), "an admin's search is untouched")

			// GraphQL, as the UI's run list sends it (variables), and with
			// nested model versions of models alice may and may not read.
			gql := map[string]any{
				"query":     `mutation SearchRuns($data: MlflowSearchRunsInput) { mlflowSearchRuns(input: $data) { runs { info { runId experimentId } modelVersions { name version } } } }`,
				"variables": map[string]any{"data": map[string]any{"experimentIds": []string{"7", "8", "42"}}},
			}
			resp, out = e.do(t, "alice", "POST", "/graphql", gql)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			var res struct {
				Data struct {
					Search struct {
						Runs []struct {
							Info struct {
								ExperimentID string `json:"experimentId"`
							} `json:"info"`
							ModelVersions []map[string]any `json:"modelVersions"`
						} `json:"runs"`
					} `json:"mlflowSearchRuns"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal(out, &res), string(out))
			var exps []string
			for _, r := range res.Data.Search.Runs {
				exps = append(exps, r.Info.ExperimentID)
				for _, mv := range r.ModelVersions {
					assert.Contains(t, []string{"model-007", "model-042", "model-099"}, mv["name"], "only readable models' versions")
					assert.Len(t, mv, 2, "the marker never reaches the client: %v", mv)
				}
				assert.NotEmpty(t, r.ModelVersions)
			}
			assert.Equal(t, []string{"7", "42"}, exps)

			gql["variables"] = map[string]any{"data": map[string]any{"experimentIds": []string{"8"}}}
			resp, out = e.do(t, "alice", "POST", "/graphql", gql)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, string(out))
			assertMLflowError(t, out, "PERMISSION_DENIED", "no_readable_experiment")

			resp, out = e.do(t, "bob", "POST", "/graphql", map[string]any{"query": `query { mlflowSearchModelVersions(input: {}) { modelVersions { version name } } }`})
			require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
			var mvs struct {
				Data struct {
					S struct {
						MVs []map[string]string `json:"modelVersions"`
					} `json:"mlflowSearchModelVersions"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal(out, &mvs), string(out))
			var got []string
			for _, mv := range mvs.Data.S.MVs {
				got = append(got, mv["name"])
			}
			assert.Equal(t, []string{"model-042", "model-042", "model-055", "model-055"}, got)
		})
	}
}

func assertMLflowError(t *testing.T, out []byte, code, reason string) {
	t.Helper()
	var e struct {
		ErrorCode string `json:"error_code"`
		Reason    string `json:"reason"`
		Message   string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(out, &e), string(out))
	assert.Equal(t, code, e.ErrorCode)
	assert.Equal(t, reason, e.Reason)
	assert.NotEmpty(t, e.Message)
}

// TestFilterFailsClosed: a truncated body, a non-JSON 200, a gzip answer, a
// body over the buffer, a store outage in the middle of a response: each is
// a 503 in MLflow's error shape, never an unfiltered row.
func TestFilterFailsClosed(t *testing.T) {
	e := startFilter(t, backendPostgres, 256<<10)
	const path = "/api/2.0/mlflow/experiments/search?max_results=1000"
	set := func(h func(w http.ResponseWriter, r *http.Request) bool) {
		e.fake.fault.Store(&h)
		t.Cleanup(func() { e.fake.fault.Store(nil) })
	}
	full, _ := json.Marshal(page(values{}, "experiments", e.ds.experiments))
	tests := []struct {
		name   string
		fault  func(w http.ResponseWriter, r *http.Request) bool
		reason string
	}{
		{"truncated JSON", func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(full[:len(full)/2])
			return true
		}, "response_malformed"},
		{"non-JSON 200", func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>maintenance</html>")
			return true
		}, "response_not_json"},
		{"gzip, though identity was asked for", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(full)
			_ = zw.Close()
			return true
		}, "response_encoded"},
		{"larger than Envoy's buffer", func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			big, _ := json.Marshal(map[string]any{"experiments": slices.Repeat(e.ds.experiments, 20)})
			_, _ = w.Write(big)
			return true
		}, "response_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set(tt.fault)
			resp, out := e.do(t, "alice", "GET", path, nil)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(out))
			assert.Equal(t, tt.reason, resp.Header.Get("x-authz-reason"))
			assertMLflowError(t, out, "TEMPORARILY_UNAVAILABLE", tt.reason)
			assert.NotContains(t, string(out), "exp-0")
		})
	}
	t.Run("the client asked for gzip; MLflow was asked for identity", func(t *testing.T) {
		var seen string
		set(func(w http.ResponseWriter, r *http.Request) bool {
			seen = r.Header.Get("Accept-Encoding")
			return false
		})
		resp, _ := e.do(t, "alice", "GET", path, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, seen)
	})
	t.Run("the upstream resets mid-body: the client gets no row", func(t *testing.T) {
		set(func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(full)))
			_, _ = w.Write(full[:100])
			panic(http.ErrAbortHandler)
		})
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.front.URL+path, nil)
		req.Host = hostFiltered
		req.Header.Set("Authorization", "Bearer "+e.h.tokens["alice"])
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Error(t, rerr, "the stream must break, not end with a partial answer: %s", b)
			assert.NotContains(t, string(b), "exp-002")
		}
	})
	t.Run("store outage in the middle of a response", func(t *testing.T) {
		// The check's grants are cached; the response's rows are not.
		set(func(w http.ResponseWriter, r *http.Request) bool {
			require.NoError(t, e.h.exec(t.Context(), `ALTER TABLE experiment_permissions RENAME TO experiment_permissions_gone`))
			return false
		})
		t.Cleanup(func() {
			// Not t.Context(): it is cancelled before cleanups run, and the
			// table must be back for the subtests that follow.
			assert.NoError(t, e.h.exec(context.Background(), `ALTER TABLE experiment_permissions_gone RENAME TO experiment_permissions`))
		})
		resp, out := e.do(t, "gina", "GET", "/api/2.0/mlflow/experiments/search?max_results=1000", nil)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(out))
		assert.Equal(t, "unavailable", resp.Header.Get("x-authz-reason"))
		assertMLflowError(t, out, "TEMPORARILY_UNAVAILABLE", "unavailable")
	})
	t.Run("an unfiltered route skips the filter entirely", func(t *testing.T) {
		set(func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "not JSON and nobody minds")
			return true
		})
		resp, out := e.do(t, "alice", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=7", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, string(out))
		assert.Equal(t, "not JSON and nobody minds", string(out))
	})
}

// TestFilterInWorkspace: with workspaces on, listing rows are judged with
// the grants of the workspace the request names, as MLflow's after-request
// filters judge them there: registered-model rows of that workspace, the
// workspace-wide grant, and no group row (the group tables key models by
// name only, so their rows are default's).
func TestFilterInWorkspace(t *testing.T) {
	doc := strings.Replace(filterConfig, "      ext_proc_filter: true\n", "      ext_proc_filter: true\n      workspaces: true\n", 1)
	require.NotEqual(t, filterConfig, doc)
	var models listing
	for _, l := range listings {
		if l.name == "registered models" {
			models = l
		}
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			e := startFilterWith(t, b, 0, doc,
				`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) VALUES ('model-013', 1, 'READ', 'team-b')`,
				`INSERT INTO workspace_permissions (workspace, user_id, permission) VALUES ('team-b', 2, 'READ')`)
			all := want("carol", datasetSize)
			for _, tc := range []struct {
				workspace, user string
				want            []int
			}{
				{"", "alice", []int{7, 42, 99}},
				{"team-b", "alice", []int{13}},
				{"team-b", "bob", all},
				{"", "bob", []int{42, 55}},
				{"team-b", "gina", []int{}},
				{"team-b", "mallory", []int{}},
				{"team-b", "carol", all},
			} {
				t.Run(cmp.Or(tc.workspace, "default")+"/"+tc.user, func(t *testing.T) {
					e.workspace = tc.workspace
					got, _ := e.collect(t, tc.user, models, 40)
					slices.Sort(got)
					assert.Equal(t, tc.want, append([]int{}, got...))
				})
			}
			e.workspace = "Not_A_Name"
			resp, out := e.do(t, "alice", models.method, models.path+pageQuery(10, ""), nil)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, string(out))
			assert.Contains(t, string(out), "invalid_workspace")

			// The workspace list shows the workspaces each caller sees:
			// bob's READ row on team-b; alice's grant on one of team-b's
			// models is not a workspace grant.
			e.workspace = ""
			for user, want := range map[string][]string{
				"alice": {}, "bob": {"team-b"}, "mallory": {}, "carol": {"default", "team-b", "team-c"}, "dave": {"default", "team-b", "team-c"},
			} {
				for _, path := range []string{"/api/3.0/mlflow/workspaces", "/ajax-api/3.0/mlflow/workspaces"} {
					resp, out := e.do(t, user, "GET", path, nil)
					require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", user, path, out)
					var page struct {
						Workspaces []struct{ Name string } `json:"workspaces"`
					}
					require.NoError(t, json.Unmarshal(out, &page), string(out))
					got := []string{}
					for _, w := range page.Workspaces {
						got = append(got, w.Name)
					}
					assert.Equal(t, want, got, "%s %s", user, path)
				}
			}
		})
	}
}
