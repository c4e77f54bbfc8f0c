package extauthz

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/envoyheader"
)

// checkFields are the fields of a CheckRequest the service reads, found
// either in the generated message (fieldsOf) or straight in its wire bytes
// (decodeCheck). Both roads end in the same input, so a request reads the
// same whichever way it came.
type checkFields struct {
	id, method, host, path string
	headers                map[string]string
	body                   string // http.body
	rawBody                []byte // http.raw_body
	principal              string // source.principal
}

// fieldsOf reads req's fields. The header_map form (encode_raw_headers) is
// joined into one map as Envoy joins its map form.
func fieldsOf(req *authv3.CheckRequest) checkFields {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if len(headers) == 0 && h.GetHeaderMap() != nil {
		headers = envoyheader.Flatten(h.GetHeaderMap())
	}
	return checkFields{
		id: h.GetId(), method: h.GetMethod(), host: h.GetHost(), path: h.GetPath(),
		headers: headers, body: h.GetBody(), rawBody: h.GetRawBody(),
		principal: attrs.GetSource().GetPrincipal(),
	}
}

// input is what the authz core needs from the fields. Envoy fills
// http.host/path/method and also sends the pseudo-headers; the fields win
// and the pseudo-headers are a fallback for hand-built requests.
func (f checkFields) input() authz.RequestInput {
	headers := f.headers
	if headers == nil {
		headers = map[string]string{}
	}
	in := authz.RequestInput{
		ID:        headers["x-request-id"],
		Method:    f.method,
		Host:      f.host,
		Target:    f.path,
		Headers:   headers,
		Principal: f.principal,
	}
	// x-request-id first: it is what Istio's access log shows, whereas
	// http.id is often just Envoy's stream number.
	if in.ID == "" {
		in.ID = f.id
	}
	if in.Method == "" {
		in.Method = headers[":method"]
	}
	if in.Host == "" {
		in.Host = headers[":authority"]
	}
	if in.Target == "" {
		in.Target = headers[":path"]
	}
	// raw_body (packAsBytes) is the exact bytes; body has had invalid UTF-8
	// replaced by Envoy, so it is only the fallback.
	if len(f.rawBody) > 0 {
		in.Body = f.rawBody
	} else if f.body != "" {
		in.Body = []byte(f.body)
	}
	return in
}

// requestInput reads what the authz core needs from Envoy's attributes.
func requestInput(req *authv3.CheckRequest) authz.RequestInput {
	return fieldsOf(req).input()
}

// Field numbers of the CheckRequest fields decodeCheck reads
// (envoy/service/auth/v3/external_auth.proto, attribute_context.proto).
const (
	fieldCheckAttributes = 1  // CheckRequest.attributes
	fieldAttrsSource     = 1  // AttributeContext.source
	fieldAttrsRequest    = 4  // AttributeContext.request
	fieldPeerPrincipal   = 4  // AttributeContext.Peer.principal
	fieldRequestHTTP     = 2  // AttributeContext.Request.http
	fieldHTTPID          = 1  // HttpRequest.id
	fieldHTTPMethod      = 2  // HttpRequest.method
	fieldHTTPHeaders     = 3  // HttpRequest.headers (map<string, string>)
	fieldHTTPPath        = 4  // HttpRequest.path
	fieldHTTPHost        = 5  // HttpRequest.host
	fieldHTTPBody        = 11 // HttpRequest.body
	fieldHTTPRawBody     = 12 // HttpRequest.raw_body
	fieldHTTPHeaderMap   = 13 // HttpRequest.header_map
	fieldMapEntryKey     = 1
	fieldMapEntryValue   = 2
)

// inlineHeaders is how many header pairs a decoder holds without allocating.
const inlineHeaders = 32

var (
	errFieldNumber = errors.New("invalid field number")
	errUTF8        = errors.New("string field contains invalid UTF-8")
)

// The messages decodeCheck walks into.
type wireMessage uint8

const (
	msgCheckRequest wireMessage = iota
	msgAttributes
	msgPeer
	msgRequest
	msgHTTP
	msgHeaderEntry
)

// decodeCheck reads a CheckRequest's fields from its wire bytes, with
// proto.Unmarshal's rules: a field seen twice keeps its last value, a
// message seen twice is merged, a map key seen twice keeps its last value,
// a field with another wire type than its declared one is an unknown
// field, unknown fields are skipped, and a string that is not UTF-8 is an
// error. It does not look inside the fields it does not read (the
// destination, the metadata, the TLS session and others), so it accepts
// some messages proto.Unmarshal would refuse for what those hold; what it
// returns is always what proto.Unmarshal would have read for the fields it
// reads (FuzzDecodeCheck). A request in the header_map form is handed to
// proto.Unmarshal whole. What it returns shares no memory with b, which the
// caller may reuse.
//
// Why not proto.Unmarshal: it builds every message and map of the request
// (more than 100 allocations for a request from Istio) to read eight
// fields. This takes one copy of the bytes, whose substrings are the
// strings, the header map and, when there is one, a copy of the raw body.
func decodeCheck(b []byte) (checkFields, error) {
	d := wireDecoder{b: b, s: string(b)}
	if err := d.message(msgCheckRequest, 0, len(b)); err != nil {
		return checkFields{}, err
	}
	if d.headerMap {
		var req authv3.CheckRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return checkFields{}, err
		}
		return fieldsOf(&req), nil
	}
	if d.rawEnd > d.rawStart { // an empty one reads as none, as in input
		d.f.rawBody = []byte(d.s[d.rawStart:d.rawEnd])
	}
	if n := len(d.pairs); n > 0 {
		d.f.headers = make(map[string]string, n)
		for _, p := range d.pairs {
			d.f.headers[p.key] = p.value
		}
	}
	return d.f, nil
}

type headerPair struct{ key, value string }

// wireDecoder holds one request's bytes twice: as b to walk with protowire,
// and as s, whose substrings are the fields' strings (one copy for all of
// them rather than one per string).
type wireDecoder struct {
	b         []byte
	s         string
	f         checkFields
	pairs     []headerPair
	inline    [inlineHeaders]headerPair
	key, val  string // the map entry being read
	headerMap bool

	rawStart, rawEnd int // raw_body is d.s[rawStart:rawEnd]
}

// message reads the fields of the message of kind m in b[start:end].
func (d *wireDecoder) message(m wireMessage, start, end int) error {
	for pos := start; pos < end; {
		num, typ, n := protowire.ConsumeTag(d.b[pos:end])
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber {
			return errFieldNumber
		}
		pos += n
		if typ != protowire.BytesType {
			// Every field read here is length-delimited; proto.Unmarshal
			// keeps a field of another wire type as unknown.
			if n = protowire.ConsumeFieldValue(num, typ, d.b[pos:end]); n < 0 {
				return protowire.ParseError(n)
			}
			pos += n
			continue
		}
		v, n := protowire.ConsumeBytes(d.b[pos:end])
		if n < 0 {
			return protowire.ParseError(n)
		}
		vEnd := pos + n
		if err := d.field(m, num, vEnd-len(v), vEnd); err != nil {
			return err
		}
		pos = vEnd
	}
	return nil
}

// field reads one length-delimited field of a message of kind m, its value
// in b[start:end]; fields it does not name are skipped.
func (d *wireDecoder) field(m wireMessage, num protowire.Number, start, end int) error {
	switch m {
	case msgCheckRequest:
		if num == fieldCheckAttributes {
			return d.message(msgAttributes, start, end)
		}
	case msgAttributes:
		switch num {
		case fieldAttrsSource:
			return d.message(msgPeer, start, end)
		case fieldAttrsRequest:
			return d.message(msgRequest, start, end)
		}
	case msgPeer:
		if num == fieldPeerPrincipal {
			return d.str(&d.f.principal, start, end)
		}
	case msgRequest:
		if num == fieldRequestHTTP {
			return d.message(msgHTTP, start, end)
		}
	case msgHTTP:
		switch num {
		case fieldHTTPID:
			return d.str(&d.f.id, start, end)
		case fieldHTTPMethod:
			return d.str(&d.f.method, start, end)
		case fieldHTTPHeaders:
			d.key, d.val = "", "" // an entry without a key or value has the empty string
			if err := d.message(msgHeaderEntry, start, end); err != nil {
				return err
			}
			if d.pairs == nil {
				d.pairs = d.inline[:0]
			}
			d.pairs = append(d.pairs, headerPair{d.key, d.val})
		case fieldHTTPPath:
			return d.str(&d.f.path, start, end)
		case fieldHTTPHost:
			return d.str(&d.f.host, start, end)
		case fieldHTTPBody:
			return d.str(&d.f.body, start, end)
		case fieldHTTPRawBody:
			d.rawStart, d.rawEnd = start, end
		case fieldHTTPHeaderMap:
			d.headerMap = true
		}
	case msgHeaderEntry:
		switch num {
		case fieldMapEntryKey:
			return d.str(&d.key, start, end)
		case fieldMapEntryValue:
			return d.str(&d.val, start, end)
		}
	}
	return nil
}

// str sets *dst to the string in b[start:end], which proto3 requires to be
// UTF-8.
func (d *wireDecoder) str(dst *string, start, end int) error {
	v := d.s[start:end]
	if !utf8.ValidString(v) {
		return errUTF8
	}
	*dst = v
	return nil
}

// decodePanic is a panic while a CheckRequest was decoded: our bug, not
// the caller's, answered and logged as a panic in the check is.
type decodePanic struct {
	value any
	stack []byte
}

func (p *decodePanic) Error() string {
	return fmt.Sprintf("reading the CheckRequest panicked: %v", p.value)
}

// wireCheck is a CheckRequest as the gRPC Check handler receives it: the
// fields the service reads, decoded by serverCodec, or why they could not
// be.
type wireCheck struct {
	in  authz.RequestInput
	err error
}

// serverCodec is grpc-go's proto codec but for the Check handler's
// request, which it reads with decodeCheck.
type serverCodec struct{ encoding.CodecV2 }

func newServerCodec() serverCodec {
	return serverCodec{encoding.GetCodecV2(protocodec.Name)}
}

// Unmarshal decodes a Check request with decodeCheck and anything else
// with proto. A Check request that cannot be read is not an error here: the
// handler answers it with a deny, since an RPC error would take Envoy's
// failure path (failOpen).
func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	w, ok := v.(*wireCheck)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	// grpc-go does not recover a panic here: it would end the process.
	// A bug in decodeCheck is a 503 deny like any other panic in a check.
	defer func() {
		if p := recover(); p != nil {
			w.in, w.err = authz.RequestInput{}, &decodePanic{value: p, stack: debug.Stack()}
		}
	}()
	// One buffer as it is, or several copied into one from the pool:
	// decodeCheck copies what it keeps.
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	f, err := decodeCheck(buf.ReadOnlyData())
	if err != nil {
		w.err = fmt.Errorf("the CheckRequest could not be read: %w", err)
		return nil
	}
	w.in = f.input()
	return nil
}

// authorizationDesc is Envoy's Authorization service with a Check handler
// that decodes its request with serverCodec instead of into the generated
// message. Interceptors see the request as a *wireCheck.
var authorizationDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*authv3.AuthorizationServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: checkHandler}},
	Metadata:    authv3.Authorization_ServiceDesc.Metadata,
}

func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	w := new(wireCheck)
	if err := dec(w); err != nil {
		return nil, err
	}
	s := srv.(*Server)
	if interceptor == nil {
		return s.checkWire(ctx, w), nil
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, w, info, func(ctx context.Context, req any) (any, error) {
		return s.checkWire(ctx, req.(*wireCheck)), nil
	})
}
