package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// decisionLogConfig keeps lines in the log's buffer for up to 10s, longer
// than the test takes: a line that reaches the file before SIGTERM's flush
// was written by the size limit, not the timer.
const decisionLogConfig = `
server: {grpc_addr: %q, http_addr: %q, watch_config: false, shutdown_grace: 5s}
store: {driver: none}
log: {flush_interval: 10s}
apps:
  - name: kiali
    type: rules
    hosts: [kiali.example.com]
    rules:
      - paths: [/kiali/healthz]
        allow: anyone
`

// TestServeWritesEveryDecisionLineAtSIGTERM: the decision log is buffered,
// and still no line of an answered check is lost when Kubernetes stops the
// pod. N checks are answered and SIGTERM follows at once, while their
// lines wait in the buffer; then SIGTERM arrives in the middle of a stream
// of checks. Every answered check has exactly one line, and no line names a
// check that was never sent.
func TestServeWritesEveryDecisionLineAtSIGTERM(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight bool
	}{
		{"after N checks", false},
		{"checks in flight", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "config.yaml")
			require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(decisionLogConfig, grpcAddr, httpAddr)), 0o600))
			logPath := filepath.Join(dir, "stderr.log")
			logFile, err := os.Create(logPath)
			require.NoError(t, err)
			defer logFile.Close()
			cmd := exec.Command(binary, "serve", "--config", cfgPath)
			cmd.Stderr = logFile
			require.NoError(t, cmd.Start())
			defer func() { _ = cmd.Process.Kill() }()
			require.Eventually(t, func() bool {
				resp, err := http.Get("http://" + httpAddr + "/readyz")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			}, 20*time.Second, 10*time.Millisecond)

			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			defer conn.Close()
			client := authv3.NewAuthorizationClient(conn)
			var (
				mu       sync.Mutex
				answered = map[string]bool{}
				sent     = map[string]bool{}
				stop     = make(chan struct{})
				wg       sync.WaitGroup
			)
			check := func(id string) {
				mu.Lock()
				sent[id] = true
				mu.Unlock()
				path := "/kiali/healthz"
				if len(id)%2 == 0 {
					path = "/kiali/api/status" // a deny: no_rule_matched
				}
				resp, err := client.Check(t.Context(), extauthz.Call{Method: "GET", Host: "kiali.example.com", Target: path, RequestID: id}.CheckRequest())
				if err == nil && resp.GetStatus() != nil {
					mu.Lock()
					answered[id] = true
					mu.Unlock()
				}
			}
			const n = 120 // about 40 KB of lines: under the buffer's size
			for g := range 8 {
				wg.Go(func() {
					for i := range n / 8 {
						check(fmt.Sprintf("check-%d-%d", g, i))
					}
					if !tc.inFlight {
						return
					}
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
							check(fmt.Sprintf("late-%d-%d", g, i))
						}
					}
				})
			}
			if tc.inFlight {
				require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(answered) > n+50 }, 20*time.Second, time.Millisecond)
			} else {
				wg.Wait()
				require.Len(t, answered, n)
				before := decisionLines(t, logPath)
				assert.Less(t, len(before), n, "the lines should still be buffered when SIGTERM arrives")
				t.Logf("%d of %d decision lines written before SIGTERM", len(before), n)
			}
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			err = cmd.Wait()
			close(stop)
			wg.Wait()
			require.NoError(t, err, "serve exits 0 after SIGTERM")

			lines := decisionLines(t, logPath)
			mu.Lock()
			defer mu.Unlock()
			for id := range answered {
				assert.Equal(t, 1, lines[id], "answered check %s has exactly one decision line", id)
			}
			for id, c := range lines {
				assert.True(t, sent[id], "line for a check never sent: %s", id)
				assert.Equal(t, 1, c, "check %s logged %d times", id, c)
			}
			t.Logf("%d checks answered, %d decision lines", len(answered), len(lines))
		})
	}
}

// decisionLines counts the decision lines in the log file by request id.
func decisionLines(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Msg       string `json:"msg"`
			RequestID string `json:"request_id"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "every line is whole JSON: %q", sc.Text())
		if l.Msg == "decision" {
			out[l.RequestID]++
		}
	}
	require.NoError(t, sc.Err())
	return out
}
