package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// levelUsers hold exactly one permission level on every resource the probes
// name: experiment 1 (and so its runs, traces, logged models, jobs, issues
// and datasets), registered model fraud-model, scorer scorer-one of
// experiment 1, and the gateway secret, endpoint and model definition.
// lvl-none holds explicit NO_PERMISSIONS rows.
var levelUsers = map[store.Permission]string{
	store.NoPermissions: "lvl-none",
	store.Read:          "lvl-read",
	store.Use:           "lvl-use",
	store.Edit:          "lvl-edit",
	store.Manage:        "lvl-manage",
}

// allRoutesSeed is the seed TestAllMLflowRoutes adds to the harness's.
func allRoutesSeed() []string {
	s := []string{
		`INSERT INTO jobs (id, creation_time, job_name, params, status, last_update_time) VALUES
			('` + job1 + `', 1, 'optimize_prompts', '{"experiment_id": "1"}', 0, 1)`,
		`INSERT INTO issues (issue_id, experiment_id, name) VALUES ('` + issue1 + `', 1, 'hallucination')`,
		`INSERT INTO scorers (experiment_id, scorer_name, scorer_id) VALUES (1, '` + scorer1 + `', '` + scorerID1 + `')`,
		`INSERT INTO online_scoring_configs (online_scoring_config_id, scorer_id, sample_rate, experiment_id) VALUES ('osc-1', '` + scorerID1 + `', 1, 1)`,
		`INSERT INTO evaluation_datasets (dataset_id, name) VALUES ('` + dataset1 + `', 'golden')`,
		`INSERT INTO entity_associations (association_id, source_type, source_id, destination_type, destination_id) VALUES
			('as-1', 'EVALUATION_DATASET', '` + dataset1 + `', 'EXPERIMENT', '1')`,
	}
	perms := make([]store.Permission, 0, len(levelUsers))
	for p := range levelUsers {
		perms = append(perms, p)
	}
	sort.Slice(perms, func(i, j int) bool { return perms[i] < perms[j] })
	for i, p := range perms {
		id, name, perm := 100+i, levelUsers[p], p.String()
		s = append(s,
			fmt.Sprintf(`INSERT INTO users (id, username, is_admin) VALUES (%d, '%s', false)`, id, name),
			fmt.Sprintf(`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', %d, '%s')`, id, perm),
			fmt.Sprintf(`INSERT INTO registered_model_permissions (name, user_id, permission) VALUES ('%s', %d, '%s')`, model1, id, perm),
			fmt.Sprintf(`INSERT INTO scorer_permissions (experiment_id, scorer_name, user_id, permission) VALUES ('1', '%s', %d, '%s')`, scorer1, id, perm),
			fmt.Sprintf(`INSERT INTO gateway_secret_permissions (secret_id, user_id, permission) VALUES ('%s', %d, '%s')`, secret1, id, perm),
			fmt.Sprintf(`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('%s', %d, '%s')`, endpoint1, id, perm),
			fmt.Sprintf(`INSERT INTO gateway_model_definition_permissions (model_definition_id, user_id, permission) VALUES ('%s', %d, '%s')`, modelDef1, id, perm),
		)
	}
	return s
}

// startLevels starts the service on backend b with the harness seed plus
// allRoutesSeed, and tokens for the level users. Seeding happens before the
// first check, so no cache holds a decision from before it.
func startLevels(t *testing.T, b backend) *harness {
	t.Helper()
	h := startOn(t, b)
	for _, s := range allRoutesSeed() {
		require.NoError(t, h.exec(t.Context(), s), s)
	}
	h.mintLevelTokens(t)
	return h
}

// mintLevelTokens mints a token for each of levelUsers.
func (h *harness) mintLevelTokens(t *testing.T) {
	t.Helper()
	for _, name := range levelUsers {
		tok, err := h.iss.Token(devissuer.User{Username: name})
		require.NoError(t, err)
		h.tokens[name] = tok
	}
}

// mounts are the prefixes MLflow mounts routes at (the harness's MLflow has
// no --static-prefix). Which of them a row lives under is read back from
// the classifier, so a row gained or lost under a prefix is tested as is.
var mounts = []string{"/api/2.0", "/api/3.0", "/ajax-api/2.0", "/ajax-api/3.0", ""}

// routeCase is one request of the sweep: a route, a method, a mount and a
// probe, with the outcome the permission model requires.
type routeCase struct {
	name    string
	method  string
	target  string
	body    string
	headers map[string]string
	access  mlflow.Access
	perm    store.Permission
}

// denial is a caller who must be denied, with the status and reason.
type denial struct {
	who    string
	status int
	reason authz.Reason
}

// callers derives the callers from the permission model: an identity with
// exactly what the row requires is allowed; one level less (or a non-admin,
// or anonymous) is denied.
func callers(access mlflow.Access, perm store.Permission) (allow []string, deny []denial) {
	anon := denial{anonymous, http.StatusUnauthorized, authz.ReasonUnauthenticated}
	switch access {
	case mlflow.AccessAnyone:
		return []string{anonymous, "mallory"}, nil
	case mlflow.AccessAuthenticated, mlflow.AccessCreate, mlflow.AccessWorkspace:
		// No create_groups configured: any verified caller may create;
		// workspaces are off: any verified caller sees workspace default.
		return []string{"mallory"}, []denial{anon}
	case mlflow.AccessSelf:
		// The probes name mallory; carol is an admin by users.is_admin.
		return []string{"mallory", "carol"}, []denial{{"alice", http.StatusForbidden, authz.ReasonAdminRequired}, anon}
	case mlflow.AccessAdmin:
		// carol by users.is_admin, dave by the admin group in his token.
		return []string{"carol", "dave"}, []denial{{"alice", http.StatusForbidden, authz.ReasonAdminRequired}, anon}
	case mlflow.AccessResource:
		return []string{levelUsers[perm], "carol", "dave"},
			[]denial{{levelUsers[perm-1], http.StatusForbidden, authz.ReasonPermissionDenied}, anon}
	}
	return nil, nil
}

// fillPath expands a route pattern with probePathVars.
func fillPath(pattern string) (string, error) {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		if !strings.HasPrefix(s, "{") {
			continue
		}
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", fmt.Errorf("bad segment %q", s)
		}
		name := strings.TrimSuffix(s[1:end], "...")
		v, ok := probePathVars[name]
		if !ok {
			return "", fmt.Errorf("no value for path variable {%s}: add one to probePathVars", name)
		}
		segs[i] = v + s[end+1:]
	}
	return strings.Join(segs, "/"), nil
}

// render turns p into the query and body of a request with method, as an
// MLflow client sends a proto endpoint's fields.
func (p probe) render(method string) (query, body string) {
	query, body = p.query, p.body
	if len(p.params) > 0 {
		if method == http.MethodGet {
			q := url.Values{}
			for k, v := range p.params {
				switch v := v.(type) {
				case string:
					q.Add(k, v)
				case []string:
					q[k] = append(q[k], v...)
				}
			}
			query = joinQuery(query, q.Encode())
		} else {
			b, err := json.Marshal(p.params)
			if err != nil {
				panic(err)
			}
			body = string(b)
		}
	}
	if body == "" && (method == http.MethodPost || method == http.MethodPatch || method == http.MethodPut) {
		body = "{}"
	}
	return query, body
}

func joinQuery(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "&" + b
}

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// routeCases builds the sweep from the route table: every row, every
// method, every mount the row lives under, every probe. A row or method
// without a probe, a probe for no row, a probe that reaches its row under
// no mount, or one the classifier refuses before any permission check is
// an error, so the table cannot grow or drift untested.
func routeCases(t *testing.T) []routeCase {
	t.Helper()
	cls := mlflow.NewClassifier("", mlflow.StaticPrefixAPI)
	var cases []routeCase
	names := map[string]bool{}
	for _, r := range cls.Routes() {
		names[r.Name] = true
		ps, ok := probes[r.Name]
		if !ok {
			t.Errorf("route %s %v %s has no request builder in probes", r.Name, r.Methods, r.Path)
			continue
		}
		path, err := fillPath(r.Path)
		if err != nil {
			t.Errorf("route %s: %v", r.Name, err)
			continue
		}
		for _, method := range r.Methods {
			n := 0
			for _, p := range ps {
				if p.method != "" && p.method != method {
					continue
				}
				mounted := 0
				for _, m := range mounts {
					query, body := p.render(method)
					target := m + path
					if query != "" {
						target += "?" + query
					}
					c := routeCase{method: method, target: target, body: body, headers: p.headers, access: r.Access, perm: r.Permission}
					if p.access != 0 {
						c.access = p.access
					}
					if p.perm != 0 {
						c.perm = p.perm
					}
					c.name = r.Name + "/" + method + " " + m + path
					if p.name != "" {
						c.name += " (" + p.name + ")"
					}
					op, d := classifyLocally(t, cls, c)
					if op.Route != r {
						// Not mounted here: nothing, or the twin row of
						// the other API version (v2 and v3 traces share
						// paths).
						continue
					}
					mounted++
					if d != nil {
						t.Errorf("%s: the probe is refused before any permission check: %d %s (%s)", c.name, d.Status, d.Reason, d.Message)
						continue
					}
					if op.Access != c.access {
						t.Errorf("%s: classified as %s, the probe expects %s", c.name, op.Access, c.access)
						continue
					}
					cases = append(cases, c)
				}
				if mounted == 0 {
					t.Errorf("route %s %s: probe %q reaches it under no mount prefix", r.Name, method, p.name)
				}
				n++
			}
			if n == 0 {
				t.Errorf("route %s has no request builder for method %s", r.Name, method)
			}
		}
	}
	for name := range probes {
		if !names[name] {
			t.Errorf("probes has a builder for %s, which is no route of the table", name)
		}
	}
	return cases
}

// classifyLocally runs the product's classifier on c, to find which row and
// mount it reaches before sending it through the service.
func classifyLocally(t *testing.T, cls *mlflow.Classifier, c routeCase) (mlflow.Operation, *authz.Decision) {
	t.Helper()
	headers := map[string]string{}
	for k, v := range c.headers {
		headers[k] = v
	}
	var body []byte
	if c.body != "" {
		body = []byte(c.body)
		switch {
		case headers["content-type"] != "":
			// The probe says, as h.as lets it.
		case strings.HasPrefix(c.body, "{"):
			headers["content-type"] = "application/json"
		default:
			headers["content-type"] = "application/octet-stream"
		}
	}
	req, d := authz.NewRequest(authz.RequestInput{Method: c.method, Host: hostMLflow, Target: c.target, Headers: headers, Body: body})
	require.Nil(t, d, "%s: NewRequest refused %s", c.name, c.target)
	return cls.Classify(req)
}

// TestRouteProbesCoverTable fails when a route is added to the table without
// a request builder, or a builder misses its route, without a database.
func TestRouteProbesCoverTable(t *testing.T) {
	cases := routeCases(t)
	assert.Greater(t, len(cases), len(mlflow.NewClassifier("", mlflow.StaticPrefixAPI).Routes()))
}

// TestAllMLflowRoutes sends, for every row of the MLflow route table under
// every prefix it is mounted at, a valid request as the identities the
// permission model allows and as those it denies, end to end over gRPC, on
// PostgreSQL and on SQLite.
func TestAllMLflowRoutes(t *testing.T) {
	cases := routeCases(t)
	if t.Failed() {
		return
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			sweep(t, startLevels(t, b), cases)
		})
	}
}

// sweep sends every case as the callers the permission model allows and
// as those it denies, and checks each decision.
func sweep(t *testing.T, h *harness, cases []routeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			allow, deny := callers(c.access, c.perm)
			require.NotEmpty(t, allow, "no callers for access %s", c.access)
			for _, who := range allow {
				res := h.check(t, h.as(hostMLflow, who, c.method, c.target, c.body, c.headers))
				assert.True(t, res.Allowed, "%s: want ALLOW, got %s", who, res)
			}
			for _, d := range deny {
				res := h.check(t, h.as(hostMLflow, d.who, c.method, c.target, c.body, c.headers))
				if assert.False(t, res.Allowed, "%s: want DENY %d %s, got ALLOW", d.who, d.status, d.reason) {
					assert.Equal(t, d.status, res.Status, "%s: status of %s", d.who, res)
					assert.Equal(t, string(d.reason), res.Reason, "%s: reason of %s", d.who, res)
				}
				if d.status == http.StatusUnauthorized {
					assertChallenge(t, res)
				}
			}
		})
	}
}

// TestMLflowRoutesEveryNeed covers the rows that need more than one
// permission: a caller with MANAGE on the first id is still denied when
// one more id of the same request is out of reach (experiment 3, or a
// gateway object without a grant), and an admin is allowed. Without it a
// row that checked only its first id would pass the sweep above.
func TestMLflowRoutesEveryNeed(t *testing.T) {
	manager := levelUsers[store.Manage]
	tests := []struct {
		name, method, target, body string
	}{
		{"LinkTracesToRun foreign trace", "POST", "/api/2.0/mlflow/traces/link-to-run",
			`{"run_id":"` + runA + `","trace_ids":["` + trace1 + `","` + trace3 + `"]}`},
		{"LinkTracesToRun foreign run", "POST", "/api/2.0/mlflow/traces/link-to-run",
			`{"run_id":"` + runC + `","trace_ids":["` + trace1 + `"]}`},
		{"CreateModelVersion foreign source run", "POST", "/api/2.0/mlflow/model-versions/create",
			`{"name":"` + model1 + `","run_id":"` + runC + `"}`},
		{"AddDatasetToExperiments foreign experiment", "POST", "/api/3.0/mlflow/datasets/" + dataset1 + "/add-experiments",
			`{"experiment_ids":["1","3"]}`},
		{"RemoveDatasetFromExperiments foreign experiment", "POST", "/ajax-api/3.0/mlflow/datasets/" + dataset1 + "/remove-experiments",
			`{"experiment_ids":["3"]}`},
		{"CreateGatewayEndpoint ungranted model definition", "POST", "/api/3.0/mlflow/gateway/endpoints/create",
			`{"name":"e","model_configs":[{"model_definition_id":"` + modelDef1 + `"},{"model_definition_id":"md-other"}]}`},
		{"UpdateGatewayEndpoint ungranted model definition", "POST", "/api/3.0/mlflow/gateway/endpoints/update",
			`{"endpoint_id":"` + endpoint1 + `","model_configs":[{"model_definition_id":"md-other"}]}`},
		{"AttachModelToGatewayEndpoint ungranted model definition", "POST", "/api/3.0/mlflow/gateway/endpoints/models/attach",
			`{"endpoint_id":"` + endpoint1 + `","model_config":{"model_definition_id":"md-other"}}`},
		{"UpdateGatewayModelDefinition ungranted secret", "POST", "/api/3.0/mlflow/gateway/model-definitions/update",
			`{"model_definition_id":"` + modelDef1 + `","secret_id":"sec-other"}`},
		{"SearchRuns foreign experiment", "POST", "/api/2.0/mlflow/runs/search", `{"experiment_ids":["1","3"]}`},
		{"SearchTracesV3 foreign location", "POST", "/api/3.0/mlflow/traces/search",
			`{"locations":[{"mlflow_experiment":{"experiment_id":"1"}},{"mlflow_experiment":{"experiment_id":"3"}}]}`},
		{"BatchGetTraces foreign trace", "GET", "/api/3.0/mlflow/traces/batchGet?trace_ids=" + trace1 + "&trace_ids=" + trace3, ""},
		{"GetMetricHistoryBulk foreign run", "GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=" + runA + "&run_id=" + runC + "&metric_key=loss", ""},
		{"GetMetricHistoryBulkInterval foreign run", "GET", "/api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids=" + runA + "&run_ids=" + runC, ""},
		{"GraphQL two fields, one foreign", "POST", "/graphql",
			`{"query":"query { a: mlflowGetRun(input: {runId: \"` + runA + `\"}) { run { info { runId } } } b: mlflowGetRun(input: {runId: \"` + runC + `\"}) { run { info { runId } } } }"}`},
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startLevels(t, b)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					res := h.check(t, h.as(hostMLflow, manager, tt.method, tt.target, tt.body, nil))
					requireDecision(t, res, false, http.StatusForbidden, string(authz.ReasonPermissionDenied))
					res = h.check(t, h.as(hostMLflow, "carol", tt.method, tt.target, tt.body, nil))
					requireDecision(t, res, true, 0, "")
				})
			}
		})
	}
}

// TestMLflowRoutesUnknownIDs sends an id of every lookup kind that resolves
// to nothing: the request is denied before any grant could apply (A.1: an
// id that cannot be resolved is never given the default permission), on
// both backends, even to a caller with MANAGE everywhere it has a row.
func TestMLflowRoutesUnknownIDs(t *testing.T) {
	manager := levelUsers[store.Manage]
	tests := []struct {
		name, method, target, body string
	}{
		{"run", "GET", "/api/2.0/mlflow/runs/get?run_id=ffffffffffffffffffffffffffffffff", ""},
		{"trace", "GET", "/api/3.0/mlflow/traces/tr-ffffffffffffffffffffffffffffffff", ""},
		{"logged model", "GET", "/api/2.0/mlflow/logged-models/m-ffffffffffffffffffffffffffffffff", ""},
		{"experiment id", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=999", ""},
		{"experiment name", "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=no-such", ""},
		{"job", "GET", "/api/3.0/mlflow/prompt-optimization/jobs/job-ffff", ""},
		{"issue", "GET", "/api/3.0/mlflow/issues/iss-ffff", ""},
		{"dataset", "GET", "/api/3.0/mlflow/datasets/d-ffff", ""},
		{"gateway endpoint name", "POST", "/gateway/no-such-ep/mlflow/invocations", `{"messages":[]}`},
		{"artifact of unknown experiment", "GET", "/api/2.0/mlflow-artifacts/artifacts/999/" + runA + "/artifacts/x", ""},
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startLevels(t, b)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					res := h.check(t, h.as(hostMLflow, manager, tt.method, tt.target, tt.body, nil))
					requireDecision(t, res, false, http.StatusNotFound, string(authz.ReasonResourceNotFound))
				})
			}
		})
	}
}
