package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/envoyheader"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Reasons of the filter's own answers. Each is an immediate response in
// MLflow's error shape; none ever lets an unfiltered row through.
const (
	// ReasonResponseEncoded: the response of a filtered route came
	// compressed (Content-Encoding), though the filter asked for identity.
	ReasonResponseEncoded authz.Reason = "response_encoded"
	// ReasonResponseNotJSON: the response of a filtered route is not an
	// MLflow JSON answer (its Content-Type, or a status with no rows).
	ReasonResponseNotJSON authz.Reason = "response_not_json"
	// ReasonResponseMalformed: the body is not one valid JSON value in the
	// shape MLflow writes (cut short, a duplicate key, invalid UTF-8).
	ReasonResponseMalformed authz.Reason = "response_malformed"
	// ReasonResponseTooLarge: the body exceeds ext_proc.max_body_bytes, or
	// Envoy's buffer limit.
	ReasonResponseTooLarge authz.Reason = "response_too_large"
)

// Defaults of Options.
const (
	// DefaultMaxBodyBytes bounds a body the filter reads: above MLflow's
	// largest search page of wide rows, below the gRPC message limit.
	DefaultMaxBodyBytes = 4 << 20
	// DefaultTimeout bounds the work on one message, below Envoy's
	// message_timeout in the manifests.
	DefaultTimeout = 2 * time.Second
)

// Identifier selects the application of a request's host and
// authenticates the request exactly as Check does. *authz.Engine satisfies
// it.
type Identifier interface {
	Identify(ctx context.Context, r *authz.Request) (*authz.App, *authz.Identity, *authz.Decision)
}

var (
	_ Identifier                        = (*authz.Engine)(nil)
	_ extprocv3.ExternalProcessorServer = (*Server)(nil)
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// MaxBodyBytes bounds a response body the filter reads and a request
	// body it rewrites; a larger one is refused (503, or 413 for a
	// request).
	MaxBodyBytes int
	// Timeout bounds the work on each message from Envoy.
	Timeout time.Duration
}

// Server implements Envoy's envoy.service.ext_proc.v3.ExternalProcessor
// for MLflow: per-row filtering of search responses and narrowing of
// runs/search, for the request Check allowed. It is safe for concurrent
// use; each stream is one HTTP request.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	ident   Identifier
	log     *slog.Logger
	metrics *Metrics
	opts    Options
}

// NewServer returns a Server that identifies callers with ident, logs to
// log and records metrics in m (nil log discards, nil m records nothing).
func NewServer(ident Identifier, log *slog.Logger, m *Metrics, opts Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Server{ident: ident, log: log, metrics: m, opts: opts}
}

// errSpurious ends a stream that breaks the protocol. An error, not a
// clean close: Envoy treats a clean close as "continue without the
// server", which would pass an unfiltered response.
var errSpurious = status.Error(codes.InvalidArgument, "extproc: unexpected message")

// Process serves one HTTP request's stream. Every message gets exactly one
// answer. The stream ends cleanly only when Envoy closes it; any failure
// of ours is an immediate 503 to the client, or an error status on the
// stream (which Envoy, with failure_mode_allow false, turns into its own
// error), never a clean close that Envoy would read as "carry on".
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	x := &exchange{s: s, start: time.Now()}
	defer x.finish()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetObservabilityMode() {
			// Answers would be ignored: the filter cannot filter.
			return status.Error(codes.FailedPrecondition, "extproc: observability_mode cannot filter responses")
		}
		resp, err := x.handle(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// exchange is the state of one HTTP request across its messages.
type exchange struct {
	s     *Server
	start time.Time

	req   *authz.Request
	app   string
	id    *authz.Identity
	route string
	rows  *mlflow.Rows

	narrow   func(context.Context, []byte, rowReader) ([]byte, bool, *authz.Decision, error)
	filter   responseFilter
	filtered bool // a response filter is to run on this response

	outcome string
	reason  authz.Reason
	status  int
}

// Outcomes of one exchange, for the log and the metrics.
const (
	outcomeSkipped  = "skipped"  // nothing to filter for this caller or route
	outcomePassed   = "passed"   // read, nothing removed
	outcomeFiltered = "filtered" // rows or fields removed, or ids narrowed
	outcomeDenied   = "denied"   // an immediate response
)

// handle answers one message, turning a panic into an immediate 503.
func (x *exchange) handle(ctx context.Context, req *extprocv3.ProcessingRequest) (resp *extprocv3.ProcessingResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			x.s.log.LogAttrs(ctx, slog.LevelError, "panic in the ext_proc filter",
				slog.String("request_id", x.requestID()),
				slog.String("panic", fmt.Sprint(p)),
				slog.String("stack", string(debug.Stack())))
			resp, err = x.immediate(authz.Deny(http.StatusServiceUnavailable, authz.ReasonInternal, "the response filter failed; retry")), nil
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, x.s.opts.Timeout)
	defer cancel()
	switch m := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return x.requestHeaders(ctx, m.RequestHeaders, req.GetAttributes()), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return x.requestBody(ctx, m.RequestBody), nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return x.responseHeaders(m.ResponseHeaders), nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return x.responseBody(ctx, m.ResponseBody), nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	}
	return nil, errSpurious
}

// requestHeaders decides, from the request alone, what the rest of the
// exchange needs, and tells Envoy through mode_override: nothing more for
// admins and for routes without a filter (one round trip, no body), the
// request body for a narrowed search, the response headers and buffered
// body for a filtered listing.
func (x *exchange) requestHeaders(ctx context.Context, h *extprocv3.HttpHeaders, attrs map[string]*structpb.Struct) *extprocv3.ProcessingResponse {
	in := requestInput(h, attrs)
	r, deny := authz.NewRequest(in)
	if deny != nil {
		return x.immediate(*deny)
	}
	x.req = r
	app, id, deny := x.s.ident.Identify(ctx, r)
	if app == nil {
		return x.immediate(authz.Deny(http.StatusForbidden, authz.ReasonUnknownHost, "this host is not protected by any configured application"))
	}
	x.app, x.id = app.Name, id
	if deny != nil {
		return x.immediate(*deny)
	}
	policy := mlflowPolicy(app.Policy)
	if policy == nil {
		return x.skip()
	}
	route := policy.Route(r.Method, r.Path)
	if route == nil {
		return x.skip()
	}
	x.route = route.Name
	filter := responseFilters[route.Name]
	switch route.Name {
	case "SearchRuns":
		x.narrow = narrowRuns
	case "GraphQL":
		x.narrow, filter = rewriteGraphQL, graphQLResponse
	}
	if x.narrow == nil && filter == nil {
		return x.skip()
	}
	rows, err := policy.Rows(ctx, id, r)
	if err != nil {
		return x.storeFailure(ctx, err)
	}
	x.rows = rows
	if rows.All() {
		return x.skip()
	}
	if x.narrow == nil {
		ok, err := readableFromRequest(ctx, r, route.Name, rows)
		if err != nil {
			return x.storeFailure(ctx, err)
		}
		if ok {
			return x.skip()
		}
	}
	x.filter = filter
	x.filtered = filter != nil && x.narrow == nil // GraphQL decides on its body
	mode := &procmodev3.ProcessingMode{
		ResponseHeaderMode: procmodev3.ProcessingMode_SKIP,
		ResponseBodyMode:   procmodev3.ProcessingMode_NONE,
	}
	var mutation *extprocv3.HeaderMutation
	if x.narrow != nil {
		mode.RequestBodyMode = procmodev3.ProcessingMode_BUFFERED
	}
	if filter != nil {
		mode.ResponseHeaderMode = procmodev3.ProcessingMode_SEND
		mode.ResponseBodyMode = procmodev3.ProcessingMode_BUFFERED_PARTIAL
		// Ask MLflow (or anything between) for an uncompressed body: the
		// filter reads JSON, never a compressed stream.
		mutation = &extprocv3.HeaderMutation{RemoveHeaders: []string{"accept-encoding"}}
	}
	x.outcome = outcomePassed
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: mutation},
		}},
		ModeOverride: mode,
	}
}

// skip answers the request headers and asks for nothing more.
func (x *exchange) skip() *extprocv3.ProcessingResponse {
	x.outcome = outcomeSkipped
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: &procmodev3.ProcessingMode{
			RequestBodyMode:    procmodev3.ProcessingMode_NONE,
			ResponseHeaderMode: procmodev3.ProcessingMode_SKIP,
			ResponseBodyMode:   procmodev3.ProcessingMode_NONE,
		},
	}
}

// requestBody rewrites a narrowed search (runs/search, GraphQL).
func (x *exchange) requestBody(ctx context.Context, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if x.narrow == nil || x.rows == nil {
		return bodyResponse(true, nil, nil)
	}
	if !b.GetEndOfStream() || len(b.GetBody()) > x.s.opts.MaxBodyBytes {
		return x.immediate(authz.Deny(http.StatusRequestEntityTooLarge, authz.ReasonBodyTruncated, "the request body is too large to narrow"))
	}
	out, marked, deny, err := x.narrow(ctx, b.GetBody(), x.rows)
	switch {
	case err != nil:
		return x.storeFailure(ctx, err)
	case deny != nil:
		return x.immediate(*deny)
	}
	x.filtered = x.filter != nil && marked
	if out == nil {
		return bodyResponse(true, nil, nil)
	}
	x.outcome = outcomeFiltered
	// BUFFERED mode with the headers sent: the content length is ours to
	// set to the new body's (Envoy rejects a mismatch).
	// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_proc/v3/processing_mode.proto
	return bodyResponse(true, out, []*corev3.HeaderValueOption{headerOption("content-length", strconv.Itoa(len(out)))})
}

// responseHeaders checks that the response is what the filter can read:
// MLflow's JSON, uncompressed. An error status carries no rows and passes
// untouched, as MLflow's after-request handlers skip it (status >= 400).
func (x *exchange) responseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if !x.filtered {
		return responseHeadersNone()
	}
	headers := envoyheader.Flatten(h.GetHeaders())
	x.status, _ = strconv.Atoi(headers[":status"])
	switch {
	case x.status >= 400:
		x.filtered = false
		return responseHeadersNone()
	case x.status != http.StatusOK:
		return x.immediate(authz.Deny(http.StatusServiceUnavailable, ReasonResponseNotJSON, "the search answered with an unexpected status; retry"))
	case headers["content-encoding"] != "" && !strings.EqualFold(headers["content-encoding"], "identity"):
		return x.immediate(authz.Deny(http.StatusServiceUnavailable, ReasonResponseEncoded, "the search answer came compressed, which the filter cannot read; retry"))
	case !isJSON(headers["content-type"]):
		return x.immediate(authz.Deny(http.StatusServiceUnavailable, ReasonResponseNotJSON, "the search answer is not JSON; retry"))
	case h.GetEndOfStream():
		// A 200 with no body is not an MLflow answer.
		return x.immediate(authz.Deny(http.StatusServiceUnavailable, ReasonResponseMalformed, "the search answer has no body; retry"))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
}

// responseHeadersNone answers response headers and stops the response
// body, which then flows untouched.
func responseHeadersNone() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{
		Response:     &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: &procmodev3.ProcessingMode{ResponseBodyMode: procmodev3.ProcessingMode_NONE},
	}
}

// responseBody filters the buffered body. BUFFERED_PARTIAL sends the body
// cut at Envoy's buffer limit with end_of_stream false: too large.
func (x *exchange) responseBody(ctx context.Context, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if !x.filtered {
		return bodyResponse(false, nil, nil)
	}
	if !b.GetEndOfStream() || len(b.GetBody()) > x.s.opts.MaxBodyBytes {
		return x.immediate(authz.Deny(http.StatusServiceUnavailable, ReasonResponseTooLarge, "the search answer is larger than the filter reads; ask for fewer results"))
	}
	start := time.Now()
	doc, err := newDoc(b.GetBody())
	if err == nil {
		err = x.filter(ctx, doc, x.rows)
	}
	var out []byte
	if err == nil && doc.changed() {
		out, err = doc.output()
	}
	x.s.metrics.observeBody(x.route, len(b.GetBody()), time.Since(start))
	switch {
	case errors.Is(err, errMalformed), errors.Is(err, errDuplicate):
		return x.immediate(authz.Deny(http.StatusServiceUnavailable, ReasonResponseMalformed, "the search answer is not JSON the filter can read; retry"))
	case err != nil:
		return x.storeFailure(ctx, err)
	}
	if out == nil {
		return bodyResponse(false, nil, nil)
	}
	x.outcome = outcomeFiltered
	return bodyResponse(false, out, nil)
}

// storeFailure answers a failure to read permissions (or a passed
// deadline) with a 503: never a guess, never the unfiltered body.
func (x *exchange) storeFailure(ctx context.Context, err error) *extprocv3.ProcessingResponse {
	x.s.log.LogAttrs(ctx, slog.LevelWarn, "response filter could not read permissions",
		slog.String("request_id", x.requestID()), slog.String("route", x.route), slog.String("error", err.Error()))
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return x.immediate(authz.Deny(http.StatusServiceUnavailable, authz.ReasonDeadlineExceeded, "the response filter ran out of time; retry"))
	}
	return x.immediate(authz.Deny(http.StatusServiceUnavailable, authz.ReasonUnavailable, "permissions could not be read right now; retry"))
}

// immediate ends the exchange with d as a local reply.
func (x *exchange) immediate(d authz.Decision) *extprocv3.ProcessingResponse {
	x.outcome, x.reason, x.status = outcomeDenied, d.Reason, d.Status
	body := d.ErrorBody()
	headers := []*corev3.HeaderValueOption{
		headerOption("content-type", "application/json"),
		headerOption("x-authz-reason", string(d.Reason)),
	}
	for _, h := range d.ResponseHeaders {
		headers = append(headers, headerOption(h.Name, h.Value))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: headers},
		Body:    body,
		Details: "mlflow_authz_" + string(d.Reason),
	}}}
}

// finish logs the exchange and counts it.
func (x *exchange) finish() {
	if x.route == "" && x.outcome == "" {
		return
	}
	outcome := x.outcome
	if outcome == "" {
		outcome = outcomePassed
	}
	x.s.metrics.observe(x.app, x.route, outcome, string(x.reason), time.Since(x.start))
	level := slog.LevelDebug
	if outcome == outcomeDenied {
		level = slog.LevelInfo
		if x.status >= 500 {
			level = slog.LevelWarn
		}
	}
	if !x.s.log.Enabled(context.Background(), level) {
		return
	}
	path := ""
	if x.req != nil {
		path = x.req.Path
	}
	x.s.log.LogAttrs(context.Background(), level, "response filter",
		slog.String("request_id", x.requestID()),
		slog.String("app", x.app),
		slog.String("route", x.route),
		slog.String("path", path),
		slog.Any("identity", x.id),
		slog.String("outcome", outcome),
		slog.Int("status", x.status),
		slog.String("reason", string(x.reason)),
		slog.Int64("latency_us", time.Since(x.start).Microseconds()),
	)
}

func (x *exchange) requestID() string {
	if x.req == nil {
		return ""
	}
	return x.req.ID
}

// mlflowPolicy finds the MLflow policy of an application, through the
// wrappers around it (the trace-writer exception); nil for other kinds.
func mlflowPolicy(p authz.Policy) *mlflow.Policy {
	for {
		switch v := p.(type) {
		case *mlflow.Policy:
			return v
		case interface{ Unwrap() authz.Policy }:
			p = v.Unwrap()
		default:
			return nil
		}
	}
}

// narrowRuns adapts narrowSearchRuns to the narrowing signature.
func narrowRuns(ctx context.Context, body []byte, rows rowReader) ([]byte, bool, *authz.Decision, error) {
	out, d, err := narrowSearchRuns(ctx, body, rows)
	return out, false, d, err
}

// readableFromRequest answers, for routes whose request names the one
// resource the response redacts, whether the caller reads it anyway: then
// nothing can be redacted and no body need be buffered.
func readableFromRequest(ctx context.Context, r *authz.Request, route string, rows *mlflow.Rows) (bool, error) {
	q, err := r.Query()
	if err != nil {
		return false, nil
	}
	switch route {
	case "ListWorkspaces":
		return rows.AllWorkspaces(), nil
	case "GetRegisteredModel":
		if q.Count("name") != 1 {
			return false, nil
		}
		return rows.CanRead(ctx, store.Resource{Kind: store.RegisteredModel, ID: q.Get("name")})
	case "GetTrace":
		return ownedAll(ctx, rows, q, "trace_id", true)
	case "BatchGetTraces":
		return ownedAll(ctx, rows, q, "trace_ids", false)
	case "GetTraceInfoV3":
		id := r.Path[strings.LastIndexByte(r.Path, '/')+1:]
		return rows.CanReadOwned(ctx, store.TraceExperiment, id)
	}
	return false, nil
}

// ownedAll reports whether every trace the query names (in the key MLflow
// reads) belongs to a readable experiment.
func ownedAll(ctx context.Context, rows *mlflow.Rows, q authz.Query, key string, single bool) (bool, error) {
	ids := q.Values(key)
	if len(ids) == 0 || single && len(ids) != 1 {
		return false, nil
	}
	for _, id := range ids {
		ok, err := rows.CanReadOwned(ctx, store.TraceExperiment, id)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}
