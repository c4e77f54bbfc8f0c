package extproc_test

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/extproc"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// The budget (docs/performance.md): filtering a 1,000-row experiments/search
// page for a user with 50 grants, warm caches, costs at most 2 ms of CPU,
// and memory bounded by the response: no tree of the body, at most one
// copy of it.

// benchPage is MLflow's answer to experiments/search with max_results=1000:
// rows as wide as MLflow writes them (a name, an artifact location, times,
// two tags).
func benchPage(rows int) string {
	var b strings.Builder
	b.WriteString(`{"experiments":[`)
	for i := 1; i <= rows; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"experiment_id":"%d","name":"team-%d/experiment-%d","artifact_location":"mlflow-artifacts:/%d","lifecycle_stage":"active","last_update_time":%d,"creation_time":1700000000000,"tags":[{"key":"mlflow.note.content","value":"baseline run for team %d"},{"key":"owner","value":"user-%d"}]}`,
			i, i%20, i, i, 1700000000000+i, i%20, i%50)
	}
	b.WriteString(`],"next_page_token":"eyJvZmZzZXQiOiAxMDAwfQ=="}`)
	return b.String()
}

// benchFixture is the filter over a cached SQLite store in which alice has
// 50 grants (READ on every 20th experiment) plus 10 through a group.
func benchFixture(b *testing.B) (*mlflow.Policy, extprocv3.ExternalProcessorClient) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "mlflow.db")
	require.NoError(b, sqlite.Migrate(b.Context(), path))
	exec := storetest.SQLiteExec(b, path)
	require.NoError(b, storetest.CreateTrackingSchema(b.Context(), store.SQLite, exec))
	var grants, group []string
	for i := 1; i <= 50; i++ {
		grants = append(grants, fmt.Sprintf("('%d', 1, 'READ')", i*20))
	}
	for i := 1; i <= 10; i++ {
		group = append(group, fmt.Sprintf("('%d', 1, 'READ')", i*7))
	}
	storetest.Must(b, exec,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', false), (2, 'root', true)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES `+strings.Join(grants, ", "),
		`INSERT INTO groups (id, group_name) VALUES (1, 'team')`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES `+strings.Join(group, ", "),
	)
	st, err := sqlite.Open(b.Context(), sqlite.Config{TrackingPath: path})
	require.NoError(b, err)
	b.Cleanup(st.Close)
	c := cache.New(st, cache.Options{})
	spiffe, err := authn.NewSPIFFE(authn.SPIFFEConfig{TrustDomain: "cluster.local", Workloads: []authn.SPIFFEWorkloadConfig{
		{ID: "ns/team/sa/alice", Username: "alice", Groups: []string{"team"}}, {ID: "ns/ops/sa/root", Username: "root"},
	}})
	require.NoError(b, err)
	policy, err := mlflow.New(c, mlflow.Config{}, nil)
	require.NoError(b, err)
	engine, err := authz.NewEngine(authz.Config{
		Apps:           []*authz.App{{Name: "mlflow", Hosts: []string{host}, Policy: policy}},
		Authenticators: []authz.Authenticator{spiffe},
	})
	require.NoError(b, err)
	srv := extproc.NewServer(engine, nil, nil, extproc.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: extauthz.NewServer(engine, nil, nil), Register: srv.Register})
	go func() { _ = gs.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(b, err)
	b.Cleanup(func() { _ = conn.Close(); gs.Stop() })
	return policy, extprocv3.NewExternalProcessorClient(conn)
}

// BenchmarkFilterBody is the filter's own work on the page: validating and
// reading every row, deciding it with mlflow.Rows over the warm grant
// cache, and writing the kept rows. It runs on one goroutine; cpu-ns/op is
// the process's CPU time per page (the garbage collector's included), which
// on a shared machine is the honest figure for the 2 ms budget.
func BenchmarkFilterBody(b *testing.B) {
	policy, _ := benchFixture(b)
	body := []byte(benchPage(1000))
	id := &authz.Identity{Kind: authz.KindUser, Username: "alice", Groups: []string{"team"}}
	once := func() int {
		rows, err := policy.Rows(b.Context(), id, &authz.Request{})
		require.NoError(b, err)
		out, err := extproc.FilterBody(b.Context(), "SearchExperiments", body, rows)
		require.NoError(b, err)
		return len(out)
	}
	b.ReportMetric(float64(once())/float64(len(body)), "out/in") // warms the caches
	b.SetBytes(int64(len(body)))
	authztest.LoopCPU(b, func() { once() })
}

// BenchmarkFilterSearchPage is one whole filtered exchange over a real gRPC
// stream (request headers, response headers, the 1,000-row body), warm.
// The filter's own CPU is the body message; the rest is gRPC.
func BenchmarkFilterSearchPage(b *testing.B) {
	_, client := benchFixture(b)
	body := benchPage(1000)
	run := func(b *testing.B, count bool) int {
		s, err := client.Process(b.Context())
		require.NoError(b, err)
		defer func() { _ = s.CloseSend() }()
		send := func(r *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			require.NoError(b, s.Send(r))
			resp, err := s.Recv()
			require.NoError(b, err)
			return resp
		}
		send(requestHeaders("POST", "/api/2.0/mlflow/experiments/search", peerAlice))
		send(responseHeaders("200", jsonHeaders))
		out := send(responseBody(body, true)).GetResponseBody().GetResponse().GetBodyMutation().GetBody()
		if !count {
			return 0
		}
		var page struct{ Experiments []json.RawMessage }
		if err := json.Unmarshal(out, &page); err != nil {
			b.Fatal(err)
		}
		return len(page.Experiments)
	}
	require.Equal(b, 60, run(b, true), "50 own grants and 10 group grants (warms the cache)")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		run(b, false)
	}
}

// BenchmarkFilterHeadersOnly is the one round trip of a listing for an
// admin (or a point read of a readable resource): mode_override asks for
// nothing more, no body crosses.
func BenchmarkFilterHeadersOnly(b *testing.B) {
	_, client := benchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		s, err := client.Process(b.Context())
		require.NoError(b, err)
		require.NoError(b, s.Send(requestHeaders("GET", searchPath, peerRoot)))
		resp, err := s.Recv()
		require.NoError(b, err)
		if resp.GetModeOverride() == nil {
			b.Fatal("no mode_override")
		}
		_ = s.CloseSend()
	}
}
