package mlflow

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// OTLP/HTTP trace exports (POST /v1/traces; mlflow/server/otel_api.py:
// export_traces). MLflow writes each span into the trace its id names:
// a trace that does not exist is created in the X-MLflow-Experiment-Id
// experiment, but an existing one is written into where it is, whatever
// the header says (mlflow/store/tracking/sqlalchemy_store.py: log_spans).
// So the check reads every trace id of the body exactly as MLflow derives
// it (mlflow/entities/span.py: Span.from_otel_proto): the span attribute
// mlflow.traceRequestId when there is one, else "tr-" and the OTel trace
// id as 32 hex digits (mlflow/tracing/utils: generate_mlflow_trace_id_from_otel_trace_id).
// A body two parsers could read differently (a field given twice, a
// request id that is not a string, a snake_case JSON name that MLflow's
// hex conversion skips) is refused.

const (
	// otlpMaxDecoded bounds a decompressed export: a small gzip body must
	// not make the check inflate gigabytes.
	otlpMaxDecoded = 32 << 20
	// otelRequestIDAttr is SpanAttributeKey.REQUEST_ID
	// (mlflow/tracing/constant.py).
	otelRequestIDAttr = "mlflow.traceRequestId"
)

// OTLP protobuf field numbers (opentelemetry-proto, trace/v1, common/v1).
const (
	otlpResourceSpans   = 1 // ExportTraceServiceRequest.resource_spans
	otlpScopeSpans      = 2 // ResourceSpans.scope_spans
	otlpSpans           = 2 // ScopeSpans.spans
	otlpSpanTraceID     = 1 // Span.trace_id
	otlpSpanAttributes  = 9 // Span.attributes
	otlpKeyValueKey     = 1 // KeyValue.key
	otlpKeyValueValue   = 2 // KeyValue.value
	otlpAnyStringValue  = 1 // AnyValue.string_value
	otlpAnyLastValueTag = 7 // AnyValue.bytes_value, the highest member of the oneof
)

var errOTLP = errors.New("mlflow: not an OTLP export MLflow would read the same way")

// otlpTraceIDs returns the distinct trace ids the spans of an OTLP export
// name, in the order they first appear.
func otlpTraceIDs(req *authz.Request) ([]string, *authz.Decision) {
	if req.BodyTruncated {
		return nil, deny(http.StatusRequestEntityTooLarge, authz.ReasonBodyTruncated, "the OTLP export is too large to check the traces its spans name")
	}
	mt, _, _ := strings.Cut(req.Header("content-type"), ";")
	isJSON := false
	switch strings.TrimSpace(mt) {
	case "application/x-protobuf":
	case "application/json":
		isJSON = true
	default:
		return nil, deny(http.StatusBadRequest, ReasonUnsupportedContentType, "MLflow reads OTLP exports as application/x-protobuf or application/json")
	}
	body, err := otlpDecode(req.Body, strings.ToLower(req.Header("content-encoding")))
	if err != nil {
		return nil, badParam("the OTLP export cannot be decompressed: " + err.Error())
	}
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if isJSON {
		err = otlpJSONTraceIDs(body, add)
	} else {
		err = otlpProtoTraceIDs(body, add)
	}
	if err != nil {
		return nil, badParam(strings.TrimPrefix(err.Error(), "mlflow: "))
	}
	for _, id := range ids {
		if !validID(id) {
			return nil, badParam("the OTLP export names a trace id that is not a valid id")
		}
	}
	return ids, nil
}

// otlpDecode undoes Content-Encoding as MLflow's decompress_otlp_body does
// (mlflow/tracing/utils/otlp.py): gzip, or deflate as zlib or raw.
func otlpDecode(body []byte, encoding string) ([]byte, error) {
	var r io.Reader
	switch encoding {
	case "":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		r = zr
	case "deflate":
		if out, err := readBounded(zlibReader(body)); err == nil {
			return out, nil
		}
		r = flate.NewReader(bytes.NewReader(body))
	default:
		return nil, errors.New("unsupported content-encoding " + encoding)
	}
	return readBounded(r)
}

func zlibReader(body []byte) io.Reader {
	zr, err := zlib.NewReader(bytes.NewReader(body))
	if err != nil {
		return errReader{err}
	}
	return zr
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func readBounded(r io.Reader) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, otlpMaxDecoded+1))
	if err != nil {
		return nil, err
	}
	if len(out) > otlpMaxDecoded {
		return nil, errors.New("more than 32 MiB once decompressed")
	}
	return out, nil
}

// otelTraceID is MLflow's trace id for an OTel trace id: the bytes read as
// a big-endian integer, in at least 32 lower-case hex digits.
func otelTraceID(b []byte) (string, error) {
	if len(b) == 0 {
		return "", errors.New("mlflow: a span without a trace_id")
	}
	h := strings.TrimLeft(hex.EncodeToString(b), "0")
	if len(h) < 32 {
		h = strings.Repeat("0", 32-len(h)) + h
	}
	return "tr-" + h, nil
}

// otlpProtoTraceIDs walks a binary ExportTraceServiceRequest. A field with
// the wrong wire type is skipped, as protobuf's parser treats it as unknown.
func otlpProtoTraceIDs(b []byte, add func(string)) error {
	return protoEach(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != otlpResourceSpans || typ != protowire.BytesType {
			return nil
		}
		return protoEach(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num != otlpScopeSpans || typ != protowire.BytesType {
				return nil
			}
			return protoEach(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != otlpSpans || typ != protowire.BytesType {
					return nil
				}
				return otlpProtoSpan(v, add)
			})
		})
	})
}

// otlpProtoSpan reads one Span: its trace_id, and its request id attribute,
// which wins over it.
func otlpProtoSpan(b []byte, add func(string)) error {
	var traceID []byte
	traceIDs, requestID := 0, ""
	err := protoEach(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == otlpSpanTraceID && typ == protowire.BytesType:
			traceIDs++
			traceID = v
		case num == otlpSpanAttributes && typ == protowire.BytesType:
			id, ok, err := otlpProtoRequestID(v)
			if err != nil {
				return err
			}
			if ok {
				if requestID != "" {
					return errors.New("mlflow: a span sets " + otelRequestIDAttr + " twice")
				}
				requestID = id
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if traceIDs > 1 {
		return errors.New("mlflow: a span with its trace_id twice")
	}
	tid, err := otelTraceID(traceID)
	if err != nil {
		return err
	}
	if requestID != "" {
		add(requestID)
		return nil
	}
	add(tid)
	return nil
}

// otlpProtoRequestID reads one KeyValue; ok when it is the request id
// attribute, which must hold exactly one string.
func otlpProtoRequestID(b []byte) (string, bool, error) {
	keys, values := 0, 0
	var key string
	var value []byte
	err := protoEach(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == otlpKeyValueKey && typ == protowire.BytesType:
			keys++
			key = string(v)
		case num == otlpKeyValueValue && typ == protowire.BytesType:
			values++
			value = v
		}
		return nil
	})
	if err != nil || keys == 0 {
		return "", false, err
	}
	if keys > 1 {
		return "", false, errors.New("mlflow: a span attribute with its key twice")
	}
	if key != otelRequestIDAttr {
		return "", false, nil
	}
	if values != 1 {
		return "", false, errors.New("mlflow: " + otelRequestIDAttr + " must hold one string")
	}
	var s string
	members := 0
	err = protoEach(value, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num < 1 || num > otlpAnyLastValueTag {
			return nil
		}
		members++
		if num == otlpAnyStringValue && typ == protowire.BytesType {
			s = string(v)
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	if members != 1 || s == "" {
		return "", false, errors.New("mlflow: " + otelRequestIDAttr + " must hold one string")
	}
	return s, true, nil
}

// protoEach calls f for every field of a protobuf message, with the raw
// bytes of length-delimited values; it fails on malformed input.
func protoEach(b []byte, f func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errOTLP
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errOTLP
		}
		b = b[n:]
		if err := f(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

// otlpJSONTraceIDs walks an OTLP/JSON export. MLflow turns the spans' hex
// traceId into bytes only under the camelCase names the OTLP spec uses
// (otel_api._convert_otlp_json_ids_to_base64) before protobuf's JSON parser,
// which would read the snake_case spellings as base64: they are refused.
func otlpJSONTraceIDs(body []byte, add func(string)) error {
	m, err := parseJSONObject(body)
	if err != nil {
		return errors.New("mlflow: the OTLP export is not a JSON object MLflow could read")
	}
	snake := func(obj map[string]any, keys ...string) error {
		for _, k := range keys {
			if _, ok := obj[k]; ok {
				return errors.New("mlflow: OTLP/JSON field " + k + " must be spelled as the OTLP spec does")
			}
		}
		return nil
	}
	objects := func(v any, what string) ([]map[string]any, error) {
		if v == nil {
			return nil, nil
		}
		l, ok := v.([]any)
		if !ok {
			return nil, errors.New("mlflow: OTLP/JSON " + what + " must be a list")
		}
		out := make([]map[string]any, 0, len(l))
		for _, e := range l {
			o, ok := e.(map[string]any)
			if !ok {
				return nil, errors.New("mlflow: OTLP/JSON " + what + " must hold objects")
			}
			out = append(out, o)
		}
		return out, nil
	}
	if err := snake(m, "resource_spans"); err != nil {
		return err
	}
	rss, err := objects(m["resourceSpans"], "resourceSpans")
	if err != nil {
		return err
	}
	for _, rs := range rss {
		if err := snake(rs, "scope_spans"); err != nil {
			return err
		}
		sss, err := objects(rs["scopeSpans"], "scopeSpans")
		if err != nil {
			return err
		}
		for _, ss := range sss {
			spans, err := objects(ss["spans"], "spans")
			if err != nil {
				return err
			}
			for _, sp := range spans {
				if err := otlpJSONSpan(sp, snake, objects, add); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func otlpJSONSpan(sp map[string]any, snake func(map[string]any, ...string) error, objects func(any, string) ([]map[string]any, error), add func(string)) error {
	if err := snake(sp, "trace_id"); err != nil {
		return err
	}
	hexID, ok := sp["traceId"].(string)
	if !ok {
		return errors.New("mlflow: an OTLP/JSON span without a hex traceId")
	}
	raw, err := hex.DecodeString(hexID)
	if err != nil {
		return errors.New("mlflow: an OTLP/JSON traceId that is not hex")
	}
	tid, err := otelTraceID(raw)
	if err != nil {
		return err
	}
	attrs, err := objects(sp["attributes"], "attributes")
	if err != nil {
		return err
	}
	requestID := ""
	for _, a := range attrs {
		if k, _ := a["key"].(string); k != otelRequestIDAttr {
			continue
		}
		val, _ := a["value"].(map[string]any)
		if val == nil || len(val) != 1 {
			return errors.New("mlflow: " + otelRequestIDAttr + " must hold one string")
		}
		s, present, d := lookupMapKey(val, "string_value")
		str, isString := s.(string)
		if d != nil || !present || !isString || str == "" {
			return errors.New("mlflow: " + otelRequestIDAttr + " must hold one string")
		}
		if requestID != "" {
			return errors.New("mlflow: a span sets " + otelRequestIDAttr + " twice")
		}
		requestID = str
	}
	if requestID != "" {
		add(requestID)
		return nil
	}
	add(tid)
	return nil
}
