// Package bench compares the real mlflow-authz service with a no-op
// ext_authz floor under the same Envoy-shaped load (package loadgen).
//
// TestSmoke runs with every `go test` (a few seconds, no speed assertions):
// it seeds a small dataset, starts the service in-process, checks that every
// corpus call gets the decision the dataset implies (status and reason on
// denies), and drives both the service and the floor with the load
// generator.
//
// TestBench is the end-to-end benchmark behind `make bench`. It runs only
// when MLFLOW_AUTHZ_BENCH_BINARY names a built mlflow-authz binary: it
// seeds PostgreSQL in bulk at three scales, starts `mlflow-authz serve` and
// a no-op floor as separate processes behind the same grpc-go settings,
// alternates short service and floor runs (A/B/A/B, summarised by medians), and writes one JSON report
// to MLFLOW_AUTHZ_BENCH_OUT (default bench-results/) and a summary to
// stdout. Environment:
//
//	MLFLOW_AUTHZ_BENCH_BINARY   path of the binary (required)
//	MLFLOW_AUTHZ_BENCH_OUT      directory for the JSON report and profiles
//	MLFLOW_AUTHZ_BENCH_SECONDS  length of each measured run (default 3)
//	MLFLOW_AUTHZ_BENCH_PAIRS    service/floor pairs per mode (default 5)
//	MLFLOW_AUTHZ_BENCH_SCALES   comma-separated dataset scales (default 1,0.1,10)
//	MLFLOW_AUTHZ_BENCH_BASELINE a second binary (say the main branch's build) that takes
//	                            its turn in every pair, for an A/B of two builds
//	MLFLOW_AUTHZ_BENCH_SLICES   splits each fixed-rate run of a pair into this many turns per
//	                            server, pooled per server (default 1): the servers then meet
//	                            the machine's other tenants within seconds of each other
//	MLFLOW_AUTHZ_BENCH_FLOOR_SPIN a duration the floor spins on its CPU in every check (a
//	                            calibration: how the tail follows a check's CPU; not the floor)
//	MLFLOW_AUTHZ_BENCH_GENERATOR_NICE a nice value (say -10): every fixed-rate pair is followed
//	                            by a second with the load generator's threads at it, first to
//	                            a CPU as Envoy on its own cores would be (needs root below 0)
//	MLFLOW_AUTHZ_BENCH_TRACE    when set, an execution trace of the service's first run at
//	                            the fixed rate at scale 1 (service-trace.out; `go tool trace`)
//
// The runs at a fixed rate pause the generator's own garbage collector
// (loadgen.Options.PauseGC): its collections stalled every call in flight,
// came more often during the service's runs than the floor's (the
// service's responses are larger to decode), and moved the p99 by more
// than the service did. Envoy, the client these runs stand in for, has no
// collector. Each result says how many collections the generator made.
//
// The p99 gap at the fixed rate comes with a 90% bootstrap interval (pairs
// drawn with replacement, a pair's two runs together): on a shared two-core
// machine a pair's p99 moves by a millisecond from one run to the next, and
// the interval says whether a run could tell the 0.5 ms target met or
// missed at all. Runs can be pooled by their pairs for a narrower one:
// TestPool does it for the reports that MLFLOW_AUTHZ_BENCH_POOL lists
// (paths separated by spaces or commas), scale by scale, and refuses
// reports whose pairs ran in another rhythm (run length, slices, floor
// spin, a baseline taking turns):
//
//	MLFLOW_AUTHZ_BENCH_POOL="r1/latest.json r2/latest.json" go test ./integration/bench -run '^TestPool$' -v
//
// The report counts the permission-cache misses per thousand checks during
// the fixed-rate runs (each a PostgreSQL round trip on a check's path) and
// the background re-reads, and gives the CPU per check there of the
// service, the floor and PostgreSQL (the test server's process tree:
// storetest.PostgresCPU). The database shares this machine's cores with
// the generator and both servers, so what the service makes it do is part
// of the service's cost here, as it would not be with the database on
// another machine.
package bench
