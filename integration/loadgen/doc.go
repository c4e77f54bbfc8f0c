// Package loadgen drives Envoy's ext_authz Check the way Envoy does: a few
// long-lived HTTP/2 connections, each carrying many concurrent streams, with
// CheckRequests built by extauthz.Call exactly as an Istio sidecar sends
// them.
//
// Two modes:
//
//   - closed loop (Options.Rate == 0): Concurrency callers send back to back,
//     which measures the highest throughput;
//   - open loop (Options.Rate > 0): requests are due at a fixed rate and each
//     latency is measured from the time the request was due, not from when a
//     free caller got round to sending it, so a stall shows in the tail
//     instead of silently slowing the load (no coordinated omission).
//
// Latencies go into a log-linear histogram (Histogram, written here rather
// than pulling in HdrHistogram; 1.6% resolution) and the outcome is one
// Result, which marshals to one JSON line.
//
// The generator's own cost is kept small: the CheckRequests are built once
// and reused for every send (gRPC only reads them), counters and histograms
// are per caller, and a call allocates nothing beyond what grpc-go does.
//
//	conns, _ := loadgen.Dial(addr, 2)
//	res, err := loadgen.Run(ctx, conns, loadgen.Requests(calls), loadgen.Options{Duration: 10 * time.Second})
//	fmt.Println(res.JSON())
//
// Dataset describes a synthetic MLflow installation (users, groups,
// experiments, runs, grants) both as the SQL that seeds it and as a corpus
// of realistic calls against it, with about 10% of them denied.
package loadgen
