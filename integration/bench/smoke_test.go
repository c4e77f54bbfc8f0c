package bench

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/server"
	"github.com/mlflow-authz/mlflow-authz/integration/loadgen"
)

// smokeDataset is the smallest dataset the corpus accepts with room for
// denies.
var smokeDataset = loadgen.Dataset{Users: 40, Experiments: 400, Runs: 800, Grants: 2000, Groups: 4}

// TestSmoke is the guard for `make bench`: the corpus means what it says
// against the real service, and the load generator drives the service and
// the floor without errors. It asserts no speed.
func TestSmoke(t *testing.T) {
	fx := newFixture(t)
	url, _ := seeded(t, smokeDataset)
	cfg, err := config.Parse([]byte(loadgen.ServiceConfig(fx.iss.URL, url, fx.kialiToken, false)), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	run, err := server.Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(run.Stop)

	items, err := smokeDataset.Corpus(400, 1, 40, fx.iss.Token)
	require.NoError(t, err)
	conns, err := loadgen.Dial(run.GRPCAddr, 2)
	require.NoError(t, err)
	t.Cleanup(func() { loadgen.Close(conns) })

	t.Run("every call gets the dataset's decision", func(t *testing.T) {
		client := authv3Client(conns[0])
		for i, it := range items {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			resp, err := client.Check(ctx, it.Call.CheckRequest())
			cancel()
			require.NoError(t, err)
			res := extauthz.ReadResponse(resp)
			if it.Allow {
				require.True(t, res.Allowed, "item %d %s %s %s: want ALLOW, got %d %s (%s)", i, it.Kind, it.Call.Method, it.Call.Target, res.Status, res.Reason, res.Message)
				continue
			}
			require.False(t, res.Allowed, "item %d %s %s %s: want DENY", i, it.Kind, it.Call.Method, it.Call.Target)
			require.Equal(t, it.Status, res.Status, "item %d %s %s: %s (%s)", i, it.Kind, it.Call.Target, res.Reason, res.Message)
			require.Equal(t, it.Reason, res.Reason, "item %d %s %s: %s", i, it.Kind, it.Call.Target, res.Message)
		}
	})

	t.Run("load generator against service and floor", func(t *testing.T) {
		want := 0
		for _, it := range items {
			if !it.Allow {
				want++
			}
		}
		reqs := loadgen.Requests(loadgen.Calls(items))
		opts := loadgen.Options{Concurrency: 8, Duration: 300 * time.Millisecond}
		svc, err := loadgen.Run(t.Context(), conns, reqs, opts)
		require.NoError(t, err)
		assert.Zero(t, svc.Errors, svc.FirstError)
		assert.Positive(t, svc.Allowed)
		assert.Positive(t, svc.Denied)

		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: loadgen.NewNoop()})
		go func() { _ = gs.Serve(ln) }()
		t.Cleanup(gs.Stop)
		floorConns, err := loadgen.Dial(ln.Addr().String(), 2)
		require.NoError(t, err)
		t.Cleanup(func() { loadgen.Close(floorConns) })
		floor, err := loadgen.Run(t.Context(), floorConns, reqs, loadgen.Options{Concurrency: 8, Rate: 500, Duration: 300 * time.Millisecond})
		require.NoError(t, err)
		assert.Zero(t, floor.Errors, floor.FirstError)
		assert.Equal(t, floor.Requests, floor.Allowed)
		t.Logf("service %s", svc.JSON())
		t.Logf("floor   %s", floor.JSON())
	})
}
