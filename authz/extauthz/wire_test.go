package extauthz

import (
	"log/slog"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// wireIstioRequest is a CheckRequest with everything an Istio sidecar
// fills, the fields decodeCheck skips included.
func wireIstioRequest() *authv3.CheckRequest {
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}}
	}
	meta, err := structpb.NewStruct(map[string]any{"request.auth.principal": "x", "n": 1.5, "list": []any{"a", true}})
	if err != nil {
		panic(err)
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   addr("10.244.1.17", 51234),
			Principal: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
			Labels:    map[string]string{"app": "ingress"},
		},
		Destination: &authv3.AttributeContext_Peer{
			Address:   addr("10.244.2.9", 5000),
			Principal: "spiffe://cluster.local/ns/mlflow/sa/mlflow",
		},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "9187263548172635481",
				Method:   "POST",
				Host:     "mlflow.example.com",
				Path:     "/api/2.0/mlflow/runs/log-batch?x=1",
				Scheme:   "https",
				Protocol: "HTTP/2",
				Size:     17,
				Headers: map[string]string{
					":authority": "mlflow.example.com", ":method": "POST", ":path": "/api/2.0/mlflow/runs/log-batch?x=1",
					":scheme": "https", "authorization": "Bearer a.b.c", "content-type": "application/json",
					"x-request-id": "7c4f6f9e-8d3a-4d7e-9b1a-2f6e5d4c3b2a", "x-envoy-auth-partial-body": "false",
					"x-forwarded-client-cert": "By=spiffe://a;Hash=00;Subject=\"\";URI=spiffe://b",
				},
				RawBody: []byte(`{"run_id":"abc"}` + "\n"),
			},
		},
		ContextExtensions: map[string]string{"app": "mlflow"},
		MetadataContext:   &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio_authn": meta}},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "mlflow.example.com"},
	}}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	return b
}

// viaProto is what the service read from b before decodeCheck:
// proto.Unmarshal into the generated message, then requestInput.
func viaProto(b []byte) (authz.RequestInput, error) {
	var req authv3.CheckRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		return authz.RequestInput{}, err
	}
	return requestInput(&req), nil
}

func viaWire(b []byte) (authz.RequestInput, error) {
	f, err := decodeCheck(b)
	if err != nil {
		return authz.RequestInput{}, err
	}
	return f.input(), nil
}

// tagged appends one field to b, of any wire type, for messages the
// generated code would never write.
func tagged(b []byte, num protowire.Number, typ protowire.Type, v []byte) []byte {
	b = protowire.AppendTag(b, num, typ)
	if typ == protowire.BytesType {
		return protowire.AppendBytes(b, v)
	}
	return append(b, v...)
}

// nest wraps the bytes of an HttpRequest's fields into a CheckRequest
// (attributes.request.http).
func nest(http []byte) []byte {
	req := tagged(nil, fieldRequestHTTP, protowire.BytesType, http)
	attrs := tagged(nil, fieldAttrsRequest, protowire.BytesType, req)
	return tagged(nil, fieldCheckAttributes, protowire.BytesType, attrs)
}

func headerEntry(fields ...[]byte) []byte {
	var e []byte
	for _, f := range fields {
		e = append(e, f...)
	}
	return tagged(nil, fieldHTTPHeaders, protowire.BytesType, e)
}

func str(num protowire.Number, s string) []byte {
	return tagged(nil, num, protowire.BytesType, []byte(s))
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// wireSeeds are the messages the decoder must read as proto.Unmarshal
// does: the shapes Envoy sends and the ones the wire format allows.
func wireSeeds(t testing.TB) map[string][]byte {
	istio := mustMarshal(t, wireIstioRequest())
	rawHeaders := wireIstioRequest()
	rawHeaders.Attributes.Request.Http.Headers = nil
	rawHeaders.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", RawValue: []byte("/raw")}, {Key: "X-Request-Id", Value: "r1"}, {Key: "cookie", Value: "a=1"}, {Key: "cookie", Value: "b=2"},
	}}
	stringBody := wireIstioRequest()
	stringBody.Attributes.Request.Http.RawBody = nil
	stringBody.Attributes.Request.Http.Body = `{"run_id":"from-string"}`
	pseudoOnly := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{":method": "GET", ":authority": "h", ":path": "/p"}},
	}}}
	return map[string][]byte{
		"istio":               istio,
		"empty":               nil,
		"header_map form":     mustMarshal(t, rawHeaders),
		"string body":         mustMarshal(t, stringBody),
		"pseudo-headers":      mustMarshal(t, pseudoOnly),
		"merged twice":        cat(istio, mustMarshal(t, pseudoOnly)), // concatenated messages merge
		"path set empty":      cat(istio, nest(str(fieldHTTPPath, ""))),
		"principal again":     cat(istio, tagged(nil, fieldCheckAttributes, protowire.BytesType, tagged(nil, fieldAttrsSource, protowire.BytesType, []byte("\x22\x05mallo")))),
		"header key twice":    nest(cat(headerEntry(str(1, "a"), str(2, "1")), headerEntry(str(1, "a"), str(2, "2")))),
		"entry fields repeat": nest(headerEntry(str(1, "k"), str(2, "v1"), str(1, "key"), str(2, "v2"))),
		"entry value first":   nest(headerEntry(str(2, "v"), str(1, "k"))),
		"entry without key":   nest(headerEntry(str(2, "v"))),
		"entry without value": nest(headerEntry(str(1, "k"))),
		"empty entry":         nest(headerEntry()),
		"entries missing a field after full ones": nest(cat(headerEntry(str(1, "a"), str(2, "1")), headerEntry(str(1, "b")), headerEntry(str(2, "3")))),
		"entry unknown field":                     nest(headerEntry(str(1, "k"), tagged(nil, 9, protowire.VarintType, []byte{1}), str(2, "v"))),
		// A field of another wire type than declared is an unknown field.
		"path as varint":      nest(cat(str(fieldHTTPPath, "/a"), tagged(nil, fieldHTTPPath, protowire.VarintType, []byte{5}))),
		"key as fixed32":      nest(headerEntry(tagged(nil, 1, protowire.Fixed32Type, []byte{1, 2, 3, 4}), str(2, "v"))),
		"http as fixed64":     cat(nest(str(fieldHTTPMethod, "GET")), tagged(nil, fieldCheckAttributes, protowire.BytesType, tagged(nil, fieldAttrsRequest, protowire.BytesType, tagged(nil, fieldRequestHTTP, protowire.Fixed64Type, make([]byte, 8))))),
		"size as bytes":       nest(cat(str(fieldHTTPMethod, "GET"), str(9, "not a varint"))),
		"unknown group":       nest(cat(tagged(nil, 100, protowire.StartGroupType, nil), str(1, "in the group"), tagged(nil, 100, protowire.EndGroupType, nil), str(fieldHTTPMethod, "PUT"))),
		"raw body then empty": nest(cat(tagged(nil, fieldHTTPRawBody, protowire.BytesType, []byte("x")), tagged(nil, fieldHTTPRawBody, protowire.BytesType, nil), str(fieldHTTPBody, "fallback"))),
	}
}

// TestDecodeCheckReadsAsProto pins decodeCheck to proto.Unmarshal on every
// seed: the same input, or both refuse.
func TestDecodeCheckReadsAsProto(t *testing.T) {
	for name, b := range wireSeeds(t) {
		t.Run(name, func(t *testing.T) {
			want, perr := viaProto(b)
			got, werr := viaWire(b)
			if perr != nil {
				require.Error(t, werr, "proto refused it: %v", perr)
				return
			}
			require.NoError(t, werr)
			assert.Equal(t, want, got)
		})
	}
	// Inside a field it does not read, decodeCheck does not look: the one
	// way it accepts what proto refuses, and never for a field it reads.
	got, err := viaWire(nest(cat(str(fieldHTTPMethod, "GET"), str(6, "\xff"))))
	require.NoError(t, err)
	assert.Equal(t, "GET", got.Method)
	// grpc-go reuses the buffer once decodeCheck returns: nothing read may
	// share its memory.
	b := mustMarshal(t, wireIstioRequest())
	want, err := viaProto(b)
	require.NoError(t, err)
	got, err = viaWire(b)
	require.NoError(t, err)
	for i := range b {
		b[i] = 'X'
	}
	assert.Equal(t, want, got)
	assert.Equal(t, "7c4f6f9e-8d3a-4d7e-9b1a-2f6e5d4c3b2a", got.ID)
	assert.Equal(t, "/api/2.0/mlflow/runs/log-batch?x=1", got.Target)
	assert.Equal(t, "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account", got.Principal)
	assert.Equal(t, `{"run_id":"abc"}`+"\n", string(got.Body))
	assert.Len(t, got.Headers, 9)
}

// TestDecodeCheckRefuses: what proto.Unmarshal refuses in the fields the
// service reads, decodeCheck refuses too.
func TestDecodeCheckRefuses(t *testing.T) {
	tests := map[string]struct {
		b    []byte
		want string
	}{
		"invalid UTF-8 in a header value": {nest(headerEntry(str(1, "k"), str(2, "\xc3\x28"))), "invalid UTF-8"},
		"invalid UTF-8 in a header name":  {nest(headerEntry(str(1, "\xff"), str(2, "v"))), "invalid UTF-8"},
		"invalid UTF-8 in the path":       {nest(str(fieldHTTPPath, "/\xfe")), "invalid UTF-8"},
		"invalid UTF-8 in the body":       {nest(str(fieldHTTPBody, "\xff")), "invalid UTF-8"},
		"invalid UTF-8 in the principal":  {tagged(nil, fieldCheckAttributes, protowire.BytesType, tagged(nil, fieldAttrsSource, protowire.BytesType, str(fieldPeerPrincipal, "\xff"))), "invalid UTF-8"},
		"truncated length":                {mustMarshal(t, wireIstioRequest())[:40], "unexpected EOF"},
		"field number zero":               {nest([]byte{0x02, 0x00}), "invalid field number"},
		"field number above the maximum":  {nest(tagged(nil, protowire.MaxValidNumber+1, protowire.VarintType, []byte{1})), "invalid field number"},
		"group never closed":              {nest(tagged(nil, 7, protowire.StartGroupType, nil)), "unexpected EOF"},
		"reserved wire type":              {nest([]byte{0x0e}), "cannot parse reserved wire type"},
		"truncated header entry":          {nest(tagged(nil, fieldHTTPHeaders, protowire.BytesType, []byte{0x0a, 0x05, 'a'})), "unexpected EOF"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, perr := viaProto(tt.b)
			require.Error(t, perr, "the case must be one proto refuses")
			_, err := viaWire(tt.b)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// FuzzDecodeCheck: wherever proto.Unmarshal reads a CheckRequest,
// decodeCheck reads the same input from it. Where proto refuses, decodeCheck
// may accept only for what lies in a field it does not read, which it never
// looks into: then what it read must still be UTF-8 wherever proto3 says
// string.
func FuzzDecodeCheck(f *testing.F) {
	for _, b := range wireSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, perr := viaProto(b)
		got, werr := viaWire(b)
		switch {
		case perr == nil && werr != nil:
			t.Fatalf("proto reads it, decodeCheck refuses: %v", werr)
		case perr == nil:
			if !equalInput(want, got) {
				t.Fatalf("decodeCheck read\n%+v\nproto read\n%+v", got, want)
			}
		case werr == nil:
			for _, s := range []string{got.ID, got.Method, got.Host, got.Target, got.Principal} {
				if !utf8Valid(s) {
					t.Fatalf("accepted a string proto3 refuses: %q (proto: %v)", s, perr)
				}
			}
			for k, v := range got.Headers {
				if !utf8Valid(k) || !utf8Valid(v) {
					t.Fatalf("accepted a header proto3 refuses: %q: %q (proto: %v)", k, v, perr)
				}
			}
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// equalInput compares two inputs as assert.Equal would, with a nil and an
// empty body alike (the generated message has no way to tell them apart).
func equalInput(a, b authz.RequestInput) bool {
	if a.ID != b.ID || a.Method != b.Method || a.Host != b.Host || a.Target != b.Target ||
		a.Principal != b.Principal || string(a.Body) != string(b.Body) || len(a.Headers) != len(b.Headers) {
		return false
	}
	for k, v := range a.Headers {
		if w, ok := b.Headers[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestDecodeCheckAllocs pins what reading an Istio request costs: the
// string copy, the raw body's copy and the header map (a map of more than
// eight entries is several allocations in Go's swiss tables), where
// proto.Unmarshal made 132.
func TestDecodeCheckAllocs(t *testing.T) {
	b := mustMarshal(t, wireIstioRequest())
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := decodeCheck(b); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 7.0)
	var req authv3.CheckRequest
	protoAllocs := testing.AllocsPerRun(1000, func() {
		proto.Reset(&req)
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("decodeCheck %v allocations, proto.Unmarshal %v", allocs, protoAllocs)
}

// BenchmarkDecodeCheck compares decodeCheck with what it replaced.
func BenchmarkDecodeCheck(b *testing.B) {
	wire := mustMarshal(b, wireIstioRequest())
	b.Run("decodeCheck", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := viaWire(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := viaProto(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// panickyBuffer stands in for a bug in decodeCheck: reading it panics.
type panickyBuffer struct{ mem.Buffer }

func (panickyBuffer) ReadOnlyData() []byte { panic("boom") }
func (panickyBuffer) Ref()                 {}
func (panickyBuffer) Free()                {}
func (panickyBuffer) Len() int             { return 1 }

// TestDecodePanicDenies: grpc-go recovers no panic in a codec, so one in
// decodeCheck would end the process; it is a 503 deny instead.
func TestDecodePanicDenies(t *testing.T) {
	w := new(wireCheck)
	require.NoError(t, newServerCodec().Unmarshal(mem.BufferSlice{panickyBuffer{}}, w))
	var p *decodePanic
	require.ErrorAs(t, w.err, &p)
	assert.Contains(t, w.err.Error(), "boom")
	var logged storetest.LogBuffer
	resp := NewServer(nil, slog.New(slog.NewJSONHandler(&logged, nil)), nil).checkWire(t.Context(), w)
	assert.Equal(t, int32(codes.Unavailable), resp.GetStatus().GetCode())
	assert.Equal(t, string(authz.ReasonInternal), resp.GetStatus().GetMessage())
	assert.Equal(t, typev3.StatusCode_ServiceUnavailable, resp.GetDeniedResponse().GetStatus().GetCode())
	// Logged as any panic in a check is: an error, with where it happened.
	assert.Contains(t, logged.String(), `"level":"ERROR","msg":"panic in authorization check"`)
	assert.Contains(t, logged.String(), `"panic":"boom"`)
	assert.Contains(t, logged.String(), "serverCodec.Unmarshal")
}
