package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	_ "modernc.org/sqlite" // the demo seeds its SQLite store directly, as an admin would with SQL

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/logsink"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
)

const (
	demoHost      = "mlflow.localhost"
	demoCollector = "spiffe://cluster.local/ns/observability/sa/otel-collector"
	demoTrainer   = "spiffe://cluster.local/ns/ml-pipelines/sa/trainer"
	demoRunA      = "a1b2c3d4e5f60718293a4b5c6d7e8f90" // in experiment 1
	demoRunB      = "b1b2c3d4e5f60718293a4b5c6d7e8f90" // in experiment 2
)

func newDemoCommand() *cobra.Command {
	var grpcAddr, httpAddr string
	var exitAfterChecks bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the real service on a seeded SQLite store with a DEVELOPMENT-ONLY token issuer",
		Long: `demo starts the real service with everything it needs on this machine: a SQLite
store in a temporary folder, seeded with users, groups, experiments, runs and grants,
and a built-in development token issuer on loopback. It prints a table of scripted
checks, then keeps serving with ready-to-paste commands. Nothing external is needed.

The development issuer mints tokens for anyone who asks: it exists only in demo.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), grpcAddr, httpAddr, exitAfterChecks)
		},
	}
	cmd.Flags().StringVar(&grpcAddr, "grpc-addr", "127.0.0.1:9191", "gRPC listen address")
	cmd.Flags().StringVar(&httpAddr, "http-addr", "127.0.0.1:8080", "HTTP (metrics, health) listen address")
	cmd.Flags().BoolVar(&exitAfterChecks, "exit-after-checks", false, "stop after the scripted checks (for tests)")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, grpcAddr, httpAddr string, exitAfterChecks bool) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "mlflow-authz-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dbPath := filepath.Join(dir, "mlflow.db")
	if err := seedDemo(ctx, dbPath); err != nil {
		return fmt.Errorf("demo: seeding: %w", err)
	}
	iss, err := devissuer.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer iss.Close()

	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(demoConfig(iss.URL, dbPath, grpcAddr, httpAddr)), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	logPath := filepath.Join(dir, "decisions.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log, sink := logsink.New(logFile, logsink.Options{})
	defer sink.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	checksFailed := make(chan error, 1)
	ready := func(grpcAddr, httpAddr string) {
		go func() {
			err := runDemoChecks(ctx, out, iss, grpcAddr, time.Since(start))
			if err == nil {
				printDemoHelp(out, iss, grpcAddr, httpAddr, cfgPath, logPath)
			}
			checksFailed <- err
			if exitAfterChecks || err != nil {
				cancel()
			}
		}()
	}
	if err := serve(ctx, cfg, serveOptions{configPath: cfgPath, log: log, ready: ready}); err != nil {
		return err
	}
	select {
	case err := <-checksFailed:
		return err
	default:
		return nil
	}
}

// seedDemo writes the demo's MLflow tables the way MLflow and an admin with
// plain SQL would: tracking tables, users, a group and grants.
func seedDemo(ctx context.Context, dbPath string) error {
	if err := sqlite.Migrate(ctx, dbPath); err != nil {
		return err
	}
	if err := sqlite.CreateTrackingSchema(ctx, dbPath); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := []string{
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES
			(0, 'Default', 'active'), (1, 'fraud-detection', 'active'),
			(2, 'churn-model', 'active'), (3, 'secret-research', 'active')`,
		`INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status, user_id) VALUES
			('` + demoRunA + `', 1, 'active', 'RUNNING', 'alice'),
			('` + demoRunB + `', 2, 'active', 'RUNNING', 'bob')`,
		`INSERT INTO users (id, username, is_admin) VALUES
			(1, 'alice', 0), (2, 'bob', 0), (3, 'carol', 1), (4, 'trainer-bot', 0)`,
		`UPDATE users SET password_hash = '` + demoBobHash + `' WHERE username = 'bob'`,
		`INSERT INTO groups (id, group_name) VALUES (1, 'team-a')`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES
			('1', 1, 'EDIT'), ('1', 2, 'READ'), ('2', 4, 'EDIT'), ('2', 1, 'NO_PERMISSIONS')`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES ('2', 1, 'READ')`,
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%w\n%s", err, s)
		}
	}
	return nil
}

func demoConfig(issuer, dbPath, grpcAddr, httpAddr string) string {
	return fmt.Sprintf(`# Written by mlflow-authz demo. DEVELOPMENT ONLY: the issuer below mints tokens for anyone.
server:
  grpc_addr: %q
  http_addr: %q
log:
  level: info
issuers:
  - name: dev
    issuer: %q
    audiences: [mlflow]
    admin_groups: [mlflow-admin]
spiffe:
  trust_domain: cluster.local
  workloads:
    - id: ns/ml-pipelines/sa/trainer
      username: trainer-bot
store:
  driver: sqlite
  sqlite:
    tracking_path: %q
    poll_interval: 200ms
apps:
  - name: mlflow
    type: mlflow
    hosts: [%s, localhost]
    trace_writers: [%s]
    mlflow:
      default_permission: NO_PERMISSIONS
`, grpcAddr, httpAddr, issuer, dbPath, demoHost, demoCollector)
}

// demoBobPassword is bob's MLflow password in the demo, and demoBobHash
// what MLflow stores for it: werkzeug's generate_password_hash with its
// default scrypt:32768:8:1, for the salt shown.
const (
	demoBobPassword = "bob-demo-password"
	demoBobHash     = "scrypt:32768:8:1$DemoSaltBob12345$4dd8e27eb4c3ac27cc7848f2d75afa746c51ed3cbacc35b05e5597d500b373b4" +
		"f53159ee13dc91a44922de0e7f5fad811293516d8537b711e88049b438bea8fd"
)

type demoCheck struct {
	who    string // a username, "anonymous", or a SPIFFE workload
	call   extauthz.Call
	allow  bool
	reason string
	why    string
}

func demoChecks(iss *devissuer.Issuer) ([]demoCheck, error) {
	tokens := map[string]string{}
	for _, u := range []devissuer.User{
		{Username: "alice"}, {Username: "bob", Groups: []string{"/team-a"}},
		{Username: "carol"}, {Username: "dave", Groups: []string{"/mlflow-admin"}},
	} {
		t, err := iss.Token(u)
		if err != nil {
			return nil, err
		}
		tokens[u.Username] = t
	}
	bearer := func(user string) map[string]string {
		return map[string]string{"authorization": "Bearer " + tokens[user]}
	}
	get := func(user, target string) extauthz.Call {
		return extauthz.Call{Method: "GET", Host: demoHost, Target: target, Headers: bearer(user)}
	}
	post := func(user, target, body string) extauthz.Call {
		h := bearer(user)
		h["content-type"] = "application/json"
		return extauthz.Call{Method: "POST", Host: demoHost, Target: target, Headers: h, Body: []byte(body)}
	}
	basic := func(user, password string) extauthz.Call {
		return extauthz.Call{Method: "GET", Host: demoHost, Target: "/api/2.0/mlflow/experiments/get?experiment_id=1",
			Headers: map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
	}
	tampered := tokens["bob"][:len(tokens["bob"])-4] + "AAAA"
	otel := extauthz.Call{Method: "POST", Host: demoHost, Target: "/v1/traces", Principal: demoCollector,
		Headers: map[string]string{"content-type": "application/x-protobuf", "x-mlflow-experiment-id": "1"}, Body: []byte{0x0a, 0x00}}
	trainer := extauthz.Call{Method: "POST", Host: demoHost, Target: "/api/2.0/mlflow/runs/log-metric", Principal: demoTrainer,
		Headers: map[string]string{"content-type": "application/json"}, Body: []byte(`{"run_id":"` + demoRunB + `","key":"loss","value":0.1,"timestamp":1}`)}
	return []demoCheck{
		{"alice", get("alice", "/api/2.0/mlflow/experiments/get?experiment_id=1"), true, "", "alice has EDIT on experiment 1"},
		{"alice", post("alice", "/api/2.0/mlflow/runs/log-batch", `{"run_id":"`+demoRunA+`","metrics":[]}`), true, "", "EDIT lets alice log to her run"},
		{"bob", post("bob", "/api/2.0/mlflow/runs/log-batch", `{"run_id":"`+demoRunA+`","metrics":[]}`), false, "permission_denied", "bob only has READ on experiment 1"},
		{"bob", get("bob", "/api/2.0/mlflow/runs/get?run_id="+demoRunB), true, "", "group team-a has READ on experiment 2"},
		{"alice", get("alice", "/api/2.0/mlflow/runs/get?run_id="+demoRunB), false, "permission_denied", "alice's own NO_PERMISSIONS row outranks any group"},
		{"alice", get("alice", "/ajax-api/2.0/mlflow/experiments/get?experiment_id=3"), false, "permission_denied", "no grant: the default is NO_PERMISSIONS"},
		{"carol", post("carol", "/api/2.0/mlflow/experiments/delete", `{"experiment_id":"3"}`), true, "", "carol is an MLflow admin (users.is_admin)"},
		{"dave", post("dave", "/api/2.0/mlflow/experiments/delete", `{"experiment_id":"3"}`), true, "", "dave is in the admin group /mlflow-admin"},
		{"bob (password)", basic("bob", demoBobPassword), true, "", "MLflow's client with MLFLOW_TRACKING_USERNAME/PASSWORD"},
		{"bob (wrong password)", basic("bob", "guess"), false, "basic_invalid_credentials", "an unknown user gets the same answer"},
		{"anonymous", extauthz.Call{Method: "GET", Host: demoHost, Target: "/api/2.0/mlflow/experiments/get?experiment_id=1"}, false, "unauthenticated", "no credential"},
		{"bob (tampered token)", extauthz.Call{Method: "GET", Host: demoHost, Target: "/api/2.0/mlflow/experiments/get?experiment_id=1",
			Headers: map[string]string{"authorization": "Bearer " + tampered}}, false, "token_bad_signature", "a present but invalid credential is a 401"},
		{"otel-collector (mTLS)", otel, true, "", "the collector may POST /v1/traces with no token"},
		{"trainer (mTLS)", trainer, true, "", "workload mapped to user trainer-bot (EDIT on 2)"},
		{"alice", get("alice", "/api/2.0/mlflow/no-such-endpoint"), false, "unknown_route", "unknown routes are denied"},
		{"alice", get("alice", "/api/2.0/mlflow/experiments/../runs/get"), false, "path_not_canonical", "dot segments are refused"},
		{"alice", extauthz.Call{Method: "GET", Host: "unknown.example.com", Target: "/", Headers: bearer("alice")}, false, "unknown_host", "hosts no app owns are denied"},
	}, nil
}

func runDemoChecks(ctx context.Context, out io.Writer, iss *devissuer.Issuer, grpcAddr string, startup time.Duration) error {
	checks, err := demoChecks(iss)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmlflow-authz demo: serving on %s after %s. Scripted checks through gRPC, as Envoy sends them:\n\n", grpcAddr, startup.Round(time.Millisecond))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHO\tREQUEST\tDECISION\tREASON\tWHY")
	var wrong []string
	for _, c := range checks {
		res, err := checkOnce(ctx, grpcAddr, c.call)
		if err != nil {
			return err
		}
		decision := "ALLOW"
		if !res.Allowed {
			decision = fmt.Sprintf("DENY %d", res.Status)
		}
		target, _, _ := strings.Cut(c.call.Target, "?")
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\n", c.who, c.call.Method, target, decision, res.Reason, c.why)
		if res.Allowed != c.allow || (!c.allow && res.Reason != c.reason) {
			wrong = append(wrong, fmt.Sprintf("%s %s %s: got allowed=%v reason=%q", c.who, c.call.Method, c.call.Target, res.Allowed, res.Reason))
		}
	}
	tw.Flush()
	if len(wrong) > 0 {
		return errors.New("demo: scripted checks gave unexpected decisions:\n  " + strings.Join(wrong, "\n  "))
	}
	return nil
}

func printDemoHelp(out io.Writer, iss *devissuer.Issuer, grpcAddr, httpAddr, cfgPath, logPath string) {
	token, _ := iss.Token(devissuer.User{Username: "alice", TTL: 8 * time.Hour})
	admin, _ := iss.Token(devissuer.User{Username: "dave", Groups: []string{"/mlflow-admin"}, TTL: 8 * time.Hour})
	fmt.Fprintf(out, `
All checks answered as expected. The service keeps running; try it yourself:

  export MLFLOW_AUTHZ_TOKEN=%s   # alice, DEVELOPMENT ONLY
  ./bin/mlflow-authz check --server %s GET '/api/2.0/mlflow/experiments/get?experiment_id=1'
  ./bin/mlflow-authz check --server %s GET '/api/2.0/mlflow/experiments/get?experiment_id=3'
  ./bin/mlflow-authz check --server %s --principal %s \
      --header 'x-mlflow-experiment-id: 1' --body 'x' POST /v1/traces

Why was alice denied on experiment 3? Every step of the decision:

  ./bin/mlflow-authz explain --config %s --user alice GET '/api/2.0/mlflow/experiments/get?experiment_id=3'

Grant it as an admin (dave is in /mlflow-admin) through the admin API, then check again:

  MLFLOW_AUTHZ_TOKEN=%s \
    ./bin/mlflow-authz grant --server %s --experiment 3 --user alice --permission READ
  ./bin/mlflow-authz check --server %s GET '/api/2.0/mlflow/experiments/get?experiment_id=3'

  Readiness and metrics:   curl -s http://%s/readyz ; curl -s http://%s/metrics | grep mlflow_authz
  Configuration:           %s
  Decision log (JSON):     %s

Press Ctrl-C to stop.
`, token, grpcAddr, grpcAddr, grpcAddr, demoCollector, cfgPath, admin, grpcAddr, grpcAddr, httpAddr, httpAddr, cfgPath, logPath)
}
