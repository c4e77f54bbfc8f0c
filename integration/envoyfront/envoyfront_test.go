package envoyfront_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/integration/envoyfront"
)

// decideByPath is a real authz.Checker with one outcome per path, so the
// front is exercised with exactly the CheckResponses our server writes.
type decideByPath struct{ seen chan *authz.Request }

func (c decideByPath) Check(_ context.Context, r *authz.Request) authz.Decision {
	c.seen <- r
	switch r.Path {
	case "/allow":
		d := authz.Allow(authz.ReasonAllowed)
		d.UpstreamHeaders = []authz.Header{{Name: "x-authz-user", Value: "alice"}}
		d.RemoveHeaders = []string{"x-authz-groups", "host"}
		d.ResponseHeaders = []authz.Header{{Name: "set-cookie", Value: "s=new; Path=/"}, {Name: "set-cookie", Value: "t=2; Path=/"}}
		return d
	case "/login":
		d := authz.Deny(http.StatusFound, authz.ReasonLoginRequired, "log in")
		d.ResponseHeaders = []authz.Header{{Name: "location", Value: "https://idp.example.com/auth"},
			{Name: "set-cookie", Value: "a=1"}, {Name: "set-cookie", Value: "b=; Max-Age=0"}}
		return d
	}
	return authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, "no")
}

func start(t *testing.T, checker extauthz.Checker) (authv3.AuthorizationClient, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: extauthz.NewServer(checker, nil, nil)})
	go func() { _ = gs.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(); gs.Stop() })
	return authv3.NewAuthorizationClient(conn), gs.Stop
}

func TestFront(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Set-Cookie", "upstream=1")
		_ = json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "user": r.Header.Get("X-Authz-User"), "groups": r.Header.Values("X-Authz-Groups"), "body": func() string {
			b, _ := io.ReadAll(r.Body)
			return string(b)
		}()})
	}))
	t.Cleanup(upstream.Close)
	checker := decideByPath{seen: make(chan *authz.Request, 10)}
	client, stop := start(t, checker)
	u, _ := url.Parse(upstream.URL)
	front := httptest.NewTLSServer(envoyfront.New(client, u, envoyfront.Options{Principal: "spiffe://cluster.local/ns/istio-system/sa/gateway", MaxRequestBytes: 4}))
	t.Cleanup(front.Close)
	hc := front.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	t.Run("allow applies every mutation", func(t *testing.T) {
		req, _ := http.NewRequest("POST", front.URL+"/allow?q=1", strings.NewReader("hello world"))
		req.Host = "MLflow.example.com:8443"
		req.Header.Set("X-Authz-User", "mallory")
		req.Header.Add("X-Authz-Groups", "admins")
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var got map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		assert.Equal(t, "alice", got["user"], "headers_to_set overwrite the client's value")
		assert.Nil(t, got["groups"], "headers_to_remove drop the client's value")
		assert.Equal(t, "MLflow.example.com:8443", got["host"], "host is never removed")
		assert.Equal(t, "hello world", got["body"], "the upstream gets the whole body")
		assert.Equal(t, []string{"upstream=1", "s=new; Path=/", "t=2; Path=/"}, resp.Header.Values("Set-Cookie"), "response_headers_to_add, one line per cookie")

		r := <-checker.seen
		assert.Equal(t, "mlflow.example.com", r.Host)
		assert.Equal(t, "/allow", r.Path)
		assert.Equal(t, "q=1", r.RawQuery)
		assert.Equal(t, "a=1; b=2", r.Header("cookie"))
		assert.Equal(t, "MLflow.example.com:8443", r.Header(":authority"))
		assert.Equal(t, "https", r.Header("x-forwarded-proto"))
		assert.Equal(t, "hell", string(r.Body), "at most maxRequestBytes go to Check")
		assert.True(t, r.BodyTruncated)
		assert.Equal(t, "spiffe://cluster.local/ns/istio-system/sa/gateway", r.Principal)
		assert.NotEmpty(t, r.ID)
	})
	t.Run("deny answers locally with every cookie", func(t *testing.T) {
		resp, err := hc.Get(front.URL + "/login")
		require.NoError(t, err)
		defer resp.Body.Close()
		<-checker.seen
		assert.Equal(t, http.StatusFound, resp.StatusCode)
		assert.Equal(t, "https://idp.example.com/auth", resp.Header.Get("Location"))
		assert.Equal(t, []string{"a=1", "b=; Max-Age=0"}, resp.Header.Values("Set-Cookie"), "every cookie, nothing from the upstream")
		assert.Equal(t, "login_required", resp.Header.Get(extauthz.ReasonHeader))
	})
	t.Run("a policy deny keeps its status and body", func(t *testing.T) {
		resp, err := hc.Get(front.URL + "/other")
		require.NoError(t, err)
		defer resp.Body.Close()
		<-checker.seen
		b, _ := io.ReadAll(resp.Body)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		assert.Contains(t, string(b), `"reason":"permission_denied"`)
	})
	t.Run("a failed Check is status_on_error, never an allow", func(t *testing.T) {
		stop()
		resp, err := hc.Get(front.URL + "/allow")
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Empty(t, resp.Header.Values("Set-Cookie"))
	})
}
