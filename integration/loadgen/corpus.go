package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// Hosts and peers the corpus addresses; the benchmark configuration must
// route them to an MLflow app (NO_PERMISSIONS default, CollectorPrincipal as
// trace writer) and to the Phoenix and Kiali examples' rules.
const (
	HostMLflow         = "mlflow.bench"
	HostPhoenix        = "phoenix.bench"
	HostKiali          = "kiali.bench"
	CollectorPrincipal = "spiffe://cluster.local/ns/observability/sa/otel-collector"
)

// Dataset is a synthetic MLflow installation. Every row is a function of its
// index, so the SQL that seeds it and the corpus that calls it agree without
// reading the database back:
//
//   - user u (0-based, users.id u+1) is "user%05d" and in group team-(u mod Groups);
//   - run r is in experiment (r mod Experiments)+1, with run_uuid "a%031x";
//   - grant k gives user k mod Users permission READ, EDIT or MANAGE (k mod 3) on
//     experiment ((u·37 + k div Users) mod Experiments)+1, so each user holds
//     Grants/Users grants on consecutive experiments;
//   - each group has READ on groupGrants experiments of its own.
type Dataset struct {
	Users, Experiments, Runs, Grants int
	// Groups is the number of groups (default 20).
	Groups int
}

const groupGrants = 50

// Scaled returns the reference dataset (1,000 users, 10,000 experiments,
// 100,000 runs and 100,000 grants) scaled by f. Grants per user and runs per
// experiment stay the same at every scale, so the corpus does the same work
// and only the table sizes change.
func Scaled(f float64) Dataset {
	n := func(base float64) int { return max(int(base*f), 1) }
	return Dataset{Users: n(1000), Experiments: n(10000), Runs: n(100000), Grants: n(100000), Groups: 20}
}

func (d Dataset) groups() int { return max(d.Groups, 1) }

// Username is user u's name.
func (d Dataset) Username(u int) string { return fmt.Sprintf("user%05d", u) }

// RunID is run r's run_uuid.
func (d Dataset) RunID(r int) string { return fmt.Sprintf("a%031x", r) }

// SeedSQL is the PostgreSQL that fills MLflow's tracking and auth tables
// (created by storetest.CreateTrackingSchema and postgres.Migrate) with d,
// in bulk with generate_series.
func (d Dataset) SeedSQL() []string {
	U, E, R, G, GR := d.Users, d.Experiments, d.Runs, d.Grants, d.groups()
	return []string{
		fmt.Sprintf(`INSERT INTO experiments (experiment_id, name, lifecycle_stage, artifact_location)
			SELECT e, 'exp-' || e, 'active', 's3://mlflow/' || e FROM generate_series(1, %d) e`, E),
		fmt.Sprintf(`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status, user_id)
			SELECT 'a' || lpad(to_hex(r), 31, '0'), r %% %d + 1, 'active', 'FINISHED', 'user' || lpad((r %% %d)::text, 5, '0')
			FROM generate_series(0, %d) r`, E, U, R-1),
		fmt.Sprintf(`INSERT INTO users (id, username, is_admin)
			SELECT u + 1, 'user' || lpad(u::text, 5, '0'), false FROM generate_series(0, %d) u`, U-1),
		fmt.Sprintf(`INSERT INTO groups (id, group_name) SELECT g + 1, 'team-' || g FROM generate_series(0, %d) g`, GR-1),
		fmt.Sprintf(`INSERT INTO experiment_permissions (experiment_id, user_id, permission)
			SELECT (((k %% %[1]d) * 37 + k / %[1]d) %% %[2]d + 1)::text, k %% %[1]d + 1,
				(ARRAY['READ','EDIT','MANAGE'])[k %% 3 + 1]
			FROM generate_series(0, %[3]d) k`, U, E, G-1),
		fmt.Sprintf(`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission)
			SELECT ((g * 211 + j) %% %d + 1)::text, g + 1, 'READ'
			FROM generate_series(0, %d) g, generate_series(0, %d) j`, E, GR-1, min(groupGrants, E)-1),
		`ANALYZE`,
	}
}

// userGrant is user u's own permission on experiment e (0-based), or "".
func (d Dataset) userGrant(u, e int) string {
	j := ((e-u*37)%d.Experiments + d.Experiments) % d.Experiments
	k := j*d.Users + u
	if j >= (d.Grants+d.Users-1)/d.Users || k >= d.Grants {
		return ""
	}
	return [...]string{"READ", "EDIT", "MANAGE"}[k%3]
}

// groupReads reports whether user u's group has READ on experiment e.
func (d Dataset) groupReads(u, e int) bool {
	g := u % d.groups()
	j := ((e-g*211)%d.Experiments + d.Experiments) % d.Experiments
	return j < min(groupGrants, d.Experiments)
}

// Item is one call of the corpus with the decision the service must reach.
type Item struct {
	Call  extauthz.Call
	Kind  string
	Allow bool
	// Status and Reason are the deny's HTTP status and reason code.
	Status int
	Reason string
}

// Corpus kinds, with their share of the corpus in percent.
var kinds = []struct {
	name   string
	weight int
}{
	{"python/experiments-get", 12},
	{"python/runs-get", 14},
	{"python/log-batch", 18},
	{"python/metric-history", 10},
	{"browser/runs-search", 10},
	{"browser/graphql", 5},
	{"browser/artifact", 5},
	{"otel/v1-traces", 8},
	{"phoenix", 10},
	{"kiali", 8},
}

// Corpus returns n calls against d as Istio would send them, drawn with a
// fixed seed. Callers are up to activeUsers users spread over the user ids,
// most calls coming from a hot tenth of them; resources are spread over
// each caller's grants, so caches see both hits and misses. About 10% are
// denied: a user on an experiment they hold no grant on, an anonymous call,
// a Phoenix or Kiali user outside the app's group. token mints the bearer
// token for a user; it is called once per distinct user.
func (d Dataset) Corpus(n int, seed uint64, activeUsers int, token func(devissuer.User) (string, error)) ([]Item, error) {
	if d.Users < 1 || d.Grants < 3*d.Users || d.Experiments < 2*(d.Grants/d.Users+groupGrants) || d.Runs < d.Experiments {
		return nil, fmt.Errorf("loadgen: dataset %+v too small: need ≥3 grants per user, experiments to spare for denies, ≥1 run per experiment", d)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	active := min(activeUsers, d.Users)
	tokens := map[int]string{}
	bearer := func(u int) (string, error) {
		if t, ok := tokens[u]; ok {
			return t, nil
		}
		groups := []string{"/team-" + strconv.Itoa(u%d.groups())}
		// One user in ten is outside Phoenix and Kiali.
		if u%10 != 3 {
			groups = append(groups, "/phoenix-users", "/kiali-users")
		}
		t, err := token(devissuer.User{Username: d.Username(u), Groups: groups})
		if err != nil {
			return "", fmt.Errorf("loadgen: token for %s: %w", d.Username(u), err)
		}
		tokens[u] = "Bearer " + t
		return tokens[u], nil
	}
	pickUser := func() int {
		i := rng.IntN(active)
		if rng.IntN(10) < 7 {
			i = rng.IntN(max(active/10, 1))
		}
		return i * (d.Users / active)
	}
	perGrant := max(d.Grants/d.Users, 1)
	// allowedExp returns an experiment where u holds at least want.
	allowedExp := func(u int, write bool) int {
		for {
			e := (u*37 + rng.IntN(perGrant)) % d.Experiments
			if g := d.userGrant(u, e); g != "" && (!write || g != "READ") {
				return e
			}
		}
	}
	deniedExp := func(u int) int {
		for {
			e := rng.IntN(d.Experiments)
			if d.userGrant(u, e) == "" && !d.groupReads(u, e) {
				return e
			}
		}
	}
	runIn := func(e int) string {
		return d.RunID(e + d.Experiments*rng.IntN(max(d.Runs/d.Experiments, 1)))
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}

	items := make([]Item, 0, n)
	for i := range n {
		w := rng.IntN(total)
		kind := kinds[0].name
		for _, k := range kinds {
			if w < k.weight {
				kind = k.name
				break
			}
			w -= k.weight
		}
		u := pickUser()
		deny := rng.IntN(100) < 8 // plus anonymous and group outsiders below
		it := Item{Kind: kind, Allow: !deny}
		c := extauthz.Call{Host: HostMLflow, Method: "GET", Headers: map[string]string{},
			RequestID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, seed)}
		python := func() {
			c.Headers["user-agent"] = "mlflow-python-client/3.5.0"
			c.Headers["accept-encoding"] = "gzip, deflate"
			c.Headers["accept"] = "*/*"
		}
		browser := func() {
			c.Headers["user-agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
			c.Headers["accept"] = "application/json, text/plain, */*"
			c.Headers["referer"] = "https://" + HostMLflow + "/"
			c.Headers["cookie"] = "_ga=GA1.1.123; mlflow-request-header-Accept=1"
			c.Headers["sec-fetch-mode"] = "cors"
		}
		exp := func(write bool) int {
			if deny {
				return deniedExp(u)
			}
			return allowedExp(u, write)
		}
		body := func(s string) {
			c.Method = "POST"
			c.Body = []byte(s)
			c.Headers["content-type"] = "application/json"
		}
		switch kind {
		case "python/experiments-get":
			python()
			c.Target = "/api/2.0/mlflow/experiments/get?experiment_id=" + strconv.Itoa(exp(false)+1)
		case "python/runs-get":
			python()
			c.Target = "/api/2.0/mlflow/runs/get?run_id=" + runIn(exp(false))
		case "python/log-batch":
			python()
			c.Target = "/api/2.0/mlflow/runs/log-batch"
			run := runIn(exp(true))
			var b strings.Builder
			fmt.Fprintf(&b, `{"run_id": "%s", "metrics": [`, run)
			for s := range 20 {
				if s > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, `{"key": "loss", "value": %.6f, "timestamp": %d, "step": %d}`, rng.Float64(), 1764400000000+int64(s), s)
			}
			b.WriteString(`], "params": [], "tags": [{"key": "mlflow.source.name", "value": "train.py"}]}`)
			body(b.String())
		case "python/metric-history":
			python()
			c.Target = "/api/2.0/mlflow/metrics/get-history?run_uuid=" + runIn(exp(false)) + "&metric_key=loss&max_results=25000"
		case "browser/runs-search":
			browser()
			c.Target = "/ajax-api/2.0/mlflow/runs/search"
			body(fmt.Sprintf(`{"experiment_ids": ["%d"], "filter": "", "run_view_type": "ACTIVE_ONLY", "max_results": 100, "order_by": ["attributes.start_time DESC"]}`, exp(false)+1))
		case "browser/graphql":
			browser()
			c.Target = "/graphql"
			if rng.IntN(2) == 0 {
				body(fmt.Sprintf(`{"operationName": "MlflowGetExperimentQuery", "query": "query MlflowGetExperimentQuery($input: MlflowGetExperimentInput) { mlflowGetExperiment(input: $input) { experiment { experimentId name } } }", "variables": {"input": {"experimentId": "%d"}}}`, exp(false)+1))
			} else {
				body(fmt.Sprintf(`{"query": "{ mlflowGetRun(input: {runId: \"%s\"}) { run { info { runUuid status } } } }"}`, runIn(exp(false))))
			}
		case "browser/artifact":
			browser()
			c.Target = "/get-artifact?path=" + url.QueryEscape("model/MLmodel") + "&run_uuid=" + runIn(exp(false))
		case "otel/v1-traces":
			// The collector exports with its mesh identity only; the trace
			// writer exception allows it whatever the experiment.
			it.Allow = true
			c.Method, c.Target, c.Principal = "POST", "/v1/traces", CollectorPrincipal
			c.Headers["content-type"] = "application/x-protobuf"
			c.Headers["x-mlflow-experiment-id"] = strconv.Itoa(rng.IntN(d.Experiments) + 1)
			c.Headers["user-agent"] = "OpenTelemetry Collector Contrib/0.115.0"
			c.Body = make([]byte, 2048+rng.IntN(4096))
			for j := range c.Body {
				c.Body[j] = byte(rng.IntN(256))
			}
			items = append(items, it.with(c))
			continue
		case "phoenix":
			c.Host = HostPhoenix
			c.Headers["referer"] = "https://" + HostPhoenix + "/projects"
			if rng.IntN(2) == 0 {
				c.Target = "/v1/projects?limit=100"
			} else {
				c.Target = "/graphql"
				body(`{"query": "query ProjectsPageQuery { projects { edges { node { id name traceCount } } } }", "variables": {}}`)
			}
		case "kiali":
			c.Host = HostKiali
			c.Target = "/kiali/api/namespaces/ml-pipelines/workloads?health=true&rateInterval=60s"
		}
		if !it.Allow {
			it.Status, it.Reason = 403, "permission_denied"
		}
		if kind == "phoenix" || kind == "kiali" {
			// Their denies are users outside the app's group.
			it.Allow = u%10 != 3
			it.Status, it.Reason = 403, "forbidden"
			if it.Allow {
				it.Status, it.Reason = 0, ""
			}
		}
		tok, err := bearer(u)
		if err != nil {
			return nil, err
		}
		if rng.IntN(100) == 0 {
			it.Allow, it.Status, it.Reason = false, 401, "unauthenticated"
		} else {
			c.Headers["authorization"] = tok
		}
		items = append(items, it.with(c))
	}
	return items, nil
}

func (it Item) with(c extauthz.Call) Item {
	it.Call = c
	return it
}

// Calls returns the calls of items.
func Calls(items []Item) []extauthz.Call {
	calls := make([]extauthz.Call, len(items))
	for i, it := range items {
		calls[i] = it.Call
	}
	return calls
}
