package extproc

import (
	"mime"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/envoyheader"
)

// From Envoy's messages to ours, and back.

// peerAttribute is the Envoy attribute of the mTLS peer's identity: the
// first URI SAN of its certificate, what ext_authz reports as
// source.principal. The filter asks for it in request_attributes
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes).
const peerAttribute = "connection.uri_san_peer_certificate"

// requestInput reads what authz.NewRequest needs from the request headers
// Envoy sends: the pseudo-headers for method, authority and path, every
// header with a lower-case name (repeated ones joined as Envoy joins them
// for ext_authz), and the peer from the attributes.
func requestInput(h *extprocv3.HttpHeaders, attrs map[string]*structpb.Struct) authz.RequestInput {
	headers := envoyheader.Flatten(h.GetHeaders())
	in := authz.RequestInput{
		ID:      headers["x-request-id"],
		Method:  headers[":method"],
		Host:    headers[":authority"],
		Target:  headers[":path"],
		Headers: headers,
	}
	if in.Host == "" {
		in.Host = headers["host"]
	}
	// Attributes arrive under the filter's name; any namespace will do.
	for _, st := range attrs {
		if v, ok := st.GetFields()[peerAttribute]; ok {
			in.Principal = v.GetStringValue()
		}
	}
	return in
}

// headerOption sets (overwrites) one header; ext_proc reads raw_value.
func headerOption(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// bodyResponse answers a request (request is true) or response body
// message, replacing the body with out when it is not nil.
func bodyResponse(request bool, out []byte, set []*corev3.HeaderValueOption) *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{}
	if out != nil {
		common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out}}
	}
	if len(set) > 0 {
		common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: set}
	}
	body := &extprocv3.BodyResponse{Response: common}
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: body}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: body}}
}

// isJSON reports whether a Content-Type is application/json.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
