package bench

import (
	"log/slog"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/logsink"
	"github.com/mlflow-authz/mlflow-authz/authz/server"
	"github.com/mlflow-authz/mlflow-authz/integration/loadgen"
)

// BenchmarkCorpusInProcess is the service's own cost per kind of call in
// the benchmark corpus, warm caches, without the network: the engine behind
// extauthz.Server with its metrics and the decision log (JSON through the
// service's own handler, discarded).
//
// "mix-cold" is the mix with the CPU's caches cold: before each check it
// writes to 16 MB of other memory, as the generator, PostgreSQL and the
// other tenants do between two checks at 1,000 rps, then copies the request
// (grpc-go hands the service a request it has just decoded), and it reports
// the checks' own time (check-ns/op; ns/op includes the rest). The
// permission caches stay warm. That is the cost the fixed-rate runs of TestBench pay
// and the warm loop hides (docs/performance.md, the tail, item 11).
// It needs PostgreSQL, like the smoke test.
func BenchmarkCorpusInProcess(b *testing.B) {
	fx := newFixture(b)
	url, _ := seeded(b, smokeDataset)
	cfg, err := config.Parse([]byte(loadgen.ServiceConfig(fx.iss.URL, url, fx.kialiToken, false)), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	run, err := server.Start(b.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(run.Stop)
	m, err := extauthz.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	log, sink := logsink.New(discard{}, logsink.Options{})
	b.Cleanup(func() { _ = sink.Close() })
	srv := extauthz.NewServer(run.Engine(), log, m)
	items, err := smokeDataset.Corpus(2000, 1, 40, fx.iss.Token)
	if err != nil {
		b.Fatal(err)
	}
	byKind := map[string][]*authv3.CheckRequest{}
	var kinds []string
	for _, it := range items {
		if it.Allow {
			if _, ok := byKind[it.Kind]; !ok {
				kinds = append(kinds, it.Kind)
			}
			byKind[it.Kind] = append(byKind[it.Kind], it.Call.CheckRequest())
		}
	}
	all := loadgen.Requests(loadgen.Calls(items))
	bench := func(name string, reqs []*authv3.CheckRequest) {
		for _, r := range reqs { // warm every cache
			if _, err := srv.Check(b.Context(), r); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := srv.Check(b.Context(), reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	bench("mix", all)
	b.Run("mix-cold", func(b *testing.B) {
		evict := make([]byte, evictSize)
		var in time.Duration
		n := 0
		for b.Loop() {
			evictCaches(evict)
			// A fresh copy, as grpc-go decodes every request into memory
			// it has just written: the request itself is never cold.
			req := proto.Clone(all[n%len(all)]).(*authv3.CheckRequest)
			start := time.Now()
			if _, err := srv.Check(b.Context(), req); err != nil {
				b.Fatal(err)
			}
			in += time.Since(start)
			n++
		}
		b.ReportMetric(float64(in.Nanoseconds())/float64(n), "check-ns/op")
	})
	for _, k := range kinds {
		bench(k, byKind[k])
	}
}

// evictSize is half the last-level cache of the machines this runs on and
// eight times their L2: written between two checks, it leaves a check about
// as cold as the system-wide profile of the fixed-rate runs found it
// (docs/performance.md, the tail, item 11).
const evictSize = 16 << 20

// evictCaches writes a byte in every cache line of buf, which evicts what
// the check before it left in the CPU's caches.
//
//go:noinline
func evictCaches(buf []byte) {
	for i := 0; i < len(buf); i += 64 {
		buf[i]++
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
