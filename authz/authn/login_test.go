package authn

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// browserAccept is what Chromium sends on a navigation.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"

func TestIsNavigation(t *testing.T) {
	nav := map[string]string{"accept": browserAccept}
	with := func(k, v string) map[string]string {
		h := map[string]string{"accept": browserAccept}
		h[k] = v
		return h
	}
	tests := []struct {
		name    string
		method  string
		target  string
		headers map[string]string
		want    bool
	}{
		{"browser opens the UI", "GET", "/", nav, true},
		{"HEAD", "HEAD", "/", nav, true},
		{"deep link", "GET", "/static-files/index.html?x=1", nav, true},
		{"Kiali console", "GET", "/kiali/console/overview", nav, true},
		{"Fetch Metadata says navigate", "GET", "/", with("sec-fetch-mode", "navigate"), true},
		{"POST", "POST", "/", nav, false},
		{"Authorization present", "GET", "/", with("authorization", "Bearer x"), false},
		{"X-Requested-With", "GET", "/", with("x-requested-with", "XMLHttpRequest"), false},
		{"Fetch Metadata says cors", "GET", "/", with("sec-fetch-mode", "cors"), false},
		{"Accept JSON", "GET", "/", map[string]string{"accept": "application/json"}, false},
		{"Accept HTML and JSON", "GET", "/", map[string]string{"accept": "text/html, application/json"}, false},
		{"fetch's default Accept", "GET", "/", map[string]string{"accept": "*/*"}, false},
		{"no Accept", "GET", "/", nil, false},
		{"HTML refused with q=0", "GET", "/", map[string]string{"accept": "text/html;q=0, */*"}, false},
		{"ajax-api", "GET", "/ajax-api/2.0/mlflow/experiments/search", nav, false},
		{"api", "GET", "/api/2.0/mlflow/runs/get", nav, false},
		{"graphql", "GET", "/graphql", nav, false},
		{"get-artifact", "GET", "/get-artifact?path=a", nav, false},
		{"OTLP", "GET", "/v1/traces", nav, false},
		{"static prefix", "GET", "/mlflow/ajax-api/2.0/x", nav, false},
		{"Kiali API", "GET", "/kiali/api/namespaces", nav, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, isNavigation(cookieRequest(t, tt.method, tt.target, tt.headers)))
		})
	}
}

func TestSafeReturnPath(t *testing.T) {
	for _, p := range []string{"/", "/#/experiments/1", "/static-files/index.html", "/a?b=c&d=%2F", "/kiali/console/graph?namespaces=ml"} {
		if strings.Contains(p, "#") {
			assert.False(t, SafeReturnPath(p), "fragments never reach the server: %q", p)
			continue
		}
		assert.True(t, SafeReturnPath(p), p)
	}
	for _, p := range []string{
		"", "evil", "//evil.example.net", "//evil.example.net/x", `/\evil.example.net`, `/\/evil`, "https://evil.example.net",
		"https:/evil", "/a/../b", "/a//b", "/%2F%2Fevil", "/%5Cevil", "/x\r\nset-cookie: a=b", "/x y", "/x\x00",
		"/" + strings.Repeat("a", maxReturnPath),
	} {
		assert.False(t, SafeReturnPath(p), "%q", p)
	}
}

func TestLoginConfig(t *testing.T) {
	ok := LoginConfig{ClientID: "c", ClientSecretFile: "/s"}
	c, err := ok.compile()
	require.NoError(t, err)
	assert.Equal(t, LoginDefaultCallbackPath, c.CallbackPath)
	assert.Equal(t, LoginDefaultLogoutPath, c.LogoutPath)
	assert.Equal(t, []string{"openid", "profile", "email"}, c.Scopes)
	c, err = LoginConfig{ClientID: "c", ClientSecretEnv: "S", Scopes: []string{"groups"}}.compile()
	require.NoError(t, err)
	assert.Equal(t, []string{"openid", "groups"}, c.Scopes, "openid is always asked for")

	for name, bad := range map[string]LoginConfig{
		"no client":              {ClientSecretFile: "/s"},
		"no secret source":       {ClientID: "c"},
		"two secret sources":     {ClientID: "c", ClientSecretFile: "/s", ClientSecretEnv: "S"},
		"relative callback":      {ClientID: "c", ClientSecretFile: "/s", CallbackPath: "callback"},
		"callback with dots":     {ClientID: "c", ClientSecretFile: "/s", CallbackPath: "/a/../cb"},
		"callback equals logout": {ClientID: "c", ClientSecretFile: "/s", CallbackPath: "/x", LogoutPath: "/x"},
		"post-logout not a URL":  {ClientID: "c", ClientSecretFile: "/s", PostLogoutRedirectURI: "/home"},
		"scope with a space":     {ClientID: "c", ClientSecretFile: "/s", Scopes: []string{"openid email"}},
	} {
		assert.Error(t, bad.Validate(), name)
	}
}

// checkClient serves f's login through the real Check server over gRPC,
// for an app that lets any authenticated caller in.
func checkClient(t *testing.T, f *loginFixture) authv3.AuthorizationClient {
	t.Helper()
	policy := authz.PolicyFunc(func(_ context.Context, _ *authz.Request, id *authz.Identity) authz.Decision {
		if !id.Authenticated() {
			d := authz.Deny(http.StatusUnauthorized, authz.ReasonUnauthenticated, "authentication required")
			d.ResponseHeaders = []authz.Header{{Name: "www-authenticate", Value: "Bearer"}}
			return d
		}
		return authz.Allow(authz.ReasonAllowed)
	})
	e, err := authz.NewEngine(authz.Config{
		Apps:           []*authz.App{{Name: "mlflow", Hosts: []string{testHost}, Policy: policy, Login: f.login}},
		Authenticators: []authz.Authenticator{f.login.jwt, NewSessions(map[string]*Login{testHost: f.login})},
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: extauthz.NewServer(e, nil, nil)})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func check(t *testing.T, c authv3.AuthorizationClient, call extauthz.Call) extauthz.Result {
	t.Helper()
	if call.Host == "" {
		call.Host = testHost
	}
	if call.Method == "" {
		call.Method = "GET"
	}
	resp, err := c.Check(t.Context(), call.CheckRequest())
	require.NoError(t, err)
	return extauthz.ReadResponse(resp)
}

func requireDeny(t *testing.T, res extauthz.Result, status int, reason authz.Reason) {
	t.Helper()
	require.False(t, res.Allowed)
	require.Equal(t, status, res.Status, "reason %s, body %.200s", res.Header(extauthz.ReasonHeader), res.Body)
	require.Equal(t, string(reason), res.Header(extauthz.ReasonHeader))
}

// setCookieNamed returns the Set-Cookie of res for name, or "".
func setCookieNamed(res extauthz.Result, name string) string {
	for _, c := range res.Headers("set-cookie") {
		if strings.HasPrefix(c, name+"=") {
			return c
		}
	}
	return ""
}

func TestLoginRedirectThroughCheck(t *testing.T) {
	f := newLoginFixture(t)
	c := checkClient(t, f)
	nav := map[string]string{"accept": browserAccept, "sec-fetch-mode": "navigate"}

	res := check(t, c, extauthz.Call{Target: "/static-files/index.html?compare=1&x=%2F", Headers: nav})
	requireDeny(t, res, http.StatusFound, authz.ReasonLoginRequired)
	loc, err := url.Parse(res.Header("location"))
	require.NoError(t, err)
	assert.Equal(t, f.iss.URL+"/protocol/openid-connect/auth", loc.Scheme+"://"+loc.Host+loc.Path)
	q := loc.Query()
	assert.Equal(t, "code", q.Get("response_type"))
	assert.Equal(t, "mlflow-authz", q.Get("client_id"))
	assert.Equal(t, "https://mlflow.example.com/_authz/callback", q.Get("redirect_uri"))
	assert.Equal(t, "openid profile email", q.Get("scope"))
	assert.Equal(t, "S256", q.Get("code_challenge_method"))
	assert.Len(t, q.Get("code_challenge"), 43)
	assert.Len(t, q.Get("state"), 43)
	assert.Len(t, q.Get("nonce"), 43)
	assert.NotEqual(t, q.Get("state"), q.Get("nonce"))
	assert.Equal(t, "no-store", res.Header("cache-control"))

	flowName := f.login.CookieName() + "-login-" + q.Get("state")[:16]
	setFlow := setCookieNamed(res, flowName)
	require.NotEmpty(t, setFlow, "the login-state cookie is named after its state")
	assert.True(t, strings.HasSuffix(setFlow, "; Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Lax"), setFlow)
	value := strings.TrimPrefix(strings.Split(setFlow, ";")[0], flowName+"=")
	st, err := decodeFlowCookie(f.login.keys.ring, testHost, value)
	require.NoError(t, err)
	assert.Equal(t, q.Get("state"), st.State)
	assert.Equal(t, q.Get("nonce"), st.Nonce)
	assert.Equal(t, "/static-files/index.html?compare=1&x=%2F", st.Return, "the original URL, exactly as sent")

	t.Run("a second tab gets its own login state", func(t *testing.T) {
		res2 := check(t, c, extauthz.Call{Target: "/", Headers: map[string]string{"accept": browserAccept, "cookie": strings.Split(setFlow, ";")[0]}})
		requireDeny(t, res2, http.StatusFound, authz.ReasonLoginRequired)
		loc2, _ := url.Parse(res2.Header("location"))
		assert.NotEqual(t, q.Get("state"), loc2.Query().Get("state"))
		assert.Len(t, res2.Headers("set-cookie"), 1, "the first tab's login state is left alone")
	})
	t.Run("pending logins cannot pile up", func(t *testing.T) {
		var jar []string
		for i := range maxPendingLogins {
			jar = append(jar, f.login.flowPrefix+strings.Repeat(string(rune('a'+i)), 16)+"=x")
		}
		res := check(t, c, extauthz.Call{Target: "/", Headers: map[string]string{"accept": browserAccept, "cookie": strings.Join(jar, "; ")}})
		requireDeny(t, res, http.StatusFound, authz.ReasonLoginRequired)
		assert.Len(t, res.Headers("set-cookie"), maxPendingLogins+1, "every pending login is cleared, one new one set")
	})
}

func TestAPICallsGet401NeverARedirect(t *testing.T) {
	f := newLoginFixture(t)
	c := checkClient(t, f)
	name := f.login.CookieName()
	expired := f.session()
	expired.End = f.clock.Now().Add(-time.Minute).Unix()
	expiredCookie := name + "=" + f.seal(t, testHost, expired)
	tests := []struct {
		name    string
		method  string
		target  string
		headers map[string]string
	}{
		{"UI XHR", "GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=10", map[string]string{"accept": "application/json, text/plain, */*"}},
		{"ajax-api even when HTML is accepted", "GET", "/ajax-api/2.0/mlflow/runs/get", map[string]string{"accept": browserAccept}},
		{"REST API", "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", map[string]string{"accept": browserAccept}},
		{"GraphQL", "POST", "/graphql", map[string]string{"accept": "*/*", "content-type": "application/json"}},
		{"artifact", "GET", "/get-artifact?path=model.pkl&run_uuid=r1", map[string]string{"accept": browserAccept}},
		{"OTLP", "POST", "/v1/traces", map[string]string{"content-type": "application/x-protobuf"}},
		{"Accept JSON on the root", "GET", "/", map[string]string{"accept": "application/json"}},
		{"X-Requested-With", "GET", "/", map[string]string{"accept": browserAccept, "x-requested-with": "XMLHttpRequest"}},
		{"a form POST", "POST", "/", map[string]string{"accept": browserAccept}},
		{"fetch from script", "GET", "/", map[string]string{"accept": "*/*", "sec-fetch-mode": "cors"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, c, extauthz.Call{Method: tt.method, Target: tt.target, Headers: tt.headers})
			requireDeny(t, res, http.StatusUnauthorized, authz.ReasonUnauthenticated)
			assert.Empty(t, res.Header("location"))
			assert.Equal(t, "application/json", res.Header("content-type"))
			assert.Contains(t, res.Body, `"error_code":"UNAUTHENTICATED"`)

			h := map[string]string{"cookie": expiredCookie}
			for k, v := range tt.headers {
				h[k] = v
			}
			res = check(t, c, extauthz.Call{Method: tt.method, Target: tt.target, Headers: h})
			requireDeny(t, res, http.StatusUnauthorized, ReasonSessionExpired)
			assert.Empty(t, res.Header("location"))
			assert.Equal(t, name+"=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax", setCookieNamed(res, name), "a refused session is cleared")
		})
	}
}

func TestOpenRedirectAttemptsAreRefused(t *testing.T) {
	f := newLoginFixture(t)
	c := checkClient(t, f)
	for _, target := range []string{"//evil.example.net/", "//evil.example.net", `/\evil.example.net`, `/\/evil.example.net`, "https://evil.example.net/",
		"/%2F%2Fevil.example.net", "/%5Cevil.example.net", "/./evil", "/x/../../evil"} {
		t.Run(target, func(t *testing.T) {
			res := check(t, c, extauthz.Call{Target: target, Headers: map[string]string{"accept": browserAccept}})
			requireDeny(t, res, http.StatusBadRequest, authz.ReasonPathNotCanonical)
			assert.Empty(t, res.Header("location"))
			assert.Empty(t, res.Headers("set-cookie"))
		})
	}
	t.Run("a forged return path in a sealed login state is not followed", func(t *testing.T) {
		state := randomToken()
		value, err := f.login.keys.ring.sealState(purposeLogin, testHost, flowState{
			State: state, Nonce: "n", Verifier: "v", Return: "//evil.example.net/", Expiry: f.clock.Now().Add(-time.Second).Unix()})
		require.NoError(t, err)
		res := check(t, c, extauthz.Call{Target: "/_authz/callback?state=" + state + "&code=c",
			Headers: map[string]string{"cookie": f.login.flowCookieName(state) + "=" + value}})
		requireDeny(t, res, http.StatusBadRequest, ReasonLoginStateExpired)
		assert.Contains(t, res.Body, `<a href="/">Sign in again</a>`)
		assert.NotContains(t, res.Body, "evil")
	})
}

func TestSessionCookiesThroughCheck(t *testing.T) {
	f := newLoginFixture(t)
	c := checkClient(t, f)
	name := f.login.CookieName()
	valid := f.seal(t, testHost, f.session())
	expired := f.session()
	expired.End = f.clock.Now().Add(-time.Second).Unix()
	foreign, err := ring(t, newKey(t)).sealState(purposeSession, testHost, f.session())
	require.NoError(t, err)
	tampered := []byte(valid)
	tampered[len(tampered)/2] ^= 0x04

	res := check(t, c, extauthz.Call{Target: "/ajax-api/2.0/mlflow/runs/get?run_id=r1", Headers: map[string]string{"cookie": name + "=" + valid}})
	require.True(t, res.Allowed)
	assert.Empty(t, res.ResponseHeaders, "a session whose access is still fresh sets no cookie")

	for _, tt := range []struct {
		name   string
		value  string
		reason authz.Reason
	}{
		{"tampered", string(tampered), ReasonSessionInvalid},
		{"expired", f.seal(t, testHost, expired), ReasonSessionExpired},
		{"sealed with a foreign key", foreign, ReasonSessionUnknownKey},
		{"sealed for another host", f.seal(t, "kiali.example.com", f.session()), ReasonSessionInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, c, extauthz.Call{Target: "/ajax-api/2.0/mlflow/runs/get?run_id=r1", Headers: map[string]string{"cookie": name + "=" + tt.value}})
			requireDeny(t, res, http.StatusUnauthorized, tt.reason)
			assert.Contains(t, setCookieNamed(res, name), "Max-Age=0")

			res = check(t, c, extauthz.Call{Target: "/", Headers: map[string]string{"cookie": name + "=" + tt.value, "accept": browserAccept}})
			requireDeny(t, res, http.StatusFound, authz.ReasonLoginRequired)
			assert.Contains(t, setCookieNamed(res, name), "Max-Age=0", "a navigation logs in afresh and drops the bad cookie")
			var flows int
			for _, c := range res.Headers("set-cookie") {
				if strings.HasPrefix(c, f.login.flowPrefix) {
					flows++
				}
			}
			assert.Equal(t, 1, flows, "and starts a login")
		})
	}
	t.Run("cross-site POST with the cookie", func(t *testing.T) {
		res := check(t, c, extauthz.Call{Method: "POST", Target: "/ajax-api/2.0/mlflow/runs/delete",
			Headers: map[string]string{"cookie": name + "=" + valid, "origin": "https://evil.example.net", "content-type": "application/json"}, Body: []byte(`{"run_id":"r1"}`)})
		requireDeny(t, res, http.StatusForbidden, ReasonCSRFOriginMismatch)
		assert.Empty(t, res.Header("location"))
	})
	t.Run("a bearer token outranks the cookie", func(t *testing.T) {
		res := check(t, c, extauthz.Call{Target: "/ajax-api/2.0/mlflow/runs/get", Headers: map[string]string{"cookie": name + "=" + string(tampered), "authorization": "Bearer not-a-jwt"}})
		requireDeny(t, res, http.StatusUnauthorized, ReasonTokenNotJWT)
	})
}

func TestCallbackRefusals(t *testing.T) {
	f := newLoginFixture(t)
	c := checkClient(t, f)
	seal := func(st flowState) string {
		v, err := f.login.keys.ring.sealState(purposeLogin, testHost, st)
		require.NoError(t, err)
		return v
	}
	live := func(state string) flowState {
		return flowState{State: state, Nonce: "n", Verifier: "v", Return: "/#ignored", Expiry: f.clock.Now().Add(time.Minute).Unix()}
	}
	s1, s2 := randomToken(), randomToken()
	tests := []struct {
		name   string
		target string
		cookie string
		reason authz.Reason
		link   string
	}{
		{"no state", "/_authz/callback?code=c", "", ReasonLoginStateInvalid, "/"},
		{"state of no login in this browser", "/_authz/callback?state=" + s1 + "&code=c", "", ReasonLoginStateInvalid, "/"},
		{"two states", "/_authz/callback?state=" + s1 + "&state=" + s2 + "&code=c", f.login.flowCookieName(s1) + "=" + seal(live(s1)), ReasonLoginStateInvalid, "/"},
		{"cookie of another login under this state's name", "/_authz/callback?state=" + s1 + "&code=c", f.login.flowCookieName(s1) + "=" + seal(live(s2)), ReasonLoginStateInvalid, "/"},
		{"cookie sealed for another host", "/_authz/callback?state=" + s1 + "&code=c", f.login.flowCookieName(s1) + "=" + func() string {
			v, _ := f.login.keys.ring.sealState(purposeLogin, "kiali.example.com", live(s1))
			return v
		}(), ReasonLoginStateInvalid, "/"},
		{"session cookie offered as login state", "/_authz/callback?state=" + s1 + "&code=c", f.login.flowCookieName(s1) + "=" + f.seal(t, testHost, f.session()), ReasonLoginStateInvalid, "/"},
		{"provider refused", "/_authz/callback?state=" + s1 + "&error=access_denied&error_description=%3Cscript%3E", f.login.flowCookieName(s1) + "=" + seal(live(s1)), ReasonLoginProviderError, "/"},
		{"no code", "/_authz/callback?state=" + s1, f.login.flowCookieName(s1) + "=" + seal(live(s1)), ReasonLoginCodeRejected, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"accept": browserAccept}
			if tt.cookie != "" {
				h["cookie"] = tt.cookie
			}
			res := check(t, c, extauthz.Call{Target: tt.target, Headers: h})
			requireDeny(t, res, http.StatusBadRequest, tt.reason)
			assert.Empty(t, res.Header("location"), "a failed login is a page, never a redirect")
			assert.Equal(t, "text/html; charset=utf-8", res.Header("content-type"))
			assert.Contains(t, res.Body, `<a href="`+tt.link+`">Sign in again</a>`)
			assert.Contains(t, res.Body, "reason: "+string(tt.reason))
			assert.NotContains(t, res.Body, "<script>")
			assert.Equal(t, "default-src 'none'", res.Header("content-security-policy"))
		})
	}
	t.Run("expired login state", func(t *testing.T) {
		st := live(s1)
		st.Return = "/static-files/index.html?x=1&y=2"
		cookie := f.login.flowCookieName(s1) + "=" + seal(st)
		f.clock.Advance(2 * time.Minute)
		res := check(t, c, extauthz.Call{Target: "/_authz/callback?state=" + s1 + "&code=c", Headers: map[string]string{"cookie": cookie}})
		requireDeny(t, res, http.StatusBadRequest, ReasonLoginStateExpired)
		assert.Contains(t, res.Body, `<a href="/static-files/index.html?x=1&amp;y=2">Sign in again</a>`, "the fresh login returns where the first one was going")
		assert.Equal(t, f.login.flowCookieName(s1)+"=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax", setCookieNamed(res, f.login.flowCookieName(s1)))
	})
}

func TestLogoutThroughCheck(t *testing.T) {
	f := newLoginFixture(t)
	c := checkClient(t, f)
	name := f.login.CookieName()
	res := check(t, c, extauthz.Call{Target: "/_authz/logout", Headers: map[string]string{":authority": "mlflow.example.com:8443", "cookie": name + "=" + f.seal(t, testHost, f.session())}})
	requireDeny(t, res, http.StatusFound, ReasonLoggedOut)
	loc, err := url.Parse(res.Header("location"))
	require.NoError(t, err)
	assert.Equal(t, f.iss.URL+"/protocol/openid-connect/logout", loc.Scheme+"://"+loc.Host+loc.Path)
	assert.Equal(t, "mlflow-authz", loc.Query().Get("client_id"))
	assert.Equal(t, "https://mlflow.example.com/", loc.Query().Get("post_logout_redirect_uri"))
	assert.Equal(t, name+"=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax", setCookieNamed(res, name))
}
