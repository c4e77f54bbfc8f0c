package extauthz

import (
	"encoding/json"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// Call is one HTTP request as an Istio sidecar presents it to ext_authz. The
// CLI's `check`, the demo, the load generator and the end-to-end tests build
// their CheckRequests from it, so they all speak exactly what Envoy sends.
type Call struct {
	Method string
	Host   string
	// Target is the request target: path and query, undecoded.
	Target  string
	Headers map[string]string
	Body    []byte
	// PartialBody marks the body as truncated (x-envoy-auth-partial-body).
	PartialBody bool
	// Principal is the mTLS peer's SPIFFE ID (source.principal).
	Principal string
	RequestID string
}

// CheckRequest builds the CheckRequest Envoy would send for c: pseudo-headers
// duplicated into the header map, the body packed as bytes with the partial
// flag (Istio's includeRequestBodyInCheck with packAsBytes and
// allowPartialMessage), and the peer as source.principal.
func (c Call) CheckRequest() *authv3.CheckRequest {
	headers := make(map[string]string, len(c.Headers)+6)
	for k, v := range c.Headers {
		headers[k] = v
	}
	headers[":authority"] = c.Host
	headers[":method"] = c.Method
	headers[":path"] = c.Target
	headers[":scheme"] = "https"
	headers["x-forwarded-proto"] = "https"
	if c.RequestID != "" {
		headers["x-request-id"] = c.RequestID
	}
	if c.Body != nil {
		headers["x-envoy-auth-partial-body"] = strconv.FormatBool(c.PartialBody)
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: c.Principal},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       c.RequestID,
			Method:   c.Method,
			Host:     c.Host,
			Path:     c.Target,
			Scheme:   "https",
			Protocol: "HTTP/2",
			Size:     int64(len(c.Body)),
			Headers:  headers,
			RawBody:  c.Body,
		}},
	}}
}

// Result is a CheckResponse read back into plain terms.
type Result struct {
	Allowed bool
	// Status is the HTTP status Envoy would answer with (200 on allow).
	Status int
	// Reason and Message come from the deny body; empty on allow.
	Reason  string
	Message string
	// Set and Removed are the upstream header mutations of an allow.
	Set     map[string]string
	Removed []string
	// ResponseHeaders go to the client: a deny's headers, or an allow's
	// response_headers_to_add, in order (Set-Cookie may repeat).
	ResponseHeaders []Header
	// Body is a deny's body as sent to the client.
	Body string
}

// Header is one response header of a Result.
type Header struct {
	Name, Value string
}

// Header returns the first response header called name (case-insensitive),
// or "".
func (r Result) Header(name string) string {
	for _, h := range r.ResponseHeaders {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Headers returns every response header called name, in order.
func (r Result) Headers(name string) []string {
	var out []string
	for _, h := range r.ResponseHeaders {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	return out
}

func readHeaders(opts []*corev3.HeaderValueOption) []Header {
	out := make([]Header, 0, len(opts))
	for _, h := range opts {
		out = append(out, Header{Name: h.GetHeader().GetKey(), Value: h.GetHeader().GetValue()})
	}
	return out
}

// ReadResponse interprets a CheckResponse the way Envoy does: an OK (or
// unset!) status allows.
func ReadResponse(resp *authv3.CheckResponse) Result {
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		res := Result{Allowed: true, Status: 200, Set: map[string]string{}}
		ok := resp.GetOkResponse()
		for _, h := range ok.GetHeaders() {
			res.Set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		res.Removed = ok.GetHeadersToRemove()
		res.ResponseHeaders = readHeaders(ok.GetResponseHeadersToAdd())
		return res
	}
	denied := resp.GetDeniedResponse()
	res := Result{Status: int(denied.GetStatus().GetCode()), Body: denied.GetBody(), ResponseHeaders: readHeaders(denied.GetHeaders())}
	if res.Status == 0 {
		res.Status = 403 // Envoy's default for a deny without a status
	}
	var body struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if json.Unmarshal([]byte(denied.GetBody()), &body) == nil {
		res.Reason, res.Message = body.Reason, body.Message
	}
	return res
}
