// Package envoyheader reads the header list Envoy sends to its external
// filters (ext_authz with encode_raw_headers, ext_proc) as one map, joined
// by the rule Envoy's own ext_authz map form uses, so that both filters see
// a request's headers alike.
package envoyheader

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Flatten returns m's headers as a map with lower-case names. A value is
// raw_value when set (where encode_raw_headers and ext_proc put it), else
// value. Repeated headers are joined with "," in their order, cookies too:
// this is how Envoy fills CheckRequest's headers map
// (source/extensions/filters/common/ext_authz/check_request_utils.cc,
// "Merge duplicate headers"). HTTP/2's split cookie headers are joined
// with "; " by Envoy's codec before any filter sees them, so only repeated
// HTTP/1 Cookie lines meet the comma.
func Flatten(m *corev3.HeaderMap) map[string]string {
	out := make(map[string]string, len(m.GetHeaders()))
	for _, hv := range m.GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if prev, ok := out[k]; ok {
			v = prev + "," + v
		}
		out[k] = v
	}
	return out
}
