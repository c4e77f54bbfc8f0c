// Package soak runs the built service for minutes under a steady open-loop
// load of the load generator's realistic corpus and watches it for leaks:
// no RPC error, resident memory growth under 10% after warm-up, a stable
// goroutine count, and the same decisions at the end as at the start.
//
// It is not part of `make test`: it runs only when MLFLOW_AUTHZ_SOAK_BINARY
// names the binary (`make soak` builds it and sets it).
// MLFLOW_AUTHZ_SOAK_DURATION (default 5m), MLFLOW_AUTHZ_SOAK_RATE (default
// 1000 rps) and MLFLOW_AUTHZ_SOAK_WARMUP (default 30s) shape the run.
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/integration/loadgen"
	"github.com/mlflow-authz/mlflow-authz/integration/process"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// Limits the soak asserts.
const (
	maxRSSGrowth = 0.10 // after warm-up
	// maxGoroutineDrift allows for gRPC's per-stream goroutines, which come
	// and go with the load's in-flight calls.
	maxGoroutineDrift = 0.10
	goroutineSlack    = 20
)

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, key)
	return d
}

// sample is one observation of the service process.
type sample struct {
	at         time.Duration // since the load began
	rssKB      int64
	goroutines int
}

// TestSoak is `make soak`.
func TestSoak(t *testing.T) {
	bin := os.Getenv("MLFLOW_AUTHZ_SOAK_BINARY")
	if bin == "" {
		t.Skip("MLFLOW_AUTHZ_SOAK_BINARY not set; run `make soak`")
	}
	duration := envDuration(t, "MLFLOW_AUTHZ_SOAK_DURATION", 5*time.Minute)
	warmup := envDuration(t, "MLFLOW_AUTHZ_SOAK_WARMUP", 30*time.Second)
	rate := 1000.0
	if v := os.Getenv("MLFLOW_AUTHZ_SOAK_RATE"); v != "" {
		var err error
		rate, err = strconv.ParseFloat(v, 64)
		require.NoError(t, err, "MLFLOW_AUTHZ_SOAK_RATE")
	}

	// The reference dataset at a tenth of its size: 100 users, 1,000
	// experiments, 10,000 runs and grants; the corpus hits both warm and
	// cold cache entries.
	ds := loadgen.Scaled(0.1)
	iss, err := devissuer.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = iss.Close() })
	tokens := map[string]string{}
	items, err := ds.Corpus(20000, 1, 1000, func(u devissuer.User) (string, error) {
		key := u.Username + "|" + strings.Join(u.Groups, ",")
		if tok, ok := tokens[key]; ok {
			return tok, nil
		}
		u.TTL = duration + warmup + 10*time.Minute
		tok, err := iss.Token(u)
		tokens[key] = tok
		return tok, err
	})
	require.NoError(t, err)
	kialiToken := filepath.Join(t.TempDir(), "kiali-token")
	require.NoError(t, os.WriteFile(kialiToken, []byte("kiali-sa-token"), 0o600))
	dbURL := seeded(t, ds)
	svc := startService(t, bin, loadgen.ServiceConfig(iss.URL, dbURL, kialiToken, false))

	mismatches := func() int {
		n := 0
		for _, it := range items[:2000] {
			res, err := svc.check(t.Context(), it.Call)
			if err != nil || res.Allowed != it.Allow || (!it.Allow && (res.Status != it.Status || res.Reason != it.Reason)) {
				if n < 5 {
					t.Logf("mismatch %s %s %s: got %+v (err %v), want allow=%v %d %s", it.Kind, it.Call.Method, it.Call.Target, res, err, it.Allow, it.Status, it.Reason)
				}
				n++
			}
		}
		return n
	}
	require.Zero(t, mismatches(), "decisions before the soak")

	conns, err := loadgen.Dial(svc.grpcAddr, 2)
	require.NoError(t, err)
	defer loadgen.Close(conns)

	var (
		mu      sync.Mutex
		samples []sample
	)
	began := time.Now()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s, err := svc.sample()
			if err != nil {
				continue
			}
			s.at = time.Since(began)
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}
	})
	res, err := loadgen.Run(t.Context(), conns, loadgen.Requests(loadgen.Calls(items)),
		loadgen.Options{Label: "soak", Rate: rate, Duration: duration, Warmup: warmup, Concurrency: 64})
	cancel()
	wg.Wait()
	require.NoError(t, err)
	end, err := svc.sample()
	require.NoError(t, err)

	// The baseline is the first sample after warm-up; the end is after the
	// load, once in-flight streams are gone.
	var base sample
	var postWarm []sample
	for _, s := range samples {
		if s.at >= warmup {
			postWarm = append(postWarm, s)
		}
	}
	require.NotEmpty(t, postWarm, "no sample after warm-up")
	base = postWarm[0]
	maxRSS, minG, maxG := base.rssKB, base.goroutines, base.goroutines
	for _, s := range postWarm {
		maxRSS = max(maxRSS, s.rssKB)
		minG, maxG = min(minG, s.goroutines), max(maxG, s.goroutines)
	}
	growth := float64(end.rssKB-base.rssKB) / float64(base.rssKB)
	peakGrowth := float64(maxRSS-base.rssKB) / float64(base.rssKB)

	fmt.Println(res.JSON())
	t.Logf("soak: %s at %.0f rps target (%.0f achieved) after %s warm-up: %d requests, %d allowed, %d denied, %d RPC errors",
		duration, rate, res.Throughput, warmup, res.Requests, res.Allowed, res.Denied, res.Errors)
	t.Logf("latency µs: p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f; generator lag p99 %.0f µs",
		res.LatencyUS.P50, res.LatencyUS.P90, res.LatencyUS.P99, res.LatencyUS.P999, res.LatencyUS.Max, res.LagUS.P99)
	t.Logf("RSS: %.1f MB after warm-up, peak %.1f MB (%+.1f%%), %.1f MB at the end (%+.1f%%)",
		float64(base.rssKB)/1024, float64(maxRSS)/1024, 100*peakGrowth, float64(end.rssKB)/1024, 100*growth)
	t.Logf("goroutines: %d after warm-up, %d–%d under load, %d at the end", base.goroutines, minG, maxG, end.goroutines)
	for _, s := range samples {
		t.Logf("  t=%3.0fs rss=%6.1f MB goroutines=%d", s.at.Seconds(), float64(s.rssKB)/1024, s.goroutines)
	}

	assert.Zero(t, res.Errors, "RPC errors (first: %s)", res.FirstError)
	assert.Less(t, growth, maxRSSGrowth, "RSS growth after warm-up")
	assert.LessOrEqual(t, float64(maxG-base.goroutines), maxGoroutineDrift*float64(base.goroutines)+goroutineSlack,
		"goroutines grew under load")
	assert.LessOrEqual(t, float64(end.goroutines), float64(base.goroutines)*(1+maxGoroutineDrift)+goroutineSlack,
		"goroutines left after the load")
	assert.Zero(t, mismatches(), "decisions after the soak")
}

// seeded creates a database with MLflow's schemas and d's rows.
func seeded(t *testing.T, d loadgen.Dataset) string {
	t.Helper()
	ctx := t.Context()
	url := storetest.Postgres(t)
	require.NoError(t, postgres.Migrate(ctx, url))
	exec := storetest.PostgresExec(t, url)
	require.NoError(t, storetest.CreateTrackingSchema(ctx, store.PostgreSQL, exec))
	for _, s := range d.SeedSQL() {
		require.NoError(t, exec(ctx, s), s)
	}
	return url
}

// service is a running `mlflow-authz serve`.
type service struct {
	pid                int
	grpcAddr, httpAddr string
	client             *grpcClient
}

func startService(t *testing.T, bin, config string) *service {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
	cmd := exec.Command(bin, "serve", "--config", path)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { process.Stop(cmd, 10*time.Second) })
	serving := make(chan map[string]any, 1)
	var head strings.Builder // the first lines, for a failed start
	var headMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 0; sc.Scan(); n++ {
			line := sc.Text()
			if n < 50 {
				headMu.Lock()
				head.WriteString(line + "\n")
				headMu.Unlock()
			}
			if strings.Contains(line, `"msg":"serving"`) {
				var m map[string]any
				_ = json.Unmarshal([]byte(line), &m)
				serving <- m
			}
		}
	}()
	s := &service{pid: cmd.Process.Pid}
	select {
	case m := <-serving:
		s.grpcAddr, _ = m["grpc_addr"].(string)
		s.httpAddr, _ = m["http_addr"].(string)
	case <-time.After(20 * time.Second):
		headMu.Lock()
		defer headMu.Unlock()
		t.Fatalf("serve did not start:\n%s", head.String())
	}
	s.client, err = dialClient(s.grpcAddr)
	require.NoError(t, err)
	t.Cleanup(s.client.close)
	return s
}

func (s *service) check(ctx context.Context, c extauthz.Call) (extauthz.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, c.CheckRequest())
	if err != nil {
		return extauthz.Result{}, err
	}
	return extauthz.ReadResponse(resp), nil
}

// sample reads the process's resident memory from /proc and its goroutine
// count from the go_goroutines metric.
func (s *service) sample() (sample, error) {
	var out sample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return out, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			out.rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			out.goroutines, _ = strconv.Atoi(strings.TrimSpace(rest))
			return out, nil
		}
	}
	return out, fmt.Errorf("soak: no go_goroutines in /metrics")
}
