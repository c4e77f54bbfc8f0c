package loadgen_test

import (
	"context"
	"encoding/json"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/integration/loadgen"
)

// startNoop serves the floor behind the service's own gRPC settings.
func startNoop(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: loadgen.NewNoop()})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

func fakeToken(u devissuer.User) (string, error) { return "tok-" + u.Username, nil }

// noopLoad dials the floor twice and builds a small corpus for it.
func noopLoad(t *testing.T) ([]*grpc.ClientConn, []*authv3.CheckRequest) {
	t.Helper()
	conns, err := loadgen.Dial(startNoop(t), 2)
	require.NoError(t, err)
	t.Cleanup(func() { loadgen.Close(conns) })
	items, err := loadgen.Scaled(0.1).Corpus(500, 1, 50, fakeToken)
	require.NoError(t, err)
	return conns, loadgen.Requests(loadgen.Calls(items))
}

func TestRunAgainstNoop(t *testing.T) {
	conns, reqs := noopLoad(t)

	tests := []struct {
		name string
		opts loadgen.Options
		mode string
	}{
		{"closed loop", loadgen.Options{Label: "floor", Concurrency: 8, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond}, "closed"},
		{"open loop", loadgen.Options{Label: "floor", Concurrency: 8, Rate: 400, Duration: 500 * time.Millisecond}, "open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := loadgen.Run(t.Context(), conns, reqs, tt.opts)
			require.NoError(t, err)
			assert.Equal(t, tt.mode, res.Mode)
			assert.Zero(t, res.Errors, res.FirstError)
			assert.Zero(t, res.Denied, "the floor allows everything")
			assert.Equal(t, res.Requests, res.Allowed)
			assert.Equal(t, res.Requests, res.Histogram().Count())
			require.Positive(t, res.Requests)
			assert.Positive(t, res.LatencyUS.P50)
			assert.LessOrEqual(t, res.LatencyUS.P50, res.LatencyUS.P99)
			assert.LessOrEqual(t, res.LatencyUS.P99, res.LatencyUS.Max)
			if tt.opts.Rate > 0 {
				// An open loop sends its schedule, no more and no less.
				assert.InDelta(t, tt.opts.Rate*tt.opts.Duration.Seconds(), float64(res.Requests), 2)
			}

			var line map[string]any
			require.NoError(t, json.Unmarshal([]byte(res.JSON()), &line))
			for _, k := range []string{"mode", "requests", "allowed", "denied", "errors", "rps", "latency_us"} {
				assert.Contains(t, line, k)
			}
			for _, k := range []string{"p50", "p90", "p99", "p99_9", "max"} {
				assert.Contains(t, line["latency_us"], k)
			}
		})
	}
}

func TestRunCountSendsTheCorpusOnce(t *testing.T) {
	conns, err := loadgen.Dial(startNoop(t), 2)
	require.NoError(t, err)
	t.Cleanup(func() { loadgen.Close(conns) })
	items, err := loadgen.Scaled(0.1).Corpus(300, 1, 50, fakeToken)
	require.NoError(t, err)
	res, err := loadgen.Run(t.Context(), conns, loadgen.Requests(loadgen.Calls(items)),
		loadgen.Options{Concurrency: 16, Count: len(items), Duration: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, uint64(len(items)), res.Requests)
	assert.Less(t, res.Seconds, 30.0, "the run ends with the count, not the duration")
}

func TestRunCountsErrors(t *testing.T) {
	// Nothing listens on a closed port: every call is an error, never an
	// allow or a deny.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	conns, err := loadgen.Dial(addr, 1)
	require.NoError(t, err)
	t.Cleanup(func() { loadgen.Close(conns) })
	items, err := loadgen.Scaled(0.1).Corpus(10, 1, 5, fakeToken)
	require.NoError(t, err)
	res, err := loadgen.Run(t.Context(), conns, loadgen.Requests(loadgen.Calls(items)),
		loadgen.Options{Concurrency: 2, Rate: 50, Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	assert.Positive(t, res.Errors)
	assert.Equal(t, res.Requests, res.Errors)
	assert.NotEmpty(t, res.FirstError)
	assert.Zero(t, res.Allowed+res.Denied)
}

func TestCorpusShape(t *testing.T) {
	d := loadgen.Scaled(0.1)
	items, err := d.Corpus(5000, 7, 100, fakeToken)
	require.NoError(t, err)
	require.Len(t, items, 5000)
	again, err := d.Corpus(5000, 7, 100, fakeToken)
	require.NoError(t, err)
	assert.Equal(t, items, again, "the same seed gives the same corpus")

	kinds := map[string]int{}
	denied, hosts, users := 0, map[string]int{}, map[string]bool{}
	for _, it := range items {
		kinds[it.Kind]++
		hosts[it.Call.Host]++
		users[it.Call.Headers["authorization"]] = true
		if !it.Allow {
			denied++
		}
		req := it.Call.CheckRequest()
		require.Equal(t, it.Call.Target, req.GetAttributes().GetRequest().GetHttp().GetPath())
		if it.Kind == "otel/v1-traces" {
			assert.Equal(t, loadgen.CollectorPrincipal, it.Call.Principal)
			assert.NotContains(t, it.Call.Headers, "authorization", "the collector sends no token")
		}
	}
	assert.Len(t, kinds, 10)
	assert.InDelta(t, 0.10, float64(denied)/float64(len(items)), 0.03, "about 10%% denied")
	assert.Len(t, hosts, 3)
	assert.Greater(t, len(users), 50, "calls spread over many users")
}

func TestCorpusRefusesTooSmallDatasets(t *testing.T) {
	_, err := loadgen.Dataset{Users: 10, Experiments: 10, Runs: 10, Grants: 10}.Corpus(10, 1, 10, fakeToken)
	require.ErrorContains(t, err, "too small")
}

// TestRunPauseGC: with PauseGC the generator collects no garbage of its
// own during the run, where it otherwise would, and its collector's
// settings are restored afterwards.
func TestRunPauseGC(t *testing.T) {
	conns, reqs := noopLoad(t)
	// A collection for every 1% of heap growth: any run collects.
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	limit := debug.SetMemoryLimit(-1) // reads it

	opts := loadgen.Options{Concurrency: 8, Rate: 400, Duration: 300 * time.Millisecond}
	res, err := loadgen.Run(t.Context(), conns, reqs, opts)
	require.NoError(t, err)
	assert.Positive(t, res.ClientGCs, "without PauseGC the run collects")

	opts.PauseGC = true
	res, err = loadgen.Run(t.Context(), conns, reqs, opts)
	require.NoError(t, err)
	require.Positive(t, res.Requests)
	assert.Zero(t, res.ClientGCs)
	assert.Equal(t, 1, debug.SetGCPercent(1), "GOGC restored")
	assert.Equal(t, limit, debug.SetMemoryLimit(-1), "memory limit restored")
}

// Merge pools interleaved runs: counts and measured time add up, and the
// latencies are the runs' histograms together, so its quantiles lie within
// the runs' own.
func TestMergePoolsRuns(t *testing.T) {
	conns, reqs := noopLoad(t)
	opts := loadgen.Options{Label: "floor", Concurrency: 8, Rate: 400, Duration: 300 * time.Millisecond}
	var runs []loadgen.Result
	for range 3 {
		r, err := loadgen.Run(t.Context(), conns, reqs, opts)
		require.NoError(t, err)
		runs = append(runs, r)
	}
	m := loadgen.Merge(runs...)
	assert.Equal(t, "floor", m.Label)
	assert.Equal(t, "open", m.Mode)
	var n uint64
	var secs, lo, hi float64
	lo = runs[0].LatencyUS.P99
	for _, r := range runs {
		n += r.Requests
		secs += r.Seconds
		lo, hi = min(lo, r.LatencyUS.P99), max(hi, r.LatencyUS.P99)
	}
	assert.Equal(t, n, m.Requests)
	assert.Equal(t, n, m.Allowed)
	assert.Equal(t, n, m.Histogram().Count())
	assert.InDelta(t, secs, m.Seconds, 1e-9)
	assert.InDelta(t, float64(n)/secs, m.Throughput, 1e-6)
	// The open loop's rate is kept: three runs at 400/s are 400/s.
	assert.InDelta(t, opts.Rate, m.Throughput, 20)
	assert.GreaterOrEqual(t, m.LatencyUS.P99, lo)
	assert.LessOrEqual(t, m.LatencyUS.P99, hi)
	assert.LessOrEqual(t, m.LatencyUS.Max, max(runs[0].LatencyUS.Max, runs[1].LatencyUS.Max, runs[2].LatencyUS.Max))
	require.NotNil(t, m.LagUS, "an open loop's lag is pooled too")
	assert.Positive(t, m.LagUS.P50)
	assert.Equal(t, loadgen.Result{}, loadgen.Merge())
}

// recorder allows every check and keeps the paths it saw.
type recorder struct {
	authv3.UnimplementedAuthorizationServer
	mu    sync.Mutex
	paths []string
}

func (r *recorder) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	r.mu.Lock()
	r.paths = append(r.paths, req.GetAttributes().GetRequest().GetHttp().GetPath())
	r.mu.Unlock()
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

// Start sends the corpus from the given index on, wrapping around, so
// runs taken apart go on where the one before stopped.
func TestRunStartsWhereTold(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &recorder{}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, rec)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conns, err := loadgen.Dial(ln.Addr().String(), 1)
	require.NoError(t, err)
	t.Cleanup(func() { loadgen.Close(conns) })
	var reqs []*authv3.CheckRequest
	for i := range 10 {
		reqs = append(reqs, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Path: "/" + strconv.Itoa(i)}}}})
	}
	res, err := loadgen.Run(t.Context(), conns, reqs, loadgen.Options{Concurrency: 1, Start: 7, Count: 5, Duration: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, uint64(5), res.Requests)
	assert.Equal(t, []string{"/7", "/8", "/9", "/0", "/1"}, rec.paths)
}

// A spinning floor holds each check for its Spin, on its CPU; the real
// floor does not wait at all.
func TestNoopSpin(t *testing.T) {
	n := loadgen.NewNoop()
	start := time.Now()
	_, err := n.Check(t.Context(), &authv3.CheckRequest{})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), time.Millisecond)

	n.Spin = 3 * time.Millisecond
	start = time.Now()
	resp, err := n.Check(t.Context(), &authv3.CheckRequest{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), n.Spin)
	assert.NotNil(t, resp.GetOkResponse(), "it still allows")
}
