package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/logsink"
)

// Checker decides one request. *authz.Engine satisfies it; the server owns
// the interface so that it depends on nothing more than this one method.
type Checker interface {
	Check(ctx context.Context, r *authz.Request) authz.Decision
}

var (
	_ Checker                    = (*authz.Engine)(nil)
	_ authv3.AuthorizationServer = (*Server)(nil)
)

// ReasonHeader is the response header that carries the reason code of a deny
// to the client, so a person reading curl output sees why without our logs.
const ReasonHeader = "x-authz-reason"

// Decision labels used in the log and in metrics.
const (
	decisionAllow      = "allow"
	decisionDeny       = "deny"
	decisionDryRunDeny = "dry_run_deny"
)

// maxLoggedPathLength bounds how much of a refused (non-canonical) path we
// log: such paths are attacker-chosen and can be up to authz.MaxPathLength.
const maxLoggedPathLength = 256

// Server implements Envoy's envoy.service.auth.v3.Authorization service on
// top of a Checker. It is safe for concurrent use.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	checker Checker
	log     *slog.Logger
	metrics *Metrics
	timeout time.Duration
}

// Option configures a Server.
type Option func(*Server)

// WithTimeout bounds each check to d, whatever deadline Envoy sent. Istio's
// default ext_authz timeout is 600s, so without this a stuck store call would
// hold the request for ten minutes. Zero (the default) keeps Envoy's deadline.
func WithTimeout(d time.Duration) Option {
	return func(s *Server) { s.timeout = d }
}

// NewServer returns a Server that decides with checker, logs one line per
// decision to log and records metrics in m. A nil log discards the decision
// log; a nil m records no metrics.
func NewServer(checker Checker, log *slog.Logger, m *Metrics, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{checker: checker, log: log, metrics: m}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Check answers one ext_authz request. It never returns an error: every
// outcome, including a panic or a passed deadline, is a CheckResponse with an
// explicit status, so Envoy's failOpen never applies.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.check(ctx, time.Now(), requestInput(req)), nil
}

// checkWire answers a Check request as the gRPC handler decoded it
// (wireCheck): one that could not be read is denied, with why.
func (s *Server) checkWire(ctx context.Context, w *wireCheck) *authv3.CheckResponse {
	start := time.Now()
	if w.err != nil {
		var d authz.Decision
		if p, ok := w.err.(*decodePanic); ok {
			s.logPanic(ctx, "", p.value, p.stack)
			d = internalDeny()
		} else {
			// Envoy never sends such a request: worth an operator's look.
			s.log.LogAttrs(ctx, slog.LevelWarn, "unreadable CheckRequest", slog.String("error", w.err.Error()))
			d = authz.Deny(http.StatusBadRequest, authz.ReasonBadRequest, w.err.Error())
		}
		s.record(ctx, w.in, nil, d, start, time.Now())
		return response(d)
	}
	return s.check(ctx, start, w.in)
}

// check decides in, read from a request that arrived at start.
func (s *Server) check(ctx context.Context, start time.Time, in authz.RequestInput) *authv3.CheckResponse {
	if s.timeout > 0 {
		dc := withDeadline(ctx, start.Add(s.timeout))
		defer dc.release()
		ctx = dc
	}
	r, d := s.decide(ctx, in)
	d = s.validate(ctx, in, d)
	resp := response(d)
	s.record(ctx, in, r, d, start, time.Now())
	return resp
}

// decide runs the pipeline and turns a panic or a passed deadline into a
// 503 deny. r is nil when the request was refused before it could be built.
func (s *Server) decide(ctx context.Context, in authz.RequestInput) (r *authz.Request, d authz.Decision) {
	defer func() {
		if p := recover(); p != nil {
			s.logPanic(ctx, in.ID, p, debug.Stack())
			d = internalDeny()
		}
	}()
	if ctx.Err() != nil {
		return nil, deadlineDeny()
	}
	r, deny := authz.NewRequest(in)
	if deny != nil {
		return nil, *deny
	}
	d = s.checker.Check(ctx, r)
	// Re-check after deciding: Envoy has given up on (or is about to give
	// up on) a request whose deadline passed, and an allow computed from a
	// cancelled store call must not slip through.
	if ctx.Err() != nil {
		app, id := d.App, d.Identity
		d = deadlineDeny()
		d.App, d.Identity = app, id
	}
	return r, d
}

// logPanic logs a panic while a request was checked: a bug to look at.
func (s *Server) logPanic(ctx context.Context, requestID string, p any, stack []byte) {
	s.log.LogAttrs(ctx, slog.LevelError, "panic in authorization check",
		slog.String("request_id", requestID),
		slog.String("panic", fmt.Sprint(p)),
		slog.String("stack", string(stack)))
}

// internalDeny answers a check that failed on our side (a panic, a
// decision that breaks its contract).
func internalDeny() authz.Decision {
	return authz.Deny(http.StatusServiceUnavailable, authz.ReasonInternal, "the authorization check failed; retry")
}

func deadlineDeny() authz.Decision {
	return authz.Deny(http.StatusServiceUnavailable, authz.ReasonDeadlineExceeded, "the authorization check ran out of time")
}

// validate enforces the Decision contract before it reaches Envoy. Envoy
// removes headers after setting them, so a name both set and removed would
// silently drop an identity header: that is a bug in an Upstream, and we
// fail closed on it rather than guess which one was meant.
func (s *Server) validate(ctx context.Context, in authz.RequestInput, d authz.Decision) authz.Decision {
	if !d.Allowed {
		return d
	}
	for _, h := range d.UpstreamHeaders {
		for _, rm := range d.RemoveHeaders {
			if strings.EqualFold(h.Name, rm) {
				s.log.LogAttrs(ctx, slog.LevelError, "decision both sets and removes a header",
					slog.String("request_id", in.ID), slog.String("app", d.App), slog.String("header", rm))
				out := internalDeny()
				out.App, out.Identity = d.App, d.Identity
				return out
			}
		}
	}
	return d
}

// response converts a Decision into a CheckResponse, setting status on
// every path: an unset status is an allow to Envoy.
func response(d authz.Decision) *authv3.CheckResponse {
	if d.Allowed {
		return allowResponse(d)
	}
	return denyResponse(d)
}

func allowResponse(d authz.Decision) *authv3.CheckResponse {
	a := &allowMessages{}
	a.ok.HeadersToRemove = d.RemoveHeaders
	if n := len(d.UpstreamHeaders); n > 0 {
		if n <= len(a.opts) {
			a.ok.Headers = a.list[:n]
		} else {
			a.ok.Headers = make([]*corev3.HeaderValueOption, n)
		}
		for i, h := range d.UpstreamHeaders {
			var opt *corev3.HeaderValueOption
			var val *corev3.HeaderValue
			if i < len(a.opts) {
				opt, val = &a.opts[i], &a.vals[i]
			} else {
				opt, val = new(corev3.HeaderValueOption), new(corev3.HeaderValue)
			}
			// OVERWRITE_IF_EXISTS_OR_ADD for Envoys that honour
			// append_action; append left false for older ones, where false
			// means overwrite. Either way a client-sent value is replaced.
			val.Key, val.Value = h.Name, h.Value
			opt.Header, opt.AppendAction = val, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			a.ok.Headers[i] = opt
		}
	}
	// response_headers_to_add go to the client's response: a renewed
	// session cookie travels this way.
	// https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/external_auth.proto#service-auth-v3-okhttpresponse
	for _, h := range d.ResponseHeaders {
		a.ok.ResponseHeadersToAdd = append(a.ok.ResponseHeadersToAdd, headerOption(h.Name, h.Value))
	}
	a.status.Code = int32(codes.OK)
	a.oneof.OkResponse = &a.ok
	a.resp.Status, a.resp.HttpResponse = &a.status, &a.oneof
	return &a.resp
}

// allowMessages is an allow CheckResponse with every message in it, and up
// to three upstream headers (what the identity headers take), in one
// allocation instead of one per message: the response is built on every
// allowed check, and grpc-go marshals it once and drops it. The messages
// are never copied, only pointed to.
type allowMessages struct {
	resp   authv3.CheckResponse
	status status.Status
	oneof  authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	list   [3]*corev3.HeaderValueOption
	opts   [3]corev3.HeaderValueOption
	vals   [3]corev3.HeaderValue
}

func denyResponse(d authz.Decision) *authv3.CheckResponse {
	httpStatus := denyHTTPStatus(d.Status)
	body, contentType := d.Body, d.ContentType
	if body == "" {
		body, contentType = string(d.ErrorBody()), "application/json"
	}
	headers := make([]*corev3.HeaderValueOption, 0, 2+len(d.ResponseHeaders))
	headers = append(headers, headerOption("content-type", contentType), headerOption(ReasonHeader, string(d.Reason)))
	for _, h := range d.ResponseHeaders {
		headers = append(headers, headerOption(h.Name, h.Value))
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(grpcCode(httpStatus)), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: headers,
			Body:    body,
		}},
	}
}

// headerOption overwrites a header of the same name, except Set-Cookie,
// which must stay one header line per cookie (RFC 6265 section 3: a
// comma-joined Set-Cookie is a different cookie). Envoy maps
// APPEND_IF_EXISTS_OR_ADD, when the deprecated append field is unset, to
// adding one more header line (source/extensions/filters/common/ext_authz/
// ext_authz_grpc_impl.cc, getAppendAction); older Envoys that ignore
// append_action add every denied-response header line anyway
// (source/extensions/filters/http/ext_authz/ext_authz.cc: "allowing the
// same header to be set multiple times, e.g. Set-Cookie").
func headerOption(name, value string) *corev3.HeaderValueOption {
	action := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	if strings.EqualFold(name, "set-cookie") {
		action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	}
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: action,
	}
}

// denyHTTPStatus keeps a deny a deny: Envoy only accepts StatusCode enum
// values, and a 2xx (or a zero from a careless policy) would read to the
// client like success, so anything but a known 3xx–5xx becomes 403.
func denyHTTPStatus(code int) int {
	if _, known := typev3.StatusCode_name[int32(code)]; !known || code < 300 {
		return http.StatusForbidden
	}
	return code
}

// grpcCode is informational for Envoy (any non-OK code denies) but shows in
// Envoy's stats and access log, so it follows the HTTP status.
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	default:
		return codes.PermissionDenied
	}
}

// record writes the decision log line and the metrics. Allows and policy
// denies (3xx/4xx) log at Info: they are the service doing its job. Denies
// with a 5xx log at Warn: they mean we could not decide (store down,
// deadline, panic) and an operator should look.
func (s *Server) record(ctx context.Context, in authz.RequestInput, r *authz.Request, d authz.Decision, start, end time.Time) {
	elapsed := end.Sub(start)
	decision := decisionAllow
	switch {
	case d.DryRun:
		decision = decisionDryRunDeny
	case !d.Allowed:
		decision = decisionDeny
	}
	s.metrics.observe(d.App, decision, string(d.Reason), elapsed)

	level := slog.LevelInfo
	if !d.Allowed && d.Status >= 500 {
		level = slog.LevelWarn
	}
	h := s.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	host, path := in.Host, logPath(in.Target)
	if r != nil {
		host, path = r.Host, r.Path
	}
	// The record goes straight to the handler, as slog's Logger would send
	// it but without the caller's program counter: no handler here reports
	// the source, and runtime.Callers was a tenth of the line's cost.
	attrs := [...]slog.Attr{
		slog.String("request_id", in.ID),
		slog.String("app", d.App),
		slog.String("host", host),
		slog.String("method", in.Method),
		slog.String("path", path),
		slog.Any("identity", d.Identity),
		slog.String("decision", decision),
		slog.Int("status", d.Status),
		slog.String("reason", string(d.Reason)),
		slog.Int64("latency_us", elapsed.Microseconds()),
	}
	if lh, ok := h.(*logsink.Handler); ok {
		// Without a Record, whose inline room is five attributes.
		_ = lh.HandleAttrs(ctx, end, level, "decision", attrs[:]...)
		return
	}
	rec := slog.NewRecord(end, level, "decision", 0)
	rec.AddAttrs(attrs[:]...)
	_ = h.Handle(ctx, rec)
}

// logPath is the raw path of a refused request without its query (which
// may carry tokens), cut short because the client chose it.
func logPath(target string) string {
	p, _, _ := strings.Cut(target, "?")
	if len(p) > maxLoggedPathLength {
		p = p[:maxLoggedPathLength]
	}
	return p
}
