package authztest

import (
	"encoding/hex"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// OTLPSpan is one span of an OTLP trace export: its OTel trace id and, when
// RequestID is set, MLflow's mlflow.traceRequestId attribute, which MLflow
// takes as the span's trace id instead.
type OTLPSpan struct {
	TraceID   []byte
	RequestID string
}

// OTLPExport encodes an ExportTraceServiceRequest (opentelemetry-proto
// trace/v1) with every span in one resource and one scope, as an OTel
// exporter sends it to POST /v1/traces.
func OTLPExport(spans ...OTLPSpan) []byte {
	var scope []byte
	for _, s := range spans {
		var sp []byte
		sp = protowire.AppendTag(sp, 1, protowire.BytesType) // trace_id
		sp = protowire.AppendBytes(sp, s.TraceID)
		sp = protowire.AppendTag(sp, 2, protowire.BytesType) // span_id
		sp = protowire.AppendBytes(sp, []byte{1, 2, 3, 4, 5, 6, 7, 8})
		sp = protowire.AppendTag(sp, 5, protowire.BytesType) // name
		sp = protowire.AppendString(sp, "span")
		if s.RequestID != "" {
			var any []byte
			any = protowire.AppendTag(any, 1, protowire.BytesType) // string_value
			any = protowire.AppendString(any, s.RequestID)
			var kv []byte
			kv = protowire.AppendTag(kv, 1, protowire.BytesType) // key
			kv = protowire.AppendString(kv, "mlflow.traceRequestId")
			kv = protowire.AppendTag(kv, 2, protowire.BytesType) // value
			kv = protowire.AppendBytes(kv, any)
			sp = protowire.AppendTag(sp, 9, protowire.BytesType) // attributes
			sp = protowire.AppendBytes(sp, kv)
		}
		scope = protowire.AppendTag(scope, 2, protowire.BytesType) // ScopeSpans.spans
		scope = protowire.AppendBytes(scope, sp)
	}
	var rs []byte
	rs = protowire.AppendTag(rs, 2, protowire.BytesType) // ResourceSpans.scope_spans
	rs = protowire.AppendBytes(rs, scope)
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType) // resource_spans
	return protowire.AppendBytes(req, rs)
}

// OTLPTraceID is MLflow's trace id for an OTel trace id of 16 bytes.
func OTLPTraceID(id []byte) string {
	return "tr-" + strings.ToLower(hex.EncodeToString(id))
}
