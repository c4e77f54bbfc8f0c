package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/integration/process"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// binary is mlflow-authz built once for this test binary, on first use (so
// `go test -list` builds nothing): the faults are injected under the process
// operators run, not under an in-process copy.
var (
	buildOnce sync.Once
	binary    string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	storetest.StopPostgres()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds cmd/mlflow-authz into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "mlflow-authz-faults-")
		if buildErr != nil {
			return
		}
		binary = filepath.Join(binDir, "mlflow-authz")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/mlflow-authz/mlflow-authz/cmd/mlflow-authz").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binary
}

// long reports whether the long variants were asked for.
func long() bool { return os.Getenv("MLFLOW_AUTHZ_LONG") != "" }

const host = "mlflow.test"

// Seeded runs: runA in experiment 1, runC in experiment 3; coldRuns are in
// experiment 1 and each is looked up at most once, so no cache holds them.
const (
	runA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01"
	runC = "cccccccccccccccccccccccccccccc01"
)

func coldRun(i int) string { return fmt.Sprintf("d%031d", i) }

const coldRuns = 3000

// seed: alice (users.id 1) has MANAGE on experiment 1; frank (2) has
// nothing until a test grants it.
func seed(ctx context.Context, exec storetest.ExecFunc) error {
	stmts := []string{
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES
			(0, 'Default', 'active'), (1, 'fraud-detection', 'active'), (3, 'secret-research', 'active')`,
		`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status, user_id) VALUES
			('` + runA + `', 1, 'active', 'RUNNING', 'alice'), ('` + runC + `', 3, 'active', 'RUNNING', 'carol')`,
		`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status, user_id)
			SELECT 'd' || lpad(g::text, 31, '0'), 1, 'active', 'RUNNING', 'alice' FROM generate_series(0, ` + fmt.Sprint(coldRuns-1) + `) g`,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', false), (2, 'frank', false)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'MANAGE')`,
	}
	for _, s := range stmts {
		if err := exec(ctx, s); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// database creates, migrates and seeds a fresh database and returns its URL.
func database(t *testing.T) string {
	t.Helper()
	url := storetest.Postgres(t)
	ctx := t.Context()
	require.NoError(t, postgres.Migrate(ctx, url))
	exec := storetest.PostgresExec(t, url)
	require.NoError(t, storetest.CreateTrackingSchema(ctx, store.PostgreSQL, exec))
	require.NoError(t, seed(ctx, exec))
	return url
}

// keyServer is the test's Keycloak: a devissuer in realm test, which can
// rotate its key, go down and count JWKS fetches.
type keyServer struct{ *devissuer.Issuer }

func startKeyServer(t *testing.T) *keyServer {
	t.Helper()
	k1 := authntest.NewKey(t, "k1", "RS256")
	return &keyServer{authntest.Start(t, devissuer.WithRealm("test"), devissuer.WithKeys(k1))}
}

// addKey publishes a new signing key under kid (a rotation, as Keycloak
// does it: the old key stays published for a while).
func (ks *keyServer) addKey(t *testing.T, kid string) {
	t.Helper()
	require.NoError(t, ks.AddKey(authntest.NewKey(t, kid, "RS256")))
}

// token signs an access token for username with kid's key; a kid the server
// does not hold is signed with the attacker's key (a forgery), one for all
// forged tokens, so a flood costs no key generation.
func (ks *keyServer) token(t *testing.T, username, kid string) string {
	t.Helper()
	k, ok := ks.Key(kid)
	if !ok {
		k = devissuer.Key{ID: kid, Alg: "RS256", Private: authntest.RSAKey(t, "forger")}
	}
	now := time.Now()
	return authntest.Token(t, k, map[string]any{"iss": ks.URL, "aud": "mlflow", "sub": "s-" + username, "typ": "Bearer",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "preferred_username": username, "azp": "mlflow-ui"})
}

// options vary the configuration of one service process.
type options struct {
	checkTimeout     time.Duration // default 2s
	statementTimeout time.Duration // default 1s
	minRefresh       time.Duration // jwks_min_refresh_interval, default 1s
}

const configTemplate = `
server:
  grpc_addr: 127.0.0.1:0
  http_addr: 127.0.0.1:0
  check_timeout: %s
  shutdown_grace: 1s
log:
  level: info
issuers:
  - name: test
    issuer: %q
    audiences: [mlflow]
    jwks_min_refresh_interval: %s
    http_timeout: 1s
store:
  driver: postgres
  postgres:
    tracking_url: %q
    statement_timeout: %s
    connect_timeout: 1s
apps:
  - name: mlflow
    type: mlflow
    hosts: [` + host + `]
    mlflow:
      default_permission: NO_PERMISSIONS
`

// service is one `mlflow-authz serve` process.
type service struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	client   authv3.AuthorizationClient
	logMu    sync.Mutex
	log      strings.Builder
}

// startService writes a configuration and starts the binary on it, and
// returns once it logs that it is serving.
func startService(t *testing.T, dbURL string, ks *keyServer, o options) *service {
	t.Helper()
	if o.checkTimeout == 0 {
		o.checkTimeout = 2 * time.Second
	}
	if o.statementTimeout == 0 {
		o.statementTimeout = time.Second
	}
	if o.minRefresh == 0 {
		o.minRefresh = time.Second
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	doc := fmt.Sprintf(configTemplate, o.checkTimeout, ks.URL, o.minRefresh, dbURL, o.statementTimeout)
	require.NoError(t, os.WriteFile(cfg, []byte(doc), 0o600))

	s := &service{cmd: exec.Command(buildBinary(t), "serve", "--config", cfg)}
	stderr, err := s.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() { process.Stop(s.cmd, 10*time.Second) })
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.log.WriteString(line + "\n")
			s.logMu.Unlock()
			if strings.Contains(line, `"msg":"serving"`) {
				var m map[string]any
				_ = json.Unmarshal([]byte(line), &m)
				serving <- m
			}
		}
	}()
	select {
	case m := <-serving:
		s.grpcAddr, _ = m["grpc_addr"].(string)
		s.httpAddr, _ = m["http_addr"].(string)
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not start; log:\n%s", s.logs())
	}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	s.client = authv3.NewAuthorizationClient(conn)
	return s
}

func (s *service) logs() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// check sends one request as Envoy would. It returns an error only for an
// RPC failure, which the service must never produce.
func (s *service) check(ctx context.Context, token, method, target, body string) (extauthz.Result, error) {
	c := extauthz.Call{Method: method, Host: host, Target: target, Headers: map[string]string{}}
	if token != "" {
		c.Headers["authorization"] = "Bearer " + token
	}
	if body != "" {
		c.Body = []byte(body)
		c.Headers["content-type"] = "application/json"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, c.CheckRequest())
	if err != nil {
		return extauthz.Result{}, err
	}
	return extauthz.ReadResponse(resp), nil
}

// mustCheck is check for the test goroutine.
func (s *service) mustCheck(t *testing.T, token, method, target string) extauthz.Result {
	t.Helper()
	res, err := s.check(t.Context(), token, method, target, "")
	require.NoError(t, err)
	return res
}

func (s *service) readyz(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + s.httpAddr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func runGet(run string) string { return "/api/2.0/mlflow/runs/get?run_id=" + run }

// requireDeny asserts a deny with exactly status and reason.
func requireDeny(t *testing.T, res extauthz.Result, status int, reason string) {
	t.Helper()
	require.False(t, res.Allowed, "want DENY %d %s, got ALLOW", status, reason)
	require.Equal(t, status, res.Status, "status (%s: %s)", res.Reason, res.Message)
	require.Equal(t, reason, res.Reason, "reason (%s)", res.Message)
}

// percentiles returns p50, p90 and the maximum of ds.
func percentiles(ds []time.Duration) (p50, p90, maxD time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return at(0.50), at(0.90), s[len(s)-1]
}
