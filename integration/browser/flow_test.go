package browser_test

// The login flow through the front and gRPC Check with a Go HTTP client
// in the browser's place: every step against the real OpenID provider.

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/integration/browser/testidp"
)

const sessionCookieName = "__Host-mlflow-authz"

func requireReason(t *testing.T, resp *http.Response, status int, reason string) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, "reason %s", resp.Header.Get("X-Authz-Reason"))
	require.Equal(t, reason, resp.Header.Get("X-Authz-Reason"))
}

func TestLoginFlow(t *testing.T) {
	s := startStack(t, stackOptions{})
	c := s.browserClient(t)

	page, hops := s.login(t, c, "/?o=1", "alice", "alice-password")
	require.Equal(t, http.StatusOK, page.StatusCode)
	assert.Contains(t, body(t, page), `<h1 id="user">alice</h1>`, "the upstream got alice's identity")
	assert.Equal(t, s.frontURL+"/?o=1", page.Request.URL.String(), "back on the page the login started from")
	require.GreaterOrEqual(t, len(hops), 4)
	assert.True(t, strings.HasPrefix(hops[0], s.idp.URL+"/authorize?"), hops[0])
	assert.True(t, strings.HasPrefix(hops[len(hops)-2], s.frontURL+"/_authz/callback?"), hops[len(hops)-2])
	cookie := s.sessionCookie(c)
	require.NotEmpty(t, cookie)
	t.Logf("session cookie: %d bytes", len(sessionCookieName)+1+len(cookie))

	t.Run("the UI's XHRs are decided with the session's identity", func(t *testing.T) {
		resp := xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, body(t, resp), `"user":"alice"`)
		resp = xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=2")
		requireReason(t, resp, http.StatusForbidden, "permission_denied")
	})
	t.Run("without the cookie an XHR is a 401, never a redirect", func(t *testing.T) {
		resp := xhr(t, s.browserClient(t), s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
		requireReason(t, resp, http.StatusUnauthorized, "unauthenticated")
		assert.Empty(t, resp.Header.Get("Location"))
		assert.Contains(t, body(t, resp), `"error_code":"UNAUTHENTICATED"`)
	})
	t.Run("logout ends the session here and at the provider", func(t *testing.T) {
		resp := navigate(t, c, s.frontURL+"/_authz/logout")
		requireReason(t, resp, http.StatusFound, "logged_out")
		loc, err := url.Parse(resp.Header.Get("Location"))
		require.NoError(t, err)
		assert.Equal(t, s.idp.URL+"/end_session", loc.Scheme+"://"+loc.Host+loc.Path)
		assert.Equal(t, clientID, loc.Query().Get("client_id"))
		assert.Equal(t, s.frontURL+"/", loc.Query().Get("post_logout_redirect_uri"))
		assert.Empty(t, s.sessionCookie(c), "the cookie is cleared")
		final, hops := follow(t, c, resp, s.idp.URL+"/authorize")
		assert.Equal(t, 1, s.idp.EndSessions())
		assert.Contains(t, hops, s.frontURL+"/", "the provider sends the browser back")
		assert.True(t, strings.HasPrefix(hops[len(hops)-1], s.idp.URL+"/authorize"), "and the next navigation logs in again: %v", hops)
		_ = final
		resp = xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
		requireReason(t, resp, http.StatusUnauthorized, "unauthenticated")
	})
}

// startFlow navigates anonymously and returns the provider URL the front
// redirected to; the jar now holds that login's state cookie.
func startFlow(t *testing.T, s *stack, c *http.Client) *url.URL {
	t.Helper()
	resp := navigate(t, c, s.frontURL+"/")
	requireReason(t, resp, http.StatusFound, "login_required")
	u, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	return u
}

// codeFor logs user in at the provider for the authorize URL and returns
// the callback URL the provider sends the browser to, without following
// it.
func codeFor(t *testing.T, s *stack, c *http.Client, authorize *url.URL, user, password string) *url.URL {
	t.Helper()
	resp := navigate(t, c, authorize.String())
	resp, _ = follow(t, c, resp, "")
	require.Contains(t, body(t, resp), `id="kc-form-login"`)
	resp = submitLogin(t, c, resp.Request.URL.String(), user, password)
	_, hops := follow(t, c, resp, s.frontURL+"/_authz/callback")
	cb, err := url.Parse(hops[len(hops)-1])
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(cb.String(), s.frontURL+"/_authz/callback?"), cb.String())
	require.NotEmpty(t, cb.Query().Get("code"))
	return cb
}

func TestCallbackRefusals(t *testing.T) {
	s := startStack(t, stackOptions{})

	t.Run("two tabs log in at once", func(t *testing.T) {
		c := s.browserClient(t)
		a, b := startFlow(t, s, c), startFlow(t, s, c)
		cbB := codeFor(t, s, c, b, "alice", "alice-password")
		cbA := codeFor(t, s, c, a, "alice", "alice-password")
		requireReason(t, navigate(t, c, cbB.String()), http.StatusFound, "login_complete")
		requireReason(t, navigate(t, c, cbA.String()), http.StatusFound, "login_complete")
	})
	t.Run("a replayed code is refused", func(t *testing.T) {
		c := s.browserClient(t)
		cb := codeFor(t, s, c, startFlow(t, s, c), "alice", "alice-password")
		u, _ := url.Parse(s.frontURL)
		var flowCookie *http.Cookie
		for _, ck := range c.Jar.Cookies(u) {
			if strings.HasPrefix(ck.Name, sessionCookieName+"-login-") {
				flowCookie = ck
			}
		}
		require.NotNil(t, flowCookie)
		requireReason(t, navigate(t, c, cb.String()), http.StatusFound, "login_complete")

		// The attacker replays the whole callback, login-state cookie
		// included: the provider has spent the code.
		replay := s.browserClient(t)
		replay.Jar.SetCookies(u, []*http.Cookie{flowCookie})
		resp := navigate(t, replay, cb.String())
		requireReason(t, resp, http.StatusBadRequest, "login_code_rejected")
		assert.Contains(t, body(t, resp), "Sign in again")
		assert.Empty(t, s.sessionCookie(replay))

		// Replayed in the browser that finished it: its state cookie is gone.
		resp = navigate(t, c, cb.String())
		requireReason(t, resp, http.StatusBadRequest, "login_state_invalid")
	})
	t.Run("a state this browser never started is refused", func(t *testing.T) {
		victim, attacker := s.browserClient(t), s.browserClient(t)
		startFlow(t, s, victim)
		cb := codeFor(t, s, attacker, startFlow(t, s, attacker), "bob", "bob-password")
		resp := navigate(t, victim, cb.String())
		requireReason(t, resp, http.StatusBadRequest, "login_state_invalid")
		assert.Empty(t, s.sessionCookie(victim), "login CSRF: the victim is not logged in as bob")
	})
	t.Run("a code from another login of the same browser fails PKCE", func(t *testing.T) {
		c := s.browserClient(t)
		a, b := startFlow(t, s, c), startFlow(t, s, c)
		cbA := codeFor(t, s, c, a, "alice", "alice-password")
		swapped := *cbA
		q := swapped.Query()
		q.Set("state", b.Query().Get("state"))
		swapped.RawQuery = q.Encode()
		requireReason(t, navigate(t, c, swapped.String()), http.StatusBadRequest, "login_code_rejected")
	})
	t.Run("an ID token minted for another nonce is refused", func(t *testing.T) {
		victim, attacker := s.browserClient(t), s.browserClient(t)
		authorize := startFlow(t, s, victim)
		// The attacker copies the victim's authorize URL (state and PKCE
		// challenge are visible in it) with a nonce of their own, and
		// logs in: the code then passes PKCE with the victim's verifier.
		forged := *authorize
		q := forged.Query()
		q.Set("nonce", "attackers-own-nonce")
		forged.RawQuery = q.Encode()
		cb := codeFor(t, s, attacker, &forged, "bob", "bob-password")
		resp := navigate(t, victim, cb.String())
		requireReason(t, resp, http.StatusBadRequest, "login_nonce_mismatch")
		assert.Empty(t, s.sessionCookie(victim))
	})
	t.Run("the provider refused the login", func(t *testing.T) {
		c := s.browserClient(t)
		authorize := startFlow(t, s, c)
		resp := navigate(t, c, s.frontURL+"/_authz/callback?error=access_denied&state="+url.QueryEscape(authorize.Query().Get("state")))
		requireReason(t, resp, http.StatusBadRequest, "login_provider_error")
		assert.Contains(t, body(t, resp), "access_denied")
	})
}

func TestRefresh(t *testing.T) {
	const ttl = 2 * time.Second
	s := startStack(t, stackOptions{accessTTL: ttl})

	t.Run("an expired access token is refreshed once, the new cookie rides on the allow", func(t *testing.T) {
		c := s.browserClient(t)
		page, _ := s.login(t, c, "/", "alice", "alice-password")
		require.Equal(t, http.StatusOK, page.StatusCode)
		first := s.sessionCookie(c)
		before := s.idp.Refreshes()
		time.Sleep(ttl + 200*time.Millisecond)

		// A burst of XHRs, all carrying the old cookie.
		var wg sync.WaitGroup
		statuses := make([]int, 8)
		setCookies := make([]int, 8)
		for i := range statuses {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=1", nil)
				req.Header.Set("Accept", "application/json")
				req.AddCookie(&http.Cookie{Name: sessionCookieName, Value: first})
				plain := s.browserClient(t)
				resp, err := plain.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				statuses[i] = resp.StatusCode
				for _, sc := range resp.Header.Values("Set-Cookie") {
					if strings.HasPrefix(sc, sessionCookieName+"=") {
						setCookies[i]++
					}
				}
			})
		}
		wg.Wait()
		for i := range statuses {
			assert.Equal(t, http.StatusOK, statuses[i], "request %d", i)
			assert.Equal(t, 1, setCookies[i], "request %d gets the renewed cookie", i)
		}
		assert.Equal(t, before+1, s.idp.Refreshes(), "one refresh for the whole burst")

		resp := xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		second := s.sessionCookie(c)
		assert.NotEqual(t, first, second, "the browser stored the renewed session")
		resp = xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, resp.Header.Values("Set-Cookie"), "a fresh session sets nothing")
		assert.Equal(t, before+1, s.idp.Refreshes(), "warm requests never reach the provider")
	})
	t.Run("a group removed at the provider takes effect at the next refresh", func(t *testing.T) {
		c := s.browserClient(t)
		s.login(t, c, "/", "bob", "bob-password")
		require.Equal(t, http.StatusOK, xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=2").StatusCode, "team-b may read 2")
		s.idp.SetGroups("bob", nil)
		time.Sleep(ttl + 200*time.Millisecond)
		requireReason(t, xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=2"), http.StatusForbidden, "permission_denied")
	})
	t.Run("a disabled user's session ends at the next refresh", func(t *testing.T) {
		c := s.browserClient(t)
		s.login(t, c, "/", "alice", "alice-password")
		s.idp.Disable("alice")
		time.Sleep(ttl + 200*time.Millisecond)
		resp := xhr(t, c, s.frontURL+"/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
		requireReason(t, resp, http.StatusUnauthorized, "session_refresh_failed")
		assert.Empty(t, s.sessionCookie(c), "the ended session is cleared")
		resp = navigate(t, c, s.frontURL+"/")
		requireReason(t, resp, http.StatusFound, "login_required")
	})
}

func TestFiftyGroupsFitTheCookie(t *testing.T) {
	var groups []string
	for i := range 50 {
		groups = append(groups, fmt.Sprintf("/acme-corporation/machine-learning-platform/project-team-%02d-%s", i, []string{"readers", "editors", "owners"}[i%3]))
	}
	users = append(users, testidp.User{Username: "carol", Password: "carol-password", Groups: groups, Roles: []string{"default-roles-test", "offline_access", "uma_authorization"}})
	t.Cleanup(func() { users = users[:len(users)-1] })
	s := startStack(t, stackOptions{})
	c := s.browserClient(t)
	page, _ := s.login(t, c, "/", "carol", "carol-password")
	require.Equal(t, http.StatusOK, page.StatusCode)
	size := len(sessionCookieName) + 1 + len(s.sessionCookie(c))
	t.Logf("carol, 50 full-path groups: session cookie %d bytes", size)
	assert.Less(t, size, 4096)
}
