package integration

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/server"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// Hosts of the applications in testConfig. All three are MLflow apps on the
// same store; they differ only in default permission and dry-run.
const (
	hostMLflow = "mlflow.test"      // default NO_PERMISSIONS
	hostOpen   = "mlflow-open.test" // default READ, Basic off
	hostDryRun = "mlflow-dry.test"  // dry_run, default NO_PERMISSIONS
)

// mTLS peers.
const (
	principalCollector = "spiffe://cluster.local/ns/observability/sa/otel-collector"
	principalTrainer   = "spiffe://cluster.local/ns/ml-pipelines/sa/trainer"
	principalOther     = "spiffe://cluster.local/ns/default/sa/someone"
)

// Seeded ids. Runs, traces and logged models belong to the experiment named
// in the comment.
const (
	runA  = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01" // experiment 1
	runA2 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02" // experiment 1
	runB  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb01" // experiment 2
	runC  = "cccccccccccccccccccccccccccccc01" // experiment 3
	// runCold is in experiment 1 and is only ever looked up by the store
	// outage test, so no cache holds it.
	runCold = "dddddddddddddddddddddddddddddd01"
	trace1  = "tr-0123456789abcdef0123456789abcdef" // experiment 1
	trace3  = "tr-3333333333333333333333333333cccc" // experiment 3
	lm1     = "m-11111111111111111111111111111111"  // experiment 1
	lm3     = "m-33333333333333333333333333333333"  // experiment 3
)

// storePostgres and storeSQLite are the store sections of testConfig for
// each backend; startOn swaps one for the other.
const (
	storePostgres = `store:
  driver: postgres
  postgres:
    tracking_url: "${DATABASE_URL}"
    statement_timeout: 1s
    connect_timeout: 1s
`
	storeSQLite = `store:
  driver: sqlite
  sqlite:
    tracking_path: "${SQLITE_PATH}"
    poll_interval: 50ms
`
)

// testConfig is the configuration every test runs, in the file format an
// operator writes.
const testConfig = `
server:
  grpc_addr: 127.0.0.1:0
  http_addr: 127.0.0.1:0
  check_timeout: 2s
  shutdown_grace: 1s
log:
  level: info
issuers:
  - name: dev
    issuer: "${ISSUER}"
    audiences: [mlflow]
    admin_groups: [mlflow-admin]
spiffe:
  trust_domain: cluster.local
  workloads:
    - id: ns/ml-pipelines/sa/trainer
      username: trainer-bot
` + storePostgres + `apps:
  - name: mlflow
    type: mlflow
    hosts: [` + hostMLflow + `]
    trace_writers: [` + principalCollector + `]
    mlflow:
      default_permission: NO_PERMISSIONS
  - name: mlflow-open
    type: mlflow
    basic: false
    hosts: [` + hostOpen + `]
    mlflow:
      default_permission: READ
  - name: mlflow-dry
    type: mlflow
    dry_run: true
    hosts: [` + hostDryRun + `]
    mlflow:
      default_permission: NO_PERMISSIONS
`

// seed is what MLflow and an admin with psql would have written: tracking
// rows, users, a group and grants. Users: alice (MANAGE on experiment 1 and
// its model, USE on the chat-ep gateway endpoint), bob (READ on experiment 1,
// group team-a READ on experiment 2), carol (users.is_admin), erin (explicit
// NO_PERMISSIONS on experiment 2 despite team-a), trainer-bot (EDIT on 2),
// mallory (no grant at all).
var seed = []string{
	`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES
		(0, 'Default', 'active'), (1, 'fraud-detection', 'active'),
		(2, 'churn-model', 'active'), (3, 'secret-research', 'active')`,
	`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status, user_id) VALUES
		('` + runA + `', 1, 'active', 'RUNNING', 'alice'),
		('` + runA2 + `', 1, 'active', 'FINISHED', 'alice'),
		('` + runB + `', 2, 'active', 'RUNNING', 'bob'),
		('` + runC + `', 3, 'active', 'RUNNING', 'carol'),
		('` + runCold + `', 1, 'active', 'RUNNING', 'alice')`,
	`INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status) VALUES
		('` + trace1 + `', 1, 1700000000000, 'OK'), ('` + trace3 + `', 3, 1700000000000, 'OK')`,
	`INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms,
		last_updated_timestamp_ms, status, lifecycle_stage) VALUES
		('` + lm1 + `', 1, 'clf', 's3://b/1', 1, 1, 1, 'active'),
		('` + lm3 + `', 3, 'clf', 's3://b/3', 1, 1, 1, 'active')`,
	`INSERT INTO registered_models (name) VALUES ('fraud-model'), ('secret-model')`,
	`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at) VALUES
		('ep-1', 'chat-ep', 1, 1), ('ep-2', 'secret-ep', 1, 1)`,
	`INSERT INTO users (id, username, is_admin) VALUES
		(1, 'alice', false), (2, 'bob', false), (3, 'carol', true), (4, 'trainer-bot', false),
		(5, 'erin', false), (6, 'mallory', false), (7, 'frank', false)`,
	`INSERT INTO groups (id, group_name) VALUES (1, 'team-a')`,
	`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES
		('1', 1, 'MANAGE'), ('1', 2, 'READ'), ('2', 4, 'EDIT'), ('2', 5, 'NO_PERMISSIONS')`,
	`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES ('2', 1, 'READ')`,
	`INSERT INTO registered_model_permissions (name, user_id, permission) VALUES ('fraud-model', 1, 'MANAGE')`,
	`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('ep-1', 1, 'USE')`,
}

// users are the token holders; tokens map them to bearer tokens.
var users = []devissuer.User{
	{Username: "alice"},
	{Username: "bob", Groups: []string{"/team-a"}},
	{Username: "carol"},
	{Username: "dave", Groups: []string{"/mlflow-admin"}}, // admin by token group, no users row
	{Username: "erin", Groups: []string{"/team-a"}},
	{Username: "gina", Groups: []string{"/team-a"}}, // no users row: only her group grants
	{Username: "mallory"},
	{Username: "frank"},
}

// harness is one running service with its database and issuer.
type harness struct {
	dbURL string // PostgreSQL only
	// exec runs one statement on a connection of its own, as psql or
	// MLflow would: never through the service's pool.
	exec   storetest.ExecFunc
	iss    *devissuer.Issuer
	run    *server.Running
	client authv3.AuthorizationClient
	tokens map[string]string
	logs   *storetest.LogBuffer
	env    map[string]string // ${…} values for the configuration
}

// backend is the store the service reads MLflow's tables from.
type backend string

// Backends the end-to-end tests run on.
const (
	backendPostgres backend = "postgres"
	backendSQLite   backend = "sqlite"
)

// backends lists every backend, for tests that must pass on each.
var backends = []backend{backendPostgres, backendSQLite}

// start seeds a fresh PostgreSQL database and starts the whole service on it.
func start(t *testing.T) *harness { return startOn(t, backendPostgres) }

// startOn seeds a fresh database of backend b and starts the whole service
// on it.
func startOn(t *testing.T, b backend) *harness { return startWith(t, b, startOptions{}) }

// startOptions change how startWith prepares the database and the
// configuration; the zero value is what startOn does.
type startOptions struct {
	// authSchema creates the auth tables first, as another tool would.
	authSchema func(ctx context.Context, d store.Dialect, exec storetest.ExecFunc) error
	// doc replaces testConfig (written for PostgreSQL; the store section
	// is swapped for SQLite).
	doc string
	// noMigrate skips `mlflow-authz migrate`.
	noMigrate bool
	// seed replaces the harness's seed.
	seed []string
	// config edits the configuration document.
	config func(doc string) string
	// tokenUsers replaces users: a token is minted for each.
	tokenUsers []devissuer.User
	// beforeStart runs after the seed, before the service opens the store
	// (which decides the auth layout then); migrate is `mlflow-authz
	// migrate` and query reads the database.
	beforeStart func(t *testing.T, h *harness, d store.Dialect, query storetest.QueryFunc, migrate func() error)
}

// startWith prepares a fresh database of backend b as opts says and starts
// the whole service on it.
func startWith(t *testing.T, b backend, opts startOptions) *harness {
	t.Helper()
	ctx := t.Context()
	h := &harness{tokens: map[string]string{}, logs: &storetest.LogBuffer{}, env: map[string]string{}}
	doc := cmp.Or(opts.doc, testConfig)
	tokenUsers := users
	if opts.tokenUsers != nil {
		tokenUsers = opts.tokenUsers
	}
	var d store.Dialect
	var migrate func() error
	var query storetest.QueryFunc
	switch b {
	case backendPostgres:
		d = store.PostgreSQL
		h.dbURL = storetest.Postgres(t)
		h.env["DATABASE_URL"] = h.dbURL
		h.exec = storetest.PostgresExec(t, h.dbURL)
		query = storetest.PostgresQuery(t, h.dbURL)
		migrate = func() error { return postgres.Migrate(ctx, h.dbURL) }
	case backendSQLite:
		// One file for tracking and auth, MLflow's embedded default.
		d = store.SQLite
		path := filepath.Join(t.TempDir(), "mlflow.db")
		h.env["SQLITE_PATH"] = path
		h.exec = storetest.SQLiteExec(t, path)
		query = storetest.SQLiteQuery(t, path)
		migrate = func() error { return sqlite.Migrate(ctx, path) }
		doc = strings.Replace(doc, storePostgres, storeSQLite, 1)
	default:
		t.Fatalf("integration: unknown backend %q", b)
	}
	if opts.authSchema != nil {
		require.NoError(t, opts.authSchema(ctx, d, h.exec))
	}
	if !opts.noMigrate {
		require.NoError(t, migrate())
	}
	require.NoError(t, storetest.CreateTrackingSchema(ctx, d, h.exec))
	if opts.config != nil {
		doc = opts.config(doc)
	}
	rows := seed
	if opts.seed != nil {
		rows = opts.seed
	}
	for _, s := range rows {
		require.NoError(t, h.exec(ctx, s), s)
	}
	if opts.beforeStart != nil {
		opts.beforeStart(t, h, d, query, migrate)
	}

	iss, err := devissuer.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = iss.Close() })
	h.iss = iss
	for _, u := range tokenUsers {
		tok, err := iss.Token(u)
		require.NoError(t, err)
		h.tokens[u.Username] = tok
	}

	h.env["ISSUER"] = iss.URL
	cfg := h.parse(t, doc)
	log := slog.New(slog.NewJSONHandler(h.logs, nil))
	run, err := server.Start(ctx, cfg, log)
	require.NoError(t, err)
	t.Cleanup(run.Stop)
	h.run = run

	conn, err := grpc.NewClient(run.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	h.client = authv3.NewAuthorizationClient(conn)
	return h
}

// parse parses a configuration document as `serve` does a file, with the
// harness's issuer and database URL for ${ISSUER} and ${DATABASE_URL}.
func (h *harness) parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(doc), func(k string) (string, bool) { v, ok := h.env[k]; return v, ok })
	require.NoError(t, err)
	return cfg
}

// readyz returns the status of the service's readiness endpoint.
func (h *harness) readyz(t *testing.T) int {
	t.Helper()
	status, _ := h.readiness(t)
	return status
}

// readiness returns the status of the service's readiness endpoint and the
// failing checks it names, each with its message.
func (h *harness) readiness(t *testing.T) (status int, failing map[string]string) {
	t.Helper()
	status, body := h.readyBody(t)
	failing = map[string]string{}
	m, _ := body["failing"].(map[string]any)
	for k, v := range m {
		failing[k], _ = v.(string)
	}
	if len(failing) == 0 {
		failing = nil
	}
	return status, failing
}

// readyBody returns the status and the JSON body of the readiness endpoint.
func (h *harness) readyBody(t *testing.T) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+h.run.HTTPAddr+"/readyz", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

// result is a CheckResponse read back, with the deny's response headers
// (www-authenticate) that extauthz.Result leaves out.
type result struct {
	extauthz.Result
	DenyHeaders map[string]string
}

func (r result) String() string {
	if r.Allowed {
		return "ALLOW"
	}
	return fmt.Sprintf("DENY %d %s (%s)", r.Status, r.Reason, r.Message)
}

// check sends c through the gRPC client as Envoy would.
func (h *harness) check(t *testing.T, c extauthz.Call) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, c.CheckRequest())
	require.NoError(t, err, "Check %s %s", c.Method, c.Target)
	res := result{Result: extauthz.ReadResponse(resp), DenyHeaders: map[string]string{}}
	for _, hv := range resp.GetDeniedResponse().GetHeaders() {
		res.DenyHeaders[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	return res
}

// call builds a request on host from user ("" is anonymous). A body that
// starts with '{' is sent as JSON, any other as raw bytes.
func (h *harness) call(host, user, method, target, body string) extauthz.Call {
	c := extauthz.Call{Method: method, Host: host, Target: target, Headers: map[string]string{}}
	if user != "" {
		tok, ok := h.tokens[user]
		if !ok {
			panic("integration: no token for " + user)
		}
		c.Headers["authorization"] = "Bearer " + tok
	}
	if body != "" {
		c.Body = []byte(body)
		if strings.HasPrefix(body, "{") {
			c.Headers["content-type"] = "application/json"
		} else {
			c.Headers["content-type"] = "application/octet-stream"
		}
	}
	return c
}

// Callers in the test tables besides the token holders in users.
const (
	anonymous = "anonymous" // no credential at all
	none      = ""          // skip this half of a table row
	// trainerMTLS is the trainer workload, identified by its mTLS peer
	// certificate alone and mapped to user trainer-bot.
	trainerMTLS = "trainer-bot-mtls"
)

// as builds a request on host from who (a token holder, anonymous or
// trainerMTLS) with extra headers.
func (h *harness) as(host, who, method, target, body string, headers map[string]string) extauthz.Call {
	user := who
	if who == anonymous || who == trainerMTLS {
		user = ""
	}
	c := h.call(host, user, method, target, body)
	if who == trainerMTLS {
		c.Principal = principalTrainer
	}
	for k, v := range headers {
		c.Headers[k] = v
	}
	return c
}

// assertChallenge asserts that a 401 carries a challenge: Bearer, so that
// clients know to fetch a token, or, for a refused Basic credential, Basic
// with MLflow's realm, so that they know to ask for the password again.
func assertChallenge(t *testing.T, res result) {
	t.Helper()
	want := "Bearer"
	if strings.HasPrefix(res.Reason, "basic_") && res.Reason != "basic_disabled" {
		want = `Basic realm="mlflow"`
	}
	assert.True(t, strings.HasPrefix(res.DenyHeaders["www-authenticate"], want),
		"401 %s without a %s www-authenticate challenge: %v", res.Reason, want, res.DenyHeaders)
}

// requireDecision asserts an allow, or a deny with exactly status and reason.
func requireDecision(t *testing.T, res result, allow bool, status int, reason string) {
	t.Helper()
	if allow {
		require.True(t, res.Allowed, "want ALLOW, got %s", res)
		return
	}
	require.False(t, res.Allowed, "want DENY %d %s, got ALLOW", status, reason)
	require.Equal(t, status, res.Status, "status of %s", res)
	require.Equal(t, reason, res.Reason, "reason of %s", res)
}

// waitFor polls check until want returns true or limit passes, and returns
// how long it took and whether it happened.
func waitFor(t *testing.T, limit time.Duration, check func() bool) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for {
		if check() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
