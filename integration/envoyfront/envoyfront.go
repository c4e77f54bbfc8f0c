// Package envoyfront is a small HTTP front that does what an Istio
// sidecar's ext_authz filter does with our service: it turns each request
// into the CheckRequest Istio sends, asks Check over gRPC, and applies the
// answer exactly as Envoy's filter documents before proxying to the
// upstream. Tests put a real browser or HTTP client in front of it, so the
// whole path (cookies, redirects, headers Envoy adds or drops) is
// exercised without an Envoy.
//
// What it follows, and where Envoy documents it:
//   - the ext_authz HTTP filter:
//     https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/ext_authz_filter
//   - CheckRequest attributes:
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/attribute_context.proto
//   - CheckResponse, OkHttpResponse, DeniedHttpResponse:
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/external_auth.proto
//   - HeaderValueOption (append, append_action):
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/base.proto#config-core-v3-headervalueoption
//   - Istio's CUSTOM provider (includeRequestBodyInCheck, failOpen,
//     statusOnError):
//     https://istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/#MeshConfig-ExtensionProvider-EnvoyExternalAuthorizationGrpcProvider
//
// With Options.ExtProc it also runs Envoy's ext_proc filter after
// ext_authz (extproc.go), with the same care.
//
// It is not an Envoy: no path normalization, retries, timeouts per route
// or HTTP/2 specifics beyond what the tests need.
package envoyfront

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// Options configure a Front. Zero values take Istio's settings as our
// manifests set them.
type Options struct {
	// Principal is the mTLS peer Envoy reports as source.principal (at an
	// application's sidecar: the ingress gateway's SPIFFE ID).
	Principal string
	// MaxRequestBytes is includeRequestBodyInCheck.maxRequestBytes: at
	// most this much of a body goes to Check, with
	// x-envoy-auth-partial-body saying whether it was cut
	// (allowPartialMessage: true, packAsBytes: true). Default 1 MiB.
	MaxRequestBytes int
	// Timeout bounds one Check, as the provider's timeout does. Default 2s.
	Timeout time.Duration
	// StatusOnError answers a failed Check (RPC error, timeout) with
	// failOpen false. Default 403, Envoy's default.
	StatusOnError int
	// ExtProc, when set, runs Envoy's ext_proc filter after ext_authz
	// (extproc.go).
	ExtProc *ExtProc
}

// Front is an http.Handler: Check first, then the upstream.
type Front struct {
	client   authv3.AuthorizationClient
	upstream *url.URL
	opts     Options
	proxy    *httputil.ReverseProxy
}

// New returns a front deciding with client and forwarding allowed
// requests to upstream.
func New(client authv3.AuthorizationClient, upstream *url.URL, opts Options) *Front {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 1 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.StatusOnError == 0 {
		opts.StatusOnError = http.StatusForbidden
	}
	f := &Front{client: client, upstream: upstream, opts: opts}
	// Envoy neither asks the upstream for gzip nor decompresses its answer
	// (Go's transport would do both when the request has no
	// Accept-Encoding).
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DisableCompression = true
	f.proxy = &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Host = pr.In.Host // the upstream sees the client's host, as behind a sidecar
		},
		ModifyResponse: func(resp *http.Response) error {
			ctx := resp.Request.Context()
			if p, ok := ctx.Value(procKey{}).(*procStream); ok {
				reply, err := p.onResponse(ctx, resp)
				if err != nil {
					return err
				}
				if reply != nil {
					resp.StatusCode = reply.status
					resp.Header = reply.headers
					resp.Header.Set("Content-Length", strconv.Itoa(len(reply.body)))
					resp.Body = io.NopCloser(bytes.NewReader(reply.body))
					resp.ContentLength = int64(len(reply.body))
					return nil
				}
			}
			if mutations, ok := ctx.Value(responseMutationsKey{}).([]*corev3.HeaderValueOption); ok {
				applyHeaders(resp.Header, mutations)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if _, ok := r.Context().Value(procKey{}).(*procStream); ok {
				// The upstream's body broke after its headers: Envoy has
				// started the response and resets the client's stream.
				panic(http.ErrAbortHandler)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return f
}

type (
	responseMutationsKey struct{}
	procKey              struct{}
)

// ServeHTTP checks r and answers or forwards it as Envoy would.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "envoyfront: reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), f.opts.Timeout)
	defer cancel()
	resp, err := f.client.Check(ctx, f.CheckRequest(r, body))
	if err != nil {
		// An RPC error is CheckStatus::Error: failOpen is false in our
		// provider, so Envoy answers status_on_error with no body.
		w.WriteHeader(f.opts.StatusOnError)
		return
	}
	switch {
	case resp.GetStatus().GetCode() == int32(codes.OK):
		f.allow(w, r, body, resp.GetOkResponse())
	case resp.GetErrorResponse() != nil:
		// error_response is an Error, not a Denied: its status, else
		// status_on_error; its headers and body go to the client.
		e := resp.GetErrorResponse()
		status := int(e.GetStatus().GetCode())
		if status == 0 {
			status = f.opts.StatusOnError
		}
		localReply(w, status, e.GetHeaders(), e.GetBody())
	default:
		d := resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden // "If not set, Envoy sends 403 Forbidden"
		}
		localReply(w, status, d.GetHeaders(), d.GetBody())
	}
}

// CheckRequest builds the CheckRequest an Istio sidecar sends for r:
// lower-case header names with repeated headers joined (Cookie with "; ",
// others with ","), the pseudo-headers in the map too, x-forwarded-proto
// and x-request-id as Envoy adds them, the raw target in http.path, and
// up to MaxRequestBytes of the body as raw_body with
// x-envoy-auth-partial-body.
func (f *Front) CheckRequest(r *http.Request, body []byte) *authv3.CheckRequest {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	headers := map[string]string{}
	for name, values := range r.Header {
		sep := ","
		if strings.EqualFold(name, "cookie") {
			sep = "; "
		}
		headers[strings.ToLower(name)] = strings.Join(values, sep)
	}
	if headers["x-request-id"] == "" {
		headers["x-request-id"] = requestID()
	}
	headers["x-forwarded-proto"] = scheme
	headers[":authority"] = r.Host
	headers[":method"] = r.Method
	headers[":path"] = r.RequestURI
	headers[":scheme"] = scheme
	h := &authv3.AttributeContext_HttpRequest{
		Id:       headers["x-request-id"],
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.RequestURI,
		Scheme:   scheme,
		Protocol: r.Proto,
		Size:     r.ContentLength,
		Headers:  headers,
	}
	if len(body) > 0 {
		partial := len(body) > f.opts.MaxRequestBytes
		if partial {
			body = body[:f.opts.MaxRequestBytes]
		}
		h.RawBody = body
		headers["x-envoy-auth-partial-body"] = strconv.FormatBool(partial)
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  &authv3.AttributeContext_Peer{Principal: f.opts.Principal},
		Request: &authv3.AttributeContext_Request{Http: h},
	}}
}

// allow applies an OkHttpResponse: header mutations and removals on the
// upstream request (removals after sets; pseudo-headers and Host are never
// removed), query parameter changes, then response_headers_to_add on the
// upstream's response.
func (f *Front) allow(w http.ResponseWriter, r *http.Request, body []byte, ok *authv3.OkHttpResponse) {
	out := r.Clone(r.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	applyHeaders(out.Header, ok.GetHeaders())
	for _, name := range ok.GetHeadersToRemove() {
		if strings.HasPrefix(name, ":") || strings.EqualFold(name, "host") {
			continue
		}
		out.Header.Del(name)
	}
	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		q := out.URL.Query()
		for _, p := range ok.GetQueryParametersToSet() {
			q.Set(p.GetKey(), p.GetValue())
		}
		for _, k := range ok.GetQueryParametersToRemove() {
			q.Del(k)
		}
		out.URL.RawQuery = q.Encode()
	}
	if add := ok.GetResponseHeadersToAdd(); len(add) > 0 {
		out = out.WithContext(context.WithValue(out.Context(), responseMutationsKey{}, add))
	}
	if p := f.extProcFor(r); p != nil {
		defer p.close()
		mutated, reply := p.onRequest(out.Context(), out, body)
		if reply != nil {
			writeReply(w, reply)
			return
		}
		out.Body = io.NopCloser(bytes.NewReader(mutated))
		out.ContentLength = int64(len(mutated))
		out = out.WithContext(context.WithValue(out.Context(), procKey{}, p))
	}
	f.proxy.ServeHTTP(w, out)
}

// writeReply sends an ext_proc local reply.
func writeReply(w http.ResponseWriter, r *procReply) {
	for k, v := range r.headers {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

// localReply is Envoy's sendLocalReply for a deny: the status, the
// server's headers and body, and nothing from the upstream.
func localReply(w http.ResponseWriter, status int, headers []*corev3.HeaderValueOption, body string) {
	applyHeaders(w.Header(), headers)
	if body != "" && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/plain")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// applyHeaders applies header mutations the way Envoy does: the deprecated
// append, when set, wins (true: append to an existing value with a comma,
// Envoy's appendCopy; false: overwrite); otherwise append_action
// (APPEND_IF_EXISTS_OR_ADD adds one more header line, ADD_IF_ABSENT,
// OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS). A value may not be
// removed by an empty one: keep_empty_value is unsupported by ext_authz.
func applyHeaders(h http.Header, mutations []*corev3.HeaderValueOption) {
	for _, m := range mutations {
		name, value := m.GetHeader().GetKey(), m.GetHeader().GetValue()
		if v := m.GetHeader().GetRawValue(); len(v) > 0 {
			value = string(v)
		}
		//lint:ignore SA1019 Envoy still honours the deprecated field first
		if a := m.GetAppend(); a != nil {
			if a.GetValue() && h.Get(name) != "" {
				h.Set(name, strings.Join(h.Values(name), ",")+","+value)
			} else {
				h.Set(name, value)
			}
			continue
		}
		switch m.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.Add(name, value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if len(h.Values(name)) == 0 {
				h.Set(name, value)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if len(h.Values(name)) > 0 {
				h.Set(name, value)
			}
		default:
			h.Set(name, value)
		}
	}
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", s[:8], s[8:12], s[12:16], s[16:20], s[20:])
}
