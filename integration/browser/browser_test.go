package browser_test

// A real browser (Debian's chromium, driven by chromedp) through the
// front: log in on the provider's page, use the UI with permissions
// enforced, outlive an access token, log out.

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium finds the browser. .ci/run installs it; a developer without it
// is told how to get it, and CI fails rather than skip.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); skipping the browser test")
	return ""
}

func newBrowser(t *testing.T) context.Context {
	t.Helper()
	alloc, cancel := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// The front's certificate is httptest's throwaway one.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// callAPI runs the page's fetch of path and returns "status reason body".
func callAPI(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`callAPI(`+jsString(path)+`)`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	return out
}

func jsString(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// browserSession returns the browser's session cookie for the front.
func browserSession(t *testing.T, ctx context.Context, frontURL string) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{frontURL + "/"}})
	require.NoError(t, err)
	for _, c := range res.Cookies {
		if c.Name == sessionCookieName {
			return c
		}
	}
	return nil
}

func TestBrowser(t *testing.T) {
	const ttl = 3 * time.Second
	ctx := newBrowser(t)
	s := startStack(t, stackOptions{accessTTL: ttl})

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(s.frontURL+"/"), chromedp.WaitVisible("#kc-form-login")),
		"the protected page sends the browser to the provider's login form")
	location, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(location, s.idp.URL+"/login?"), location)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys("#username", "alice"),
		chromedp.SendKeys("#password", "alice-password"),
		chromedp.Click("#kc-login"),
		chromedp.WaitVisible("#user"),
	), "the password logs in and the browser comes back")
	who, err := chromedp.Run(ctx, chromedp.Text("#user"))
	require.NoError(t, err)
	assert.Equal(t, "alice", who, "the upstream page sees alice")
	location, err = chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, s.frontURL+"/", location)

	cookie := browserSession(t, ctx, s.frontURL)
	require.NotNil(t, cookie, "the browser keeps the session cookie")
	assert.True(t, cookie.Secure)
	assert.True(t, cookie.HTTPOnly)
	assert.Equal(t, network.CookieSameSiteLax, cookie.SameSite)
	assert.Equal(t, "/", cookie.Path)
	assert.Equal(t, appHost, cookie.Domain, "host-only")
	assert.Less(t, len(cookie.Name)+1+len(cookie.Value), 4096)
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.cookie.includes("__Host-mlflow-authz=")`))
	require.NoError(t, err)
	assert.True(t, hidden, "HttpOnly: page script cannot read the session")

	// The UI's own calls: fetch with the cookie only, permissions enforced.
	res := callAPI(t, ctx, "/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
	assert.True(t, strings.HasPrefix(res, "200 "), res)
	assert.Contains(t, res, `"user":"alice"`)
	res = callAPI(t, ctx, "/ajax-api/2.0/mlflow/experiments/get?experiment_id=2")
	assert.True(t, strings.HasPrefix(res, "403 permission_denied "), res)

	// Outlive the access token: the next call refreshes behind the scenes.
	before := s.idp.Refreshes()
	time.Sleep(ttl + 300*time.Millisecond)
	res = callAPI(t, ctx, "/ajax-api/2.0/mlflow/experiments/get?experiment_id=1")
	assert.True(t, strings.HasPrefix(res, "200 "), res)
	assert.Equal(t, before+1, s.idp.Refreshes())
	renewed := browserSession(t, ctx, s.frontURL)
	require.NotNil(t, renewed)
	assert.NotEqual(t, cookie.Value, renewed.Value, "the renewed cookie came with the allowed response")
	require.NoError(t, chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible("#user")))
	who, err = chromedp.Run(ctx, chromedp.Text("#user"))
	require.NoError(t, err)
	assert.Equal(t, "alice", who, "still logged in after the refresh")
	assert.Equal(t, before+1, s.idp.Refreshes(), "the renewed session needs no other refresh")

	// Log out: the provider's session ends and the next page asks again.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(s.frontURL+"/_authz/logout"), chromedp.WaitVisible("#kc-form-login")))
	location, err = chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(location, s.idp.URL+"/login?"), location)
	assert.Equal(t, 1, s.idp.EndSessions())
	assert.Nil(t, browserSession(t, ctx, s.frontURL), "the session cookie is gone")
}
