package mlflow

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
)

func compress(t *testing.T, kind string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch kind {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zlib":
		w = zlib.NewWriter(&buf)
	case "raw":
		fw, err := flate.NewWriter(&buf, flate.BestSpeed)
		require.NoError(t, err)
		w = fw
	}
	_, err := w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// otlpSpanWith builds an export of one span from raw Span fields, for the
// shapes authztest.OTLPExport does not make.
func otlpSpanWith(fields ...[]byte) []byte {
	sp := bytes.Join(fields, nil)
	var scope, rs, req []byte
	scope = protowire.AppendBytes(protowire.AppendTag(scope, 2, protowire.BytesType), sp)
	rs = protowire.AppendBytes(protowire.AppendTag(rs, 2, protowire.BytesType), scope)
	return protowire.AppendBytes(protowire.AppendTag(req, 1, protowire.BytesType), rs)
}

func pbBytes(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func pbAttr(key string, value []byte) []byte {
	return pbBytes(9, append(pbBytes(1, []byte(key)), pbBytes(2, value)...))
}

func TestOTLPTraceIDs(t *testing.T) {
	id := []byte{0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	tr := authztest.OTLPTraceID(id)
	export := authztest.OTLPExport(authztest.OTLPSpan{TraceID: id}, authztest.OTLPSpan{TraceID: id}, authztest.OTLPSpan{TraceID: id, RequestID: "tr-other"})
	pb := map[string]string{"content-type": "application/x-protobuf"}
	js := map[string]string{"content-type": "application/json"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	jsonSpan := func(span string) string {
		return `{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{},"spans":[` + span + `]}]}]}`
	}
	hexID := strings.TrimPrefix(tr, "tr-")
	strAttr := func(key, val string) []byte { return pbAttr(key, pbBytes(1, []byte(val))) }
	intValue := protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 5)
	tests := []struct {
		name    string
		body    []byte
		headers map[string]string
		trunc   bool
		want    []string
		status  int
		reason  authz.Reason
	}{
		{name: "protobuf, distinct ids in order", body: export, headers: pb, want: []string{tr, "tr-other"}},
		{name: "charset parameter", body: export, headers: with(pb, "content-type", "application/x-protobuf; charset=binary"), want: []string{tr, "tr-other"}},
		{name: "gzip", body: compress(t, "gzip", export), headers: with(pb, "content-encoding", "gzip"), want: []string{tr, "tr-other"}},
		{name: "GZIP in capitals", body: compress(t, "gzip", export), headers: with(pb, "content-encoding", "GZIP"), want: []string{tr, "tr-other"}},
		{name: "deflate as zlib", body: compress(t, "zlib", export), headers: with(pb, "content-encoding", "deflate"), want: []string{tr, "tr-other"}},
		{name: "deflate raw", body: compress(t, "raw", export), headers: with(pb, "content-encoding", "deflate"), want: []string{tr, "tr-other"}},
		{name: "short OTel id is padded as MLflow formats it", body: authztest.OTLPExport(authztest.OTLPSpan{TraceID: []byte{0, 0, 1, 2}}), headers: pb,
			want: []string{"tr-00000000000000000000000000000102"}},
		{name: "no spans", body: nil, headers: pb, want: nil},
		{name: "unknown fields are skipped", body: append(otlpSpanWith(pbBytes(1, id), pbBytes(15, []byte("x"))), pbBytes(7, []byte("y"))...), headers: pb, want: []string{tr}},
		{name: "a trace_id of the wrong wire type is not one", body: otlpSpanWith(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)), headers: pb,
			status: 400, reason: authz.ReasonInvalidParameter},
		{name: "span without trace id", body: otlpSpanWith(pbBytes(5, []byte("n"))), headers: pb, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "trace_id twice", body: otlpSpanWith(pbBytes(1, id), pbBytes(1, []byte("0123456789abcdef"))), headers: pb, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "request id twice", body: otlpSpanWith(pbBytes(1, id), strAttr(otelRequestIDAttr, "tr-a"), strAttr(otelRequestIDAttr, "tr-b")), headers: pb, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "attribute key twice", body: otlpSpanWith(pbBytes(1, id), pbBytes(9, append(pbBytes(1, []byte("x")), append(pbBytes(1, []byte(otelRequestIDAttr)), pbBytes(2, pbBytes(1, []byte("tr-a")))...)...))), headers: pb,
			status: 400, reason: authz.ReasonInvalidParameter},
		{name: "request id not a string", body: otlpSpanWith(pbBytes(1, id), pbAttr(otelRequestIDAttr, intValue)), headers: pb, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "request id with two values", body: otlpSpanWith(pbBytes(1, id), pbAttr(otelRequestIDAttr, append(pbBytes(1, []byte("tr-a")), intValue...))), headers: pb, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "other attributes are ignored", body: otlpSpanWith(pbBytes(1, id), pbAttr("n", intValue), strAttr("mlflow.spanType", "LLM")), headers: pb, want: []string{tr}},
		{name: "malformed protobuf", body: []byte{0x0a, 0x05, 1}, headers: pb, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "unsupported content type", body: export, headers: map[string]string{"content-type": "application/octet-stream"}, status: 400, reason: ReasonUnsupportedContentType},
		{name: "no content type", body: export, headers: map[string]string{}, status: 400, reason: ReasonUnsupportedContentType},
		{name: "unsupported encoding", body: export, headers: with(pb, "content-encoding", "br"), status: 400, reason: authz.ReasonInvalidParameter},
		{name: "gzip that is not", body: export, headers: with(pb, "content-encoding", "gzip"), status: 400, reason: authz.ReasonInvalidParameter},
		{name: "decompression bomb", body: compress(t, "gzip", make([]byte, otlpMaxDecoded+1)), headers: with(pb, "content-encoding", "gzip"), status: 400, reason: authz.ReasonInvalidParameter},
		{name: "truncated", body: export, headers: pb, trunc: true, status: 413, reason: authz.ReasonBodyTruncated},

		{name: "JSON hex ids", body: []byte(jsonSpan(`{"traceId":"` + hexID + `","spanId":"0102030405060708","name":"s"}`)), headers: js, want: []string{tr}},
		{name: "JSON upper-case hex", body: []byte(jsonSpan(`{"traceId":"` + strings.ToUpper(hexID) + `"}`)), headers: js, want: []string{tr}},
		{name: "JSON request id", body: []byte(jsonSpan(`{"traceId":"` + hexID + `","attributes":[{"key":"mlflow.traceRequestId","value":{"stringValue":"tr-x"}}]}`)), headers: js, want: []string{"tr-x"}},
		{name: "JSON request id, snake value", body: []byte(jsonSpan(`{"traceId":"` + hexID + `","attributes":[{"key":"mlflow.traceRequestId","value":{"string_value":"tr-x"}}]}`)), headers: js, want: []string{"tr-x"}},
		{name: "JSON gzip", body: compress(t, "gzip", []byte(jsonSpan(`{"traceId":"`+hexID+`"}`))), headers: with(js, "content-encoding", "gzip"), want: []string{tr}},
		{name: "JSON request id not a string", body: []byte(jsonSpan(`{"traceId":"` + hexID + `","attributes":[{"key":"mlflow.traceRequestId","value":{"intValue":"5"}}]}`)), headers: js,
			status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON request id twice", body: []byte(jsonSpan(`{"traceId":"` + hexID + `","attributes":[{"key":"mlflow.traceRequestId","value":{"stringValue":"tr-x"}},{"key":"mlflow.traceRequestId","value":{"stringValue":"tr-y"}}]}`)), headers: js,
			status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON snake_case trace_id would be read as base64", body: []byte(jsonSpan(`{"trace_id":"` + hexID + `"}`)), headers: js, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON snake_case resource_spans", body: []byte(`{"resource_spans":[]}`), headers: js, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON snake_case scope_spans", body: []byte(`{"resourceSpans":[{"scope_spans":[]}]}`), headers: js, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON traceId not hex", body: []byte(jsonSpan(`{"traceId":"zz"}`)), headers: js, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON traceId a number", body: []byte(jsonSpan(`{"traceId":5}`)), headers: js, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON duplicate key", body: []byte(jsonSpan(`{"traceId":"` + hexID + `","traceId":"00"}`)), headers: js, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "JSON not an object", body: []byte(`[]`), headers: js, status: 400, reason: authz.ReasonInvalidParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, d := authz.NewRequest(authz.RequestInput{Method: "POST", Target: "/v1/traces", Headers: tt.headers, Body: tt.body})
			require.Nil(t, d)
			r.BodyTruncated = tt.trunc
			ids, d := otlpTraceIDs(r)
			if tt.status != 0 {
				require.NotNil(t, d, "want a deny, got %v", ids)
				assert.Equal(t, tt.status, d.Status, d.Message)
				assert.Equal(t, tt.reason, d.Reason, d.Message)
				return
			}
			require.Nil(t, d, "unexpected deny %+v", d)
			assert.Equal(t, tt.want, ids)
		})
	}
}

// FuzzOTLP: the export reader never panics, and what it returns are valid,
// distinct trace ids.
func FuzzOTLP(f *testing.F) {
	id := []byte("0123456789abcdef")
	f.Add(authztest.OTLPExport(authztest.OTLPSpan{TraceID: id}, authztest.OTLPSpan{TraceID: id, RequestID: "tr-1"}), false)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"30313233343536373839616263646566"}]}]}]}`), true)
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00}, false)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		r, d := authz.NewRequest(authz.RequestInput{Method: "POST", Target: "/v1/traces", Headers: map[string]string{"content-type": ct}, Body: body})
		if d != nil {
			return
		}
		ids, d := otlpTraceIDs(r)
		if d != nil {
			if d.Allowed || d.Status != http.StatusBadRequest || d.Reason == "" {
				t.Fatalf("bad deny %+v", d)
			}
			return
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if !validID(id) || seen[id] {
				t.Fatalf("bad or repeated id %q in %v", id, ids)
			}
			seen[id] = true
		}
	})
}
