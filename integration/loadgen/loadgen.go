package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// Options shape one run. Zero values take the defaults.
type Options struct {
	// Label names the run in its Result (e.g. "service" or "floor").
	Label string
	// Concurrency is the number of callers, hence the most streams in flight
	// over all connections (default 64; Envoy keeps one stream per request
	// in flight).
	Concurrency int
	// Rate is the open-loop request rate per second; 0 runs closed loop.
	Rate float64
	// Duration is how long results are recorded (default 5s).
	Duration time.Duration
	// Warmup runs the same load before recording, so that connections,
	// caches and the Go runtime are warm (default none).
	Warmup time.Duration
	// Start is the index in the corpus of the first request sent (default
	// 0): runs taken apart continue through the corpus instead of sending
	// its first requests each time.
	Start int
	// Count, in closed loop, ends the run once this many requests have been
	// sent, even before Duration: Count = len(reqs) sends the corpus once,
	// which warms every cache the corpus can reach.
	Count int
	// PauseGC collects the generator's own garbage before the run and
	// none during it (up to a memory limit 2 GiB above the heap it starts
	// with). A collection in this process stalls every call in flight for
	// its mark phase, and it comes more often while the server's
	// responses are larger, so at a fixed rate it moves the tail by more
	// than the server does; Envoy, in C++, has no such pause. It sets a
	// process-wide setting: runs with it must not overlap.
	PauseGC bool
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	return o
}

// Latency is a latency summary in microseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Result is the outcome of one run.
type Result struct {
	Label string `json:"label,omitempty"`
	// Mode is "closed" or "open".
	Mode        string  `json:"mode"`
	Conns       int     `json:"conns"`
	Concurrency int     `json:"concurrency"`
	TargetRate  float64 `json:"target_rps,omitempty"`
	// Seconds is the measured wall time.
	Seconds float64 `json:"seconds"`
	// Requests counts every finished call; Allowed + Denied + Errors.
	Requests uint64 `json:"requests"`
	Allowed  uint64 `json:"allowed"`
	Denied   uint64 `json:"denied"`
	// Errors are calls that failed at the gRPC level: Envoy would take its
	// failure_mode_allow path for them, so any is a bug.
	Errors uint64 `json:"errors"`
	// FirstError is the text of the first error, for diagnosis.
	FirstError string  `json:"first_error,omitempty"`
	Throughput float64 `json:"rps"`
	// LatencyUS is measured from the intended send time in open loop.
	LatencyUS Latency `json:"latency_us"`
	// LagUS is, in open loop, how late the generator itself sent requests
	// after their due time (a busy machine or a full set of callers); it is
	// part of LatencyUS, as it would be for a real client.
	LagUS *Latency `json:"lag_us,omitempty"`
	// ClientGCs counts the generator's own garbage collections during the
	// run, warm-up included.
	ClientGCs uint64 `json:"client_gcs"`

	hist, lag *Histogram
}

// Histogram returns the latencies behind the summary.
func (r Result) Histogram() *Histogram { return r.hist }

// JSON is the result as one JSON line.
func (r Result) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// summarize fills in the counts and summaries that follow from the
// histograms and the counters.
func (r *Result) summarize() {
	r.Requests = r.Allowed + r.Denied + r.Errors
	r.Throughput = float64(r.Requests) / r.Seconds
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	summary := func(h *Histogram) Latency {
		return Latency{P50: us(h.Quantile(0.5)), P90: us(h.Quantile(0.9)), P99: us(h.Quantile(0.99)),
			P999: us(h.Quantile(0.999)), Max: us(h.Max()), Mean: us(h.Mean())}
	}
	r.LatencyUS = summary(r.hist)
	r.LagUS = nil
	if r.lag != nil {
		l := summary(r.lag)
		r.LagUS = &l
	}
}

// Merge is one result of runs of the same shape taken apart (say
// interleaved with another server's): their latencies and counts pooled,
// their measured time summed. It takes the first run's label and shape.
func Merge(rs ...Result) Result {
	if len(rs) == 0 {
		return Result{}
	}
	m := rs[0]
	m.Seconds, m.Allowed, m.Denied, m.Errors, m.ClientGCs = 0, 0, 0, 0, 0
	m.hist = NewHistogram()
	if m.lag != nil {
		m.lag = NewHistogram()
	}
	for _, r := range rs {
		m.Seconds += r.Seconds
		m.Allowed, m.Denied, m.Errors, m.ClientGCs = m.Allowed+r.Allowed, m.Denied+r.Denied, m.Errors+r.Errors, m.ClientGCs+r.ClientGCs
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
		m.hist.Merge(r.hist)
		if m.lag != nil && r.lag != nil {
			m.lag.Merge(r.lag)
		}
	}
	m.summarize()
	return m
}

// Dial opens n separate HTTP/2 connections to addr, as Envoy keeps a
// connection per worker thread to its ext_authz cluster.
func Dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range max(n, 1) {
		// Each ClientConn holds its own transport; with one address and the
		// default pick_first it is exactly one TCP connection.
		c, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(extauthz.DefaultMaxRecvMsgSize)))
		if err != nil {
			Close(conns)
			return nil, fmt.Errorf("loadgen: dial %s: %w", addr, err)
		}
		c.Connect()
		conns = append(conns, c)
	}
	return conns, nil
}

// Close closes connections opened by Dial.
func Close(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// Requests builds the CheckRequests for calls once, so a run sends the same
// messages again and again without building any.
func Requests(calls []extauthz.Call) []*authv3.CheckRequest {
	reqs := make([]*authv3.CheckRequest, len(calls))
	for i, c := range calls {
		reqs[i] = c.CheckRequest()
	}
	return reqs
}

// caller is one concurrent sender with its own counters.
type caller struct {
	hist, lag                *Histogram
	allowed, denied, errored uint64
	firstErr                 error
}

func (c *caller) send(ctx context.Context, client authv3.AuthorizationClient, req *authv3.CheckRequest, from time.Time, record bool) {
	resp, err := client.Check(ctx, req)
	lat := time.Since(from)
	if !record {
		return
	}
	c.hist.Record(lat)
	switch {
	case err != nil:
		c.errored++
		if c.firstErr == nil {
			c.firstErr = err
		}
	case resp.GetStatus().GetCode() == int32(codes.OK):
		c.allowed++
	default:
		c.denied++
	}
}

// Run sends reqs round-robin over conns for opts.Warmup plus opts.Duration
// and returns what it measured. Calls still in flight when the time is up
// finish (bounded by ctx) and count.
func Run(ctx context.Context, conns []*grpc.ClientConn, reqs []*authv3.CheckRequest, opts Options) (Result, error) {
	if len(conns) == 0 || len(reqs) == 0 {
		return Result{}, errors.New("loadgen: need at least one connection and one request")
	}
	opts = opts.withDefaults()
	clients := make([]authv3.AuthorizationClient, len(conns))
	for i, c := range conns {
		clients[i] = authv3.NewAuthorizationClient(c)
	}
	callers := make([]*caller, opts.Concurrency)
	for i := range callers {
		callers[i] = &caller{hist: NewHistogram(), lag: NewHistogram()}
	}

	var next atomic.Uint64 // index of the next request in the corpus
	next.Store(uint64(max(opts.Start, 0)))
	pick := func() *authv3.CheckRequest { return reqs[(next.Add(1)-1)%uint64(len(reqs))] }
	limit := uint64(1<<63 - 1)
	if opts.Count > 0 && opts.Rate <= 0 {
		limit = uint64(max(opts.Start, 0) + opts.Count)
	}

	if opts.PauseGC {
		defer pauseGC()()
	}
	gcs := gcCycles()
	begin := time.Now()
	measureFrom := begin.Add(opts.Warmup)
	end := measureFrom.Add(opts.Duration)
	var wg sync.WaitGroup
	mode := "closed"
	if opts.Rate <= 0 {
		for i, c := range callers {
			client := clients[i%len(clients)]
			wg.Go(func() {
				for ctx.Err() == nil {
					from := time.Now()
					if !from.Before(end) {
						return
					}
					k := next.Add(1) - 1
					if k >= limit {
						return
					}
					c.send(ctx, client, reqs[k%uint64(len(reqs))], from, !from.Before(measureFrom))
				}
			})
		}
	} else {
		mode = "open"
		interval := time.Duration(float64(time.Second) / opts.Rate)
		due := make(chan time.Time, 1<<16)
		for i, c := range callers {
			client := clients[i%len(clients)]
			wg.Go(func() {
				for at := range due {
					if !at.Before(measureFrom) {
						c.lag.Record(time.Since(at))
					}
					c.send(ctx, client, pick(), at, !at.Before(measureFrom))
				}
			})
		}
		// The schedule is fixed in advance: request k is due at
		// begin + k·interval whatever happened to earlier ones.
		for k := int64(0); ctx.Err() == nil; {
			now := time.Now()
			for ; ; k++ {
				at := begin.Add(time.Duration(k) * interval)
				if at.After(now) || !at.Before(end) {
					break
				}
				due <- at
			}
			if !begin.Add(time.Duration(k) * interval).Before(end) {
				break
			}
			time.Sleep(time.Until(begin.Add(time.Duration(k) * interval)))
		}
		close(due)
	}
	wg.Wait()
	// Throughput is over the measured window; calls that finished after it
	// were still sent within it. A run ended by Count is shorter.
	elapsed := opts.Duration
	if took := time.Since(measureFrom); took < elapsed {
		elapsed = took
	}

	res := Result{Label: opts.Label, Mode: mode, Conns: len(conns), Concurrency: opts.Concurrency,
		TargetRate: opts.Rate, Seconds: elapsed.Seconds(), hist: NewHistogram()}
	if mode == "open" {
		res.lag = NewHistogram()
	}
	for _, c := range callers {
		res.hist.Merge(c.hist)
		if res.lag != nil {
			res.lag.Merge(c.lag)
		}
		res.Allowed += c.allowed
		res.Denied += c.denied
		res.Errors += c.errored
		if c.firstErr != nil && res.FirstError == "" {
			res.FirstError = c.firstErr.Error()
		}
	}
	res.ClientGCs = gcCycles() - gcs
	res.summarize()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadgen: run cut short: %w", err)
	}
	return res, nil
}

// pauseGC collects garbage now and turns the collector off, with a memory
// limit as a backstop; the function it returns restores both.
func pauseGC() (restore func()) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	limit := debug.SetMemoryLimit(int64(m.HeapAlloc) + 2<<30)
	percent := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// gcCycles is how many garbage collections this process has completed.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Noop is the benchmark floor: an Authorization server that allows every
// request with one upstream header and does nothing else, so a run against
// it measures gRPC, HTTP/2 and the load generator alone.
type Noop struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
	// Spin, when positive, keeps each check busy on its CPU for that
	// long: a floor that costs what a real check costs, to measure how
	// the tail follows a check's CPU on the machine at hand.
	Spin time.Duration
}

// NewNoop returns the floor server.
func NewNoop() *Noop {
	return &Noop{resp: noopResponse()}
}

// Check allows with the prebuilt response, after spinning for n.Spin.
func (n *Noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if n.Spin > 0 { // the real floor reads no clock
		for start := time.Now(); time.Since(start) < n.Spin; {
		}
	}
	return n.resp, nil
}
