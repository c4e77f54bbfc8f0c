package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// binary is the mlflow-authz binary built once for these tests: the
// commands are tested as operators run them.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mlflow-authz-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mlflow-authz")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	storetest.StopPostgres()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func TestDemoAnswersItsScriptedChecks(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, binary, "demo", "--exit-after-checks",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "All checks answered as expected")
	assert.Contains(t, string(out), "DENY 403  permission_denied")
	assert.Contains(t, string(out), "otel-collector (mTLS)")
	t.Logf("demo: scripted checks done in %s", time.Since(start))
}

func TestDemoStopsCleanlyOnSIGINT(t *testing.T) {
	grpcAddr := freeAddr(t)
	cmd := exec.Command(binary, "demo", "--grpc-addr", grpcAddr, "--http-addr", freeAddr(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Press Ctrl-C") }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "%s", out.String())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo did not exit after SIGINT")
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"check", "GET"}, {"migrate"}, {"serve", "--no-such-flag"}} {
		err := exec.Command(binary, args...).Run()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%v", args)
		assert.Equal(t, 2, ee.ExitCode(), "%v", args)
	}
	out, err := exec.Command(binary, "serve", "--config", "/nonexistent.yaml").CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, string(out), "nonexistent.yaml")
}

const serveConfig = `
server: {grpc_addr: %q, http_addr: %q, watch_config: false, shutdown_grace: 5s}
store: {driver: none}
apps:
  - name: kiali
    type: rules
    hosts: [kiali.example.com]
    rules:
      - paths: [%s]
        allow: anyone
`

func checkPath(t *testing.T, grpcAddr, path string) extauthz.Result {
	t.Helper()
	res, err := checkOnce(t.Context(), grpcAddr, extauthz.Call{Method: "GET", Host: "kiali.example.com", Target: path})
	require.NoError(t, err)
	return res
}

// TestServeLifecycle runs `serve` as a process: readiness, a valid reload
// on SIGHUP, an invalid reload that leaves the old configuration live, and
// a clean drain on SIGTERM.
func TestServeLifecycle(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	write := func(content string) { require.NoError(t, os.WriteFile(cfgPath, []byte(content), 0o600)) }
	write(fmt.Sprintf(serveConfig, grpcAddr, httpAddr, "/kiali/healthz"))

	cmd := exec.Command(binary, "serve", "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	waitLog := func(substr string) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-logs:
				require.True(t, ok, "serve exited before logging %q", substr)
				if strings.Contains(l, substr) {
					return l
				}
			case <-deadline:
				t.Fatalf("no log line containing %q", substr)
			}
		}
	}
	waitLog(`"msg":"serving"`)
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	assert.True(t, checkPath(t, grpcAddr, "/kiali/healthz").Allowed)
	res := checkPath(t, grpcAddr, "/kiali/api/status")
	assert.False(t, res.Allowed)
	assert.Equal(t, 403, res.Status)
	assert.Equal(t, "no_rule_matched", res.Reason)

	// A valid reload swaps the rules in whole.
	write(fmt.Sprintf(serveConfig, grpcAddr, httpAddr, "/kiali/api/status"))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	waitLog("config reloaded")
	assert.True(t, checkPath(t, grpcAddr, "/kiali/api/status").Allowed)
	assert.False(t, checkPath(t, grpcAddr, "/kiali/healthz").Allowed)

	// An invalid reload keeps the old configuration live and says why.
	write("apps: [{name: broken, type: rules}]\n")
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	line := waitLog("config reload refused")
	assert.Contains(t, line, "apps[0].hosts")
	assert.True(t, checkPath(t, grpcAddr, "/kiali/api/status").Allowed)

	// SIGTERM drains and exits 0.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	waitLog("shutting down")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
