package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/server"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// adminEnv is a running service on a seeded store, plus the flags that
// reach that store directly.
type adminEnv struct {
	grpcAddr string
	cfgPath  string
	direct   []string // --sqlite PATH or --database-url URL
	iss      *devissuer.Issuer
}

const adminSeed = `INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES
	(0, 'Default', 'active'), (1, 'fraud-detection', 'active'), (2, 'churn-model', 'active')`

func adminConfig(issuer, storeYAML string) string {
	return fmt.Sprintf(`
server: {grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0", watch_config: false, shutdown_grace: 2s}
log: {level: error}
issuers:
  - name: dev
    issuer: %q
    audiences: [mlflow]
    admin_groups: [mlflow-admin]
store:
%s
apps:
  - name: mlflow
    type: mlflow
    hosts: [mlflow.localhost]
    mlflow: {default_permission: NO_PERMISSIONS}
`, issuer, storeYAML)
}

func startAdminEnv(t *testing.T, backend string) *adminEnv {
	return startAdminEnvLayout(t, backend, false)
}

// startAdminEnvLayout is startAdminEnv, on MLflow 3.12+'s roles layout
// when roles is set (MLflow's own upgrade after migrate, then migrate
// again for the role tables' triggers).
func startAdminEnvLayout(t *testing.T, backend string, roles bool) *adminEnv {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	e := &adminEnv{cfgPath: filepath.Join(dir, "config.yaml")}
	var (
		storeYAML string
		seed      storetest.ExecFunc
		query     storetest.QueryFunc
	)
	switch store.Dialect(backend) {
	case store.SQLite:
		path := filepath.Join(dir, "mlflow.db")
		e.direct = []string{"--sqlite", path}
		seed = storetest.SQLiteExec(t, path)
		query = storetest.SQLiteQuery(t, path)
		storeYAML = fmt.Sprintf("  driver: sqlite\n  sqlite: {tracking_path: %q, poll_interval: 100ms}", path)
	case store.PostgreSQL:
		url := storetest.Postgres(t)
		e.direct = []string{"--database-url", url}
		seed = storetest.PostgresExec(t, url)
		query = storetest.PostgresQuery(t, url)
		storeYAML = fmt.Sprintf("  driver: postgres\n  postgres: {tracking_url: %q}", url)
	}
	out, err := exec.CommandContext(ctx, binary, append([]string{"migrate"}, e.direct...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	if roles {
		require.NoError(t, storetest.MigrateToRoles(ctx, store.Dialect(backend), seed, query))
		out, err := exec.CommandContext(ctx, binary, append([]string{"migrate"}, e.direct...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	require.NoError(t, storetest.CreateTrackingSchema(ctx, store.Dialect(backend), seed))
	require.NoError(t, seed(ctx, adminSeed))
	iss, err := devissuer.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = iss.Close() })
	e.iss = iss
	require.NoError(t, os.WriteFile(e.cfgPath, []byte(adminConfig(iss.URL, storeYAML)), 0o600))
	cfg, err := config.Load(e.cfgPath)
	require.NoError(t, err)
	run, err := server.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(run.Stop)
	e.grpcAddr = run.GRPCAddr
	return e
}

func (e *adminEnv) token(t *testing.T, u devissuer.User) string {
	t.Helper()
	tok, err := e.iss.Token(u)
	require.NoError(t, err)
	return tok
}

// cli runs the binary and returns stdout, stderr and the exit code.
func cli(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return out.String(), errb.String(), 0
}

// golden compares got with testdata/name.golden.json (rewritten by -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	assert.JSONEq(t, string(want), got)
	assert.Equal(t, string(want), got, "%s: byte-for-byte", path)
}

func (e *adminEnv) check(t *testing.T, token, target string) extauthz.Result {
	t.Helper()
	res, err := checkOnce(t.Context(), e.grpcAddr, extauthz.Call{Method: "GET", Host: "mlflow.localhost", Target: target,
		Headers: map[string]string{"authorization": "Bearer " + token}})
	require.NoError(t, err)
	return res
}

const getExp1 = "/api/2.0/mlflow/experiments/get?experiment_id=1"

// TestGrantCheckRevokeCheck: a grant made with the CLI directly on the
// database allows the next checks of a running server; the revoke denies
// them again. Both backends, JSON output against golden files.
func TestGrantCheckRevokeCheck(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := startAdminEnv(t, backend)
			alice := e.token(t, devissuer.User{Username: "alice"})
			res := e.check(t, alice, getExp1)
			require.False(t, res.Allowed)
			assert.Equal(t, 403, res.Status)
			assert.Equal(t, "permission_denied", res.Reason)

			args := append([]string{"grant", "--experiment-name", "fraud-detection", "--user", "alice", "--permission", "READ", "-o", "json"}, e.direct...)
			out, stderr, code := cli(t, nil, args...)
			require.Equal(t, 0, code, stderr)
			golden(t, "grant", out)
			assert.Contains(t, stderr, `"msg":"admin_audit"`)
			assert.Eventually(t, func() bool { return e.check(t, alice, getExp1).Allowed }, 5*time.Second, 50*time.Millisecond)

			// The same grant again changes nothing, and says so.
			out, _, code = cli(t, nil, append([]string{"grant", "--experiment", "1", "--user", "alice", "--permission", "read"}, e.direct...)...)
			require.Equal(t, 0, code)
			assert.Equal(t, "no change: user alice already has READ on experiment 1\n", out)

			_, _, code = cli(t, nil, append([]string{"grant", "--experiment", "1", "--group", "/team-a", "--permission", "EDIT"}, e.direct...)...)
			require.Equal(t, 0, code)
			out, stderr, code = cli(t, nil, append([]string{"permissions", "list", "--experiment", "1", "--user", "alice", "--groups", "/team-a", "-o", "json"}, e.direct...)...)
			require.Equal(t, 0, code, stderr)
			golden(t, "permissions_user", out)
			out, stderr, code = cli(t, nil, append([]string{"permissions", "list", "--experiment-name", "fraud-detection", "-o", "json"}, e.direct...)...)
			require.Equal(t, 0, code, stderr)
			golden(t, "permissions_experiment", out)

			out, stderr, code = cli(t, nil, append([]string{"revoke", "--experiment", "1", "--user", "alice", "-o", "json"}, e.direct...)...)
			require.Equal(t, 0, code, stderr)
			golden(t, "revoke", out)
			assert.Eventually(t, func() bool {
				r := e.check(t, alice, getExp1)
				return !r.Allowed && r.Status == 403 && r.Reason == "permission_denied"
			}, 5*time.Second, 50*time.Millisecond)

			// users list shows the row the grant created.
			out, _, code = cli(t, nil, append([]string{"users", "list"}, e.direct...)...)
			require.Equal(t, 0, code)
			assert.Equal(t, "USERNAME  ADMIN\nalice     false\n", out)
		})
	}
}

func TestAdminErrorsAndExitCodes(t *testing.T) {
	e := startAdminEnv(t, "sqlite")
	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{"unknown experiment name", nil, append([]string{"grant", "--experiment-name", "foo", "--user", "alice", "--permission", "READ"}, e.direct...),
			1, `experiment "foo" not found; list experiments with: mlflow experiments search`},
		{"unknown experiment id", nil, append([]string{"revoke", "--experiment", "99", "--user", "alice"}, e.direct...),
			1, `experiment 99 not found`},
		{"bad permission", nil, append([]string{"grant", "--experiment", "1", "--user", "alice", "--permission", "OWNER"}, e.direct...),
			2, `permission "OWNER" is not one of READ, USE, EDIT, MANAGE, NO_PERMISSIONS`},
		{"two targets", nil, append([]string{"grant", "--experiment", "1", "--registered-model", "m", "--user", "alice", "--permission", "READ"}, e.direct...),
			2, "give exactly one of --experiment ID"},
		{"no grantee", nil, append([]string{"grant", "--experiment", "1", "--permission", "READ"}, e.direct...),
			2, "give exactly one of --user NAME or --group NAME"},
		{"no connection", nil, []string{"users", "list"}, 2, "give exactly one of --database-url"},
		{"delete a missing user", nil, append([]string{"users", "delete", "nobody"}, e.direct...), 1, `user "nobody" not found; list users with: mlflow-authz users list`},
		{"remote without a token", []string{"MLFLOW_AUTHZ_TOKEN="}, []string{"users", "list", "--server", e.grpcAddr}, 2, "needs an admin's Bearer token"},
		{"remote as a non-admin", []string{"MLFLOW_AUTHZ_TOKEN=" + e.token(t, devissuer.User{Username: "bob"})},
			[]string{"users", "list", "--server", e.grpcAddr}, 1, "bob is not an admin"},
		{"invalid workspace", nil, append([]string{"grant", "--experiment", "1", "--user", "alice", "--permission", "READ", "--workspace", "Team_B"}, e.direct...),
			2, `workspace: workspace name "Team_B" must be lower-case letters`},
		{"experiment of another workspace", nil, append([]string{"grant", "--experiment", "1", "--user", "alice", "--permission", "READ", "--workspace", "team-b"}, e.direct...),
			1, `experiment 1 lives in workspace "default", not "team-b" (--workspace)`},
		{"a workspace on a server with workspaces off", []string{"MLFLOW_AUTHZ_TOKEN=" + e.token(t, devissuer.User{Username: "dave", Groups: []string{"/mlflow-admin"}})},
			[]string{"grant", "--registered-model", "m", "--user", "alice", "--permission", "READ", "--workspace", "team-b", "--server", e.grpcAddr},
			1, `workspace "team-b": apps[].mlflow.workspaces is off on this server`},
		{"remote with a tampered token", []string{"MLFLOW_AUTHZ_TOKEN=" + e.token(t, devissuer.User{Username: "bob"}) + "x"},
			[]string{"users", "list", "--server", e.grpcAddr}, 1, "token_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := cli(t, tt.env, tt.args...)
			assert.Equal(t, tt.code, code, stderr)
			assert.Contains(t, stderr, tt.stderr)
		})
	}
}

// TestRemoteGrantThroughAdminAPI: an admin's grant through --server reaches
// the store and the next checks.
func TestRemoteGrantThroughAdminAPI(t *testing.T) {
	e := startAdminEnv(t, "sqlite")
	admin := []string{"MLFLOW_AUTHZ_TOKEN=" + e.token(t, devissuer.User{Username: "dave", Groups: []string{"/mlflow-admin"}})}
	bob := e.token(t, devissuer.User{Username: "bob", Groups: []string{"/team-a"}})
	res := e.check(t, bob, getExp1)
	require.False(t, res.Allowed)
	assert.Equal(t, 403, res.Status)
	assert.Equal(t, "permission_denied", res.Reason)

	out, stderr, code := cli(t, admin, "grant", "--server", e.grpcAddr, "--experiment-name", "fraud-detection", "--group", "team-a", "--permission", "READ")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "granted READ on experiment 1 to group team-a\n", out)
	assert.Eventually(t, func() bool { return e.check(t, bob, getExp1).Allowed }, 5*time.Second, 50*time.Millisecond)

	out, stderr, code = cli(t, admin, "revoke", "--server", e.grpcAddr, "--experiment", "1", "--group", "team-a")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "revoked group team-a's READ on experiment 1\n", out)
	assert.Eventually(t, func() bool { return !e.check(t, bob, getExp1).Allowed }, 5*time.Second, 50*time.Millisecond)
}

// TestExplainMatchesCheck: explain, locally from the config file and
// remotely through the admin API, reaches the decision Check reaches.
func TestExplainMatchesCheck(t *testing.T) {
	e := startAdminEnv(t, "sqlite")
	_, stderr, code := cli(t, nil, append([]string{"grant", "--experiment", "1", "--user", "alice", "--permission", "EDIT"}, e.direct...)...)
	require.Equal(t, 0, code, stderr)
	_, stderr, code = cli(t, nil, append([]string{"grant", "--experiment", "2", "--group", "team-a", "--permission", "READ"}, e.direct...)...)
	require.Equal(t, 0, code, stderr)
	admin := []string{"MLFLOW_AUTHZ_TOKEN=" + e.token(t, devissuer.User{Username: "dave", Groups: []string{"/mlflow-admin"}})}
	alice := e.token(t, devissuer.User{Username: "alice"})
	bob := e.token(t, devissuer.User{Username: "bob", Groups: []string{"/team-a"}})

	tests := []struct {
		name          string
		token         string
		method, path  string
		body, host    string
		allowed       bool
		status        int
		reason, stage string
	}{
		{"user row allows", alice, "GET", getExp1, "", "", true, 200, "", "permission"},
		{"group row allows", bob, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=2", "", "", true, 200, "", "permission"},
		{"default denies", bob, "GET", getExp1, "", "", false, 403, "permission_denied", "permission"},
		{"edit allows update", alice, "POST", "/api/2.0/mlflow/experiments/update", `{"experiment_id":"1","new_name":"x"}`, "", true, 200, "", "route"},
		{"read is not edit", bob, "POST", "/api/2.0/mlflow/experiments/update", `{"experiment_id":"2","new_name":"x"}`, "", false, 403, "permission_denied", "route"},
		{"unknown route", alice, "GET", "/api/2.0/mlflow/no-such-endpoint", "", "", false, 404, "unknown_route", "decision"},
		{"dot segments", alice, "GET", "/api/2.0/mlflow/experiments/../runs/get", "", "", false, 400, "path_not_canonical", "request"},
		{"unknown host", alice, "GET", "/", "", "other.example.com", false, 403, "unknown_host", "decision"},
		{"anonymous", "", "GET", getExp1, "", "", false, 401, "unauthenticated", "identity"},
		{"tampered token", alice + "x", "GET", getExp1, "", "", false, 401, "token_bad_signature", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == "" {
				host = "mlflow.localhost"
			}
			call := extauthz.Call{Method: tt.method, Host: host, Target: tt.path, Headers: map[string]string{}}
			if tt.token != "" {
				call.Headers["authorization"] = "Bearer " + tt.token
			}
			if tt.body != "" {
				call.Body = []byte(tt.body)
				call.Headers["content-type"] = "application/json"
			}
			res, err := checkOnce(t.Context(), e.grpcAddr, call)
			require.NoError(t, err)
			require.Equal(t, tt.allowed, res.Allowed, "check: %+v", res)
			if !tt.allowed {
				assert.Equal(t, tt.status, res.Status)
				assert.Equal(t, tt.reason, res.Reason)
			}
			for _, mode := range []struct {
				name string
				env  []string
				args []string
			}{
				{"local", nil, []string{"--config", e.cfgPath}},
				{"remote", admin, []string{"--server", e.grpcAddr}},
			} {
				args := append([]string{"explain", "-o", "json", "--host", host}, mode.args...)
				if tt.token != "" {
					args = append(args, "--as-token", tt.token)
				}
				if tt.body != "" {
					args = append(args, "--body", tt.body)
				}
				out, stderr, code := cli(t, mode.env, append(args, tt.method, tt.path)...)
				wantCode := 0
				if !tt.allowed {
					wantCode = 1
				}
				require.Equal(t, wantCode, code, "%s: %s", mode.name, stderr)
				var got struct {
					Allowed bool   `json:"allowed"`
					Status  int    `json:"status"`
					Reason  string `json:"reason"`
					Steps   []struct {
						Stage  string `json:"stage"`
						Detail string `json:"detail"`
					} `json:"steps"`
				}
				require.NoError(t, json.Unmarshal([]byte(out), &got), "%s: %s", mode.name, out)
				assert.Equal(t, res.Allowed, got.Allowed, mode.name)
				if !tt.allowed {
					assert.Equal(t, res.Status, got.Status, mode.name)
					assert.Equal(t, res.Reason, got.Reason, mode.name)
				} else {
					assert.Equal(t, 200, got.Status, mode.name)
				}
				if tt.stage != "" {
					var stages []string
					for _, s := range got.Steps {
						stages = append(stages, s.Stage)
					}
					assert.Contains(t, stages, tt.stage, "%s: %s", mode.name, out)
				}
			}
		})
	}

	// As a named user with groups, no token needed (local store).
	out, stderr, code := cli(t, nil, "explain", "--config", e.cfgPath, "--user", "bob", "--groups", "/team-a", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=2")
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(out, "ALLOW"), out)
	assert.Contains(t, out, `group "team-a" row on experiment 2: READ`)
}

// TestWholeWorkspaceGrantCLI: --whole-workspace writes the workspace-wide
// grant of the workspace --workspace names, and says so.
func TestWholeWorkspaceGrantCLI(t *testing.T) {
	e := startAdminEnv(t, "sqlite")
	run := func(args ...string) (string, string, int) {
		return cli(t, nil, append(args, e.direct...)...)
	}
	out, stderr, code := run("grant", "--whole-workspace", "--workspace", "team-b", "--user", "alice", "--permission", "EDIT")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "granted EDIT on the whole workspace \"team-b\" to user alice\n", out)
	out, stderr, code = run("revoke", "--whole-workspace", "--workspace", "team-b", "--user", "alice")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "revoked user alice's EDIT on the whole workspace \"team-b\"\n", out)
	_, stderr, code = run("grant", "--whole-workspace", "--experiment", "1", "--user", "alice", "--permission", "EDIT")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "give exactly one of --experiment ID, --experiment-name NAME, --registered-model NAME or --whole-workspace")
	_, stderr, code = run("grant", "--whole-workspace", "--group", "team-a", "--permission", "EDIT")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "workspace_permissions holds users only")
}
