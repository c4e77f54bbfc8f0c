package browser_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "modernc.org/sqlite" // the tests seed MLflow's tables as MLflow and an admin would

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/server"
	"github.com/mlflow-authz/mlflow-authz/integration/browser/testidp"
	"github.com/mlflow-authz/mlflow-authz/integration/envoyfront"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
)

// The app's host. Browsers resolve every *.localhost name to loopback
// (RFC 6761 section 6.3), so Chromium needs no resolver flags; the Go
// client dials the front for it.
const (
	appHost      = "mlflow.localhost"
	clientID     = "mlflow-authz"
	clientSecret = "the-client-secret"
	gateway      = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
)

// Users of the test realm. alice has EDIT on experiment 1 and nothing on
// experiment 2; bob is in /ml/team-b, whose group has READ on 2.
var users = []testidp.User{
	{Username: "alice", Password: "alice-password", Groups: []string{"/ml/team-a"}, Roles: []string{"default-roles-test"}},
	{Username: "bob", Password: "bob-password", Groups: []string{"/ml/team-b"}, Roles: []string{"default-roles-test"}},
}

// stack is the whole path a browser takes: the front (Envoy), Check over
// gRPC (the real service on a seeded SQLite store), the OpenID provider
// and a fake MLflow upstream.
type stack struct {
	idp      *testidp.Provider
	frontURL string // https://mlflow.localhost:PORT
	port     string
	check    authv3.AuthorizationClient
	keysFile string
}

type stackOptions struct {
	accessTTL time.Duration
}

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	// The front's port is needed before the provider registers its
	// redirect URI, so it listens first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	frontURL := "https://" + appHost + ":" + port
	idp, err := testidp.Start("127.0.0.1:0", testidp.Options{
		Users:          users,
		AccessTokenTTL: o.accessTTL,
		Clients: []testidp.Client{{
			ID: clientID, Secret: clientSecret,
			RedirectURIs:           []string{frontURL + "/_authz/callback"},
			PostLogoutRedirectURIs: []string{frontURL + "/"},
			Audience:               []string{"mlflow"},
		}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })

	dir := t.TempDir()
	db := filepath.Join(dir, "mlflow.db")
	seed(t, db)
	keys := filepath.Join(dir, "session-keys")
	require.NoError(t, os.WriteFile(keys, []byte(newCookieKey()+"\n"), 0o600))
	secret := filepath.Join(dir, "client-secret")
	require.NoError(t, os.WriteFile(secret, []byte(clientSecret+"\n"), 0o600))
	cfg, err := config.Parse(fmt.Appendf(nil, `
server: {grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0"}
log: {level: error}
issuers:
  - name: test
    issuer: %q
    audiences: [mlflow]
session:
  keys_file: %q
store:
  driver: sqlite
  sqlite: {tracking_path: %q, poll_interval: 100ms}
apps:
  - name: mlflow
    type: mlflow
    hosts: [%s]
    login:
      enabled: true
      client_id: %s
      client_secret_file: %q
`, idp.URL, keys, db, appHost, clientID, secret), os.LookupEnv)
	require.NoError(t, err)
	run, err := server.Start(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(run.Stop)

	conn, err := grpc.NewClient(run.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	check := authv3.NewAuthorizationClient(conn)

	up := httptest.NewServer(fakeMLflow())
	t.Cleanup(up.Close)
	upURL, _ := url.Parse(up.URL)
	front := httptest.NewUnstartedServer(envoyfront.New(check, upURL, envoyfront.Options{Principal: gateway}))
	front.Listener = ln
	front.StartTLS()
	t.Cleanup(front.Close)
	return &stack{idp: idp, frontURL: frontURL, port: port, check: check, keysFile: keys}
}

func newCookieKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// seed writes MLflow's tables as MLflow and an admin with SQL would.
func seed(t *testing.T, path string) {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, sqlite.Migrate(ctx, path))
	require.NoError(t, sqlite.CreateTrackingSchema(ctx, path))
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	for _, q := range []string{
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (1, 'fraud-detection', 'active'), (2, 'churn-model', 'active')`,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', 0), (2, 'bob', 0)`,
		`INSERT INTO groups (id, group_name) VALUES (1, 'ml/team-b')`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'EDIT')`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES ('2', 1, 'READ')`,
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
}

// fakeMLflow is the upstream: a page whose script calls the ajax API (as
// MLflow's UI does, with fetch and cookies only), and the API answering
// with the identity the front passed on.
func fakeMLflow() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>MLflow</title></head><body>
<h1 id="user">%s</h1>
<script>
window.callAPI = async function (path) {
  const r = await fetch(path, {headers: {"Accept": "application/json"}, credentials: "same-origin"});
  return r.status + " " + r.headers.get("x-authz-reason") + " " + (await r.text());
};
</script></body></html>`, r.Header.Get("X-Authz-User"))
	})
	mux.HandleFunc("/ajax-api/2.0/mlflow/experiments/get", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"experiment": map[string]string{"experiment_id": r.URL.Query().Get("experiment_id")},
			"user":       r.Header.Get("X-Authz-User"),
			"groups":     r.Header.Get("X-Authz-Groups"),
		})
	})
	return mux
}

// browserClient is a Go HTTP client that behaves like a browser for the
// flow: a cookie jar, no automatic redirects, and mlflow.localhost dialled
// to the front. It trusts the front's test certificate.
func (s *stack) browserClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the front's throwaway test certificate
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if host, port, _ := net.SplitHostPort(addr); host == appHost {
					addr = net.JoinHostPort("127.0.0.1", port)
				}
				return dialer.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// navigate GETs u as a browser's top-level navigation.
func navigate(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	return get(t, c, u, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "navigate")
}

// xhr GETs u as the UI's script does.
func xhr(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	return get(t, c, u, "application/json, text/plain, */*", "cors")
}

// get sends GET u with the Accept and Sec-Fetch-Mode a browser would.
func get(t *testing.T, c *http.Client, u, accept, fetchMode string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", u, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", accept)
	req.Header.Set("Sec-Fetch-Mode", fetchMode)
	resp, err := c.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// submitLogin posts the provider's login form found at loginURL.
func submitLogin(t *testing.T, c *http.Client, loginURL, username, password string) *http.Response {
	t.Helper()
	u, err := url.Parse(loginURL)
	require.NoError(t, err)
	form := url.Values{"id": {u.Query().Get("id")}, "username": {username}, "password": {password}}
	resp, err := c.PostForm(u.Scheme+"://"+u.Host+"/login", form)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// follow follows redirects by hand up to the first non-redirect, or the
// first redirect to stopAt's origin+path prefix, returning every hop.
func follow(t *testing.T, c *http.Client, resp *http.Response, stopAt string) (*http.Response, []string) {
	t.Helper()
	var hops []string
	for i := 0; i < 10 && resp.StatusCode >= 300 && resp.StatusCode < 400; i++ {
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		require.NoError(t, err)
		hops = append(hops, loc.String())
		if stopAt != "" && strings.HasPrefix(loc.String(), stopAt) {
			return resp, hops
		}
		resp = navigate(t, c, loc.String())
	}
	return resp, hops
}

// login runs the whole flow for user from a navigation to target and
// returns the final response (the page) and the redirect hops.
func (s *stack) login(t *testing.T, c *http.Client, target, user, password string) (*http.Response, []string) {
	t.Helper()
	resp := navigate(t, c, s.frontURL+target)
	require.Equal(t, http.StatusFound, resp.StatusCode, "an anonymous navigation is sent to log in")
	resp, hops := follow(t, c, resp, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body(t, resp), `id="kc-form-login"`, "the provider's login form")
	loginPage := resp.Request.URL.String()
	resp = submitLogin(t, c, loginPage, user, password)
	final, more := follow(t, c, resp, "")
	return final, append(append(hops, loginPage), more...)
}

// sessionCookie returns the session cookie the jar holds for the front.
func (s *stack) sessionCookie(c *http.Client) string {
	u, _ := url.Parse(s.frontURL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "__Host-mlflow-authz" {
			return ck.Value
		}
	}
	return ""
}
