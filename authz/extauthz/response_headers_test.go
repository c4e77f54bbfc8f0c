package extauthz_test

import (
	"net/http"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// TestAllowCarriesResponseHeaders: a renewed session cookie rides on the
// allow as response_headers_to_add, one header line per cookie.
func TestAllowCarriesResponseHeaders(t *testing.T) {
	d := authz.Allow(authz.ReasonAllowed)
	d.ResponseHeaders = []authz.Header{{Name: "set-cookie", Value: "a=1"}, {Name: "set-cookie", Value: "b=2"}}
	srv := extauthz.NewServer(staticChecker(d), nil, nil)
	resp, err := srv.Check(t.Context(), istioRequest("GET", mlflowHost, "/x"))
	require.NoError(t, err)
	added := resp.GetOkResponse().GetResponseHeadersToAdd()
	require.Len(t, added, 2)
	for i, want := range []string{"a=1", "b=2"} {
		assert.Equal(t, "set-cookie", added[i].GetHeader().GetKey())
		assert.Equal(t, want, added[i].GetHeader().GetValue())
		assert.Equal(t, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, added[i].GetAppendAction())
		//lint:ignore SA1019 checking that the deprecated field stays unset
		assert.Nil(t, added[i].GetAppend(), "the deprecated append would make Envoy comma-join the cookies")
	}
	res := extauthz.ReadResponse(resp)
	assert.Equal(t, []string{"a=1", "b=2"}, res.Headers("Set-Cookie"))
}

// TestDenyWithPageBody: a browser page replaces the JSON body, and its
// content type wins; a redirect's cookies stay separate header lines.
func TestDenyWithPageBody(t *testing.T) {
	d := authz.Deny(http.StatusBadRequest, "login_state_invalid", "start again")
	d.Body, d.ContentType = "<!doctype html><p>start again</p>", "text/html; charset=utf-8"
	d.ResponseHeaders = []authz.Header{{Name: "set-cookie", Value: "flow=; Max-Age=0"}, {Name: "set-cookie", Value: "s=; Max-Age=0"}}
	srv := extauthz.NewServer(staticChecker(d), nil, nil)
	resp, err := srv.Check(t.Context(), istioRequest("GET", mlflowHost, "/_authz/callback"))
	require.NoError(t, err)
	res := extauthz.ReadResponse(resp)
	assert.False(t, res.Allowed)
	assert.Equal(t, 400, res.Status)
	assert.Equal(t, d.Body, res.Body)
	assert.Equal(t, "text/html; charset=utf-8", res.Header("content-type"))
	assert.Equal(t, []string{"text/html; charset=utf-8"}, res.Headers("content-type"), "one content type")
	assert.Equal(t, "login_state_invalid", res.Header(extauthz.ReasonHeader))
	assert.Equal(t, []string{"flow=; Max-Age=0", "s=; Max-Age=0"}, res.Headers("set-cookie"))
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		want := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if h.GetHeader().GetKey() == "set-cookie" {
			want = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
		assert.Equal(t, want, h.GetAppendAction(), h.GetHeader().GetKey())
	}
}
