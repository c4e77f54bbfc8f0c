package extauthz_test

import (
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

func benchServer(b *testing.B, opts ...extauthz.Option) *extauthz.Server {
	m, err := extauthz.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return extauthz.NewServer(newTestEngine(b), nil, m, opts...)
}

func benchRequest() *authv3.CheckRequest {
	return istioRequest("GET", mlflowHost, "/api/2.0/mlflow/experiments/get?experiment_id=1", withBearer("alice"))
}

// BenchmarkCheck is one allow over a real loopback gRPC connection: what a
// sidecar pays per request, minus the network.
func BenchmarkCheck(b *testing.B) {
	client := authv3.NewAuthorizationClient(dial(b, startGRPC(b, extauthz.GRPCOptions{Server: benchServer(b)})))
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Check(b.Context(), req)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatalf("check: %v %v", err, resp.GetStatus())
		}
	}
}

// BenchmarkCheckInProcess is the server's own cost: proto → Request →
// decision → proto, plus metrics, with no transport.
func BenchmarkCheckInProcess(b *testing.B) { benchInProcess(b, benchServer(b)) }

// BenchmarkCheckInProcessWithTimeout is BenchmarkCheckInProcess with
// server.check_timeout's default, as serve runs it.
func BenchmarkCheckInProcessWithTimeout(b *testing.B) {
	benchInProcess(b, benchServer(b, extauthz.WithTimeout(2*time.Second)))
}

func benchInProcess(b *testing.B, srv *extauthz.Server) {
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := srv.Check(b.Context(), req)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatalf("check: %v %v", err, resp.GetStatus())
		}
	}
}
