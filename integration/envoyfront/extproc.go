package envoyfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The ext_proc filter, after ext_authz and before the router, as Envoy runs
// it. What it follows, and where Envoy documents it:
//   - the filter and its configuration (processing_mode,
//     allow_mode_override, allowed_override_modes, message_timeout,
//     failure_mode_allow, status_on_error, request_attributes):
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_proc/v3/ext_proc.proto
//   - the processing modes, and when the content-length header is removed:
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_proc/v3/processing_mode.proto
//   - the protocol: one stream per request, one answer per message,
//     mode_override in a header response, HeaderMutation (no ":" or host
//     changes), BodyMutation, ImmediateResponse, and "if the server closes
//     the gRPC stream cleanly, Envoy proceeds without consulting the server":
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/ext_proc/v3/external_processor.proto
//   - attributes (connection.uri_san_peer_certificate):
//     https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes
//   - skipping the filter by request path without a round trip, as the
//     manifests do with an ExtensionWithMatcher (SkipFilter on no match):
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/common/matching/v3/extension_matcher.proto

// ExtProc configures the ext_proc filter of a Front.
type ExtProc struct {
	// Client reaches the external processor.
	Client extprocv3.ExternalProcessorClient
	// Config is the filter's configuration as Envoy takes it. Only the
	// fields above are read; grpc_service is Client.
	Config *extprocfilterv3.ExternalProcessor
	// Match, when set, runs the filter only for a :path (path and query)
	// it matches; any other request skips the filter with no round trip.
	Match *regexp.Regexp
	// BufferLimit is Envoy's buffer for a BUFFERED body (the connection's
	// per_connection_buffer_limit_bytes). Default 1 MiB, Envoy's default.
	BufferLimit int
}

// errorReply is an ext_proc failure: the stream broke, timed out or
// answered out of turn.
type errorReply struct{ err error }

func (e errorReply) Error() string { return "envoyfront: ext_proc: " + e.err.Error() }

// procStream is the filter's state for one request.
type procStream struct {
	f      *Front
	cfg    *extprocfilterv3.ExternalProcessor
	mode   *extprocfilterv3.ProcessingMode
	stream extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
	// done: the server closed the stream cleanly; Envoy then carries on
	// without it.
	done bool
}

// procReply is an ImmediateResponse, or an Envoy error, to send instead
// of the upstream's answer.
type procReply struct {
	status  int
	headers http.Header
	body    []byte
}

func (f *Front) extProcFor(r *http.Request) *procStream {
	x := f.opts.ExtProc
	if x == nil || (x.Match != nil && !x.Match.MatchString(r.RequestURI)) {
		return nil
	}
	mode := proto.Clone(x.Config.GetProcessingMode()).(*extprocfilterv3.ProcessingMode)
	if mode == nil {
		mode = &extprocfilterv3.ProcessingMode{}
	}
	return &procStream{f: f, cfg: x.Config, mode: mode}
}

// timeout is message_timeout, 200 ms when unset.
func (p *procStream) timeout() time.Duration {
	if d := p.cfg.GetMessageTimeout(); d != nil {
		return d.AsDuration()
	}
	return 200 * time.Millisecond
}

// exchange sends one message and waits, up to message_timeout, for its
// answer. A clean close makes the filter step aside (nil, nil).
func (p *procStream) exchange(ctx context.Context, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if p.done {
		return nil, nil
	}
	if p.stream == nil {
		sctx, cancel := context.WithCancel(ctx)
		s, err := p.f.opts.ExtProc.Client.Process(sctx)
		if err != nil {
			cancel()
			return nil, errorReply{err}
		}
		p.stream, p.cancel = s, cancel
	}
	type result struct {
		resp *extprocv3.ProcessingResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		if err := p.stream.Send(req); err != nil {
			ch <- result{err: err}
			return
		}
		resp, err := p.stream.Recv()
		ch <- result{resp, err}
	}()
	select {
	case res := <-ch:
		if errors.Is(res.err, io.EOF) {
			p.done = true
			return nil, nil
		}
		if res.err != nil {
			return nil, errorReply{res.err}
		}
		return res.resp, nil
	case <-time.After(p.timeout()):
		p.cancel()
		return nil, errorReply{errors.New("message_timeout")}
	}
}

func (p *procStream) close() {
	if p.stream != nil {
		_ = p.stream.CloseSend()
		p.cancel()
	}
}

// failure turns an ext_proc error into what the client sees: with
// failure_mode_allow false, a local reply with status_on_error (500 by
// default; 504 for a timeout when none is configured).
func (p *procStream) failure(err error) *procReply {
	status := http.StatusInternalServerError
	if strings.Contains(err.Error(), "message_timeout") {
		status = http.StatusGatewayTimeout
	}
	if s := p.cfg.GetStatusOnError().GetCode(); s != 0 {
		status = int(s)
	}
	return &procReply{status: status, headers: http.Header{}}
}

// headersMessage builds an HttpHeaders: every header, lower-case, one
// entry per value, the value in raw_value.
func headersMessage(pseudo [][2]string, h http.Header, eos bool) *extprocv3.HttpHeaders {
	m := &corev3.HeaderMap{}
	for _, kv := range pseudo {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range h[k] {
			m.Headers = append(m.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
		}
	}
	return &extprocv3.HttpHeaders{Headers: m, EndOfStream: eos}
}

// attributes fills the request_attributes the filter asks for that the
// front knows: the peer's URI SAN.
func (p *procStream) attributes() map[string]*structpb.Struct {
	fields := map[string]*structpb.Value{}
	for _, a := range p.cfg.GetRequestAttributes() {
		if a == "connection.uri_san_peer_certificate" && p.f.opts.Principal != "" {
			fields[a] = structpb.NewStringValue(p.f.opts.Principal)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	return map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: fields}}
}

// override applies a mode_override when allow_mode_override is on and the
// mode is in allowed_override_modes (if that list is set). request_header_mode
// never changes after the request headers.
func (p *procStream) override(m *extprocfilterv3.ProcessingMode) {
	if m == nil || !p.cfg.GetAllowModeOverride() {
		return
	}
	if allowed := p.cfg.GetAllowedOverrideModes(); len(allowed) > 0 {
		ok := false
		for _, a := range allowed {
			if a.GetRequestBodyMode() == m.GetRequestBodyMode() && a.GetResponseHeaderMode() == m.GetResponseHeaderMode() &&
				a.GetResponseBodyMode() == m.GetResponseBodyMode() && a.GetRequestTrailerMode() == m.GetRequestTrailerMode() &&
				a.GetResponseTrailerMode() == m.GetResponseTrailerMode() {
				ok = true
			}
		}
		if !ok {
			return
		}
	}
	header := p.mode.GetRequestHeaderMode()
	p.mode = proto.Clone(m).(*extprocfilterv3.ProcessingMode)
	p.mode.RequestHeaderMode = header
}

// common reads the CommonResponse of a headers or body answer, or the
// immediate response, checking the answer is of the kind expected.
func (p *procStream) common(resp *extprocv3.ProcessingResponse, want string) (*extprocv3.CommonResponse, *procReply, error) {
	if ir := resp.GetImmediateResponse(); ir != nil {
		h := http.Header{}
		applyMutation(h, ir.GetHeaders())
		status := int(ir.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusOK
		}
		if h.Get("Content-Type") == "" && len(ir.GetBody()) > 0 {
			h.Set("Content-Type", "text/plain")
		}
		return nil, &procReply{status: status, headers: h, body: ir.GetBody()}, nil
	}
	var got string
	var c *extprocv3.CommonResponse
	switch r := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		got, c = "request_headers", r.RequestHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_RequestBody:
		got, c = "request_body", r.RequestBody.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		got, c = "response_headers", r.ResponseHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseBody:
		got, c = "response_body", r.ResponseBody.GetResponse()
	}
	if got != want {
		// A spurious message fails the request like a broken stream.
		return nil, nil, errorReply{fmt.Errorf("answer %q to a %s message", got, want)}
	}
	return c, nil, nil
}

// applyMutation sets and removes headers as Envoy does for ext_proc:
// ":"-headers and host are never removed, nor set here.
func applyMutation(h http.Header, m *extprocv3.HeaderMutation) {
	for _, o := range m.GetSetHeaders() {
		k := o.GetHeader().GetKey()
		if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
			continue
		}
		v := string(o.GetHeader().GetRawValue())
		if v == "" {
			v = o.GetHeader().GetValue()
		}
		//lint:ignore SA1019 Envoy still honours the deprecated field first
		appendField := o.GetAppend()
		applyHeaders(h, []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: o.GetAppendAction(), Append: appendField}})
	}
	for _, k := range m.GetRemoveHeaders() {
		if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
			continue
		}
		h.Del(k)
	}
}

// onRequest runs the request half: request headers, then a BUFFERED
// request body. It returns the body to forward, or a local reply.
func (p *procStream) onRequest(ctx context.Context, out *http.Request, body []byte) ([]byte, *procReply) {
	if p.mode.GetRequestHeaderMode() != extprocfilterv3.ProcessingMode_SKIP {
		pseudo := [][2]string{{":authority", out.Host}, {":method", out.Method}, {":path", out.RequestURI}, {":scheme", "https"}}
		resp, err := p.exchange(ctx, &extprocv3.ProcessingRequest{
			Request:    &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: headersMessage(pseudo, out.Header, len(body) == 0)},
			Attributes: p.attributes(),
		})
		if err != nil {
			return nil, p.failure(err)
		}
		if resp != nil {
			c, reply, err := p.common(resp, "request_headers")
			if err != nil {
				return nil, p.failure(err)
			}
			if reply != nil {
				return nil, reply
			}
			applyMutation(out.Header, c.GetHeaderMutation())
			p.override(resp.GetModeOverride())
		}
	}
	switch p.mode.GetRequestBodyMode() {
	case extprocfilterv3.ProcessingMode_NONE:
		return body, nil
	case extprocfilterv3.ProcessingMode_BUFFERED:
	default:
		return nil, &procReply{status: http.StatusInternalServerError, headers: http.Header{}, body: []byte("envoyfront: request body mode not emulated")}
	}
	if len(body) == 0 {
		return body, nil
	}
	if len(body) > p.limit() {
		// A buffered request body over the limit: Envoy answers 413.
		return nil, &procReply{status: http.StatusRequestEntityTooLarge, headers: http.Header{}, body: []byte("Payload Too Large")}
	}
	resp, err := p.exchange(ctx, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}})
	if err != nil {
		return nil, p.failure(err)
	}
	if resp == nil {
		return body, nil
	}
	c, reply, err := p.common(resp, "request_body")
	if err != nil {
		return nil, p.failure(err)
	}
	if reply != nil {
		return nil, reply
	}
	applyMutation(out.Header, c.GetHeaderMutation())
	if b := c.GetBodyMutation(); b != nil {
		body = mutateBody(body, b)
		// BUFFERED with headers sent: a content-length that does not match
		// the new body rejects the mutation with a local reply.
		if cl := out.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
			return nil, &procReply{status: http.StatusInternalServerError, headers: http.Header{}, body: []byte("content-length mismatch")}
		}
	}
	return body, nil
}

func (p *procStream) limit() int {
	if l := p.f.opts.ExtProc.BufferLimit; l > 0 {
		return l
	}
	return 1 << 20
}

func mutateBody(body []byte, m *extprocv3.BodyMutation) []byte {
	switch mm := m.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return mm.Body
	case *extprocv3.BodyMutation_ClearBody:
		if mm.ClearBody {
			return nil
		}
	}
	return body
}

// onResponse runs the response half on the upstream's answer: response
// headers, then a BUFFERED or BUFFERED_PARTIAL body. The upstream body is
// read here; a read error (the upstream reset mid-body) resets the client's
// stream, as Envoy does once the response has started.
func (p *procStream) onResponse(ctx context.Context, resp *http.Response) (*procReply, error) {
	var body []byte
	bodyRead := false
	readBody := func(limit int) ([]byte, bool, error) {
		b, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
		if err != nil {
			return nil, false, err
		}
		bodyRead = true
		return b, len(b) > limit, nil
	}
	if p.mode.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP {
		eos := resp.ContentLength == 0
		r, err := p.exchange(ctx, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: headersMessage([][2]string{{":status", strconv.Itoa(resp.StatusCode)}}, resp.Header, eos)}})
		if err != nil {
			return p.failure(err), nil
		}
		if r != nil {
			c, reply, err := p.common(r, "response_headers")
			if err != nil {
				return p.failure(err), nil
			}
			if reply != nil {
				return reply, nil
			}
			applyMutation(resp.Header, c.GetHeaderMutation())
			p.override(r.GetModeOverride())
		}
	}
	mode := p.mode.GetResponseBodyMode()
	switch mode {
	case extprocfilterv3.ProcessingMode_NONE:
		return nil, nil
	case extprocfilterv3.ProcessingMode_BUFFERED, extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL:
	default:
		return &procReply{status: http.StatusInternalServerError, headers: http.Header{}, body: []byte("envoyfront: response body mode not emulated")}, nil
	}
	b, over, err := readBody(p.limit())
	if err != nil {
		return nil, err
	}
	body = b
	rest := []byte(nil)
	if over {
		if mode == extprocfilterv3.ProcessingMode_BUFFERED {
			// Over the buffer limit: the downstream receives an error.
			return &procReply{status: http.StatusInternalServerError, headers: http.Header{}, body: []byte("buffer limit")}, nil
		}
		rest, body = body[p.limit():], body[:p.limit()]
	}
	if mode == extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL {
		// Body mutation may change the length: Envoy drops the header.
		resp.Header.Del("Content-Length")
	}
	if len(body) > 0 || !over {
		r, err := p.exchange(ctx, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: !over}}})
		if err != nil {
			return p.failure(err), nil
		}
		if r != nil {
			c, reply, err := p.common(r, "response_body")
			if err != nil {
				return p.failure(err), nil
			}
			if reply != nil {
				return reply, nil
			}
			if mode == extprocfilterv3.ProcessingMode_BUFFERED {
				applyMutation(resp.Header, c.GetHeaderMutation())
			}
			if m := c.GetBodyMutation(); m != nil {
				body = mutateBody(body, m)
				if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
					return &procReply{status: http.StatusInternalServerError, headers: http.Header{}, body: []byte("content-length mismatch")}, nil
				}
			}
		}
	}
	if !bodyRead {
		return nil, nil
	}
	// The rest of a partial body streams through untouched.
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), bytes.NewReader(rest), resp.Body))
	if resp.Header.Get("Content-Length") != "" {
		resp.ContentLength = int64(len(body) + len(rest))
	} else {
		resp.ContentLength = -1
	}
	return nil, nil
}
