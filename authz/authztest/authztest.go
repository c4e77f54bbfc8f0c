// Package authztest is the test kit shared by the packages that build and
// decide authz.Requests: requests as Envoy describes them, what Envoy does
// with a decision's headers (so every test checks the upstream's view the
// same way), and a buffer for the JSON log the service writes.
package authztest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// UpstreamView applies set and remove the way Envoy does (set, then
// remove) and returns the headers the upstream receives. It fails the test
// when a name is both set and removed, since Envoy would drop our value.
func UpstreamView(t testing.TB, r *authz.Request, set []authz.Header, remove []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range r.Headers {
		out[k] = v
	}
	seen := map[string]bool{}
	for _, h := range set {
		assert.False(t, seen[h.Name], "header %q set twice", h.Name)
		seen[h.Name] = true
		assert.Equal(t, strings.ToLower(h.Name), h.Name)
		out[h.Name] = h.Value
	}
	for _, name := range remove {
		assert.False(t, seen[name], "header %q is both set and removed", name)
		delete(out, name)
	}
	return out
}

// NewRequest builds the request Envoy would describe for method and target
// on app.example.com, from the mTLS peer principal (may be empty), and
// fails the test if the pipeline would refuse it before any policy.
func NewRequest(t testing.TB, method, target, principal string, headers map[string]string) *authz.Request {
	t.Helper()
	r, d := authz.NewRequest(authz.RequestInput{Method: method, Host: "app.example.com", Target: target, Principal: principal, Headers: headers})
	require.Nil(t, d, "request %s %s refused", method, target)
	return r
}
