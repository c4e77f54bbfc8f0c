package authn

// Internal tests: they seal cookies with the real key ring to build what
// an attacker, an old replica or a stale browser would send.

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

const testHost = "mlflow.example.com"

// testNow is the fixed start of the session tests' clock.
var testNow = time.Unix(1767225600, 0)

// newKey returns a fresh cookie key, base64 as a keys file holds it.
func newKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func ring(t testing.TB, keys ...string) *keyRing {
	t.Helper()
	r, err := parseKeyRing([]byte(strings.Join(keys, "\n")))
	require.NoError(t, err)
	return r
}

// loginFixture is a Login on a development issuer, with its keys.
type loginFixture struct {
	login *Login
	iss   *devissuer.Issuer
	clock *storetest.Clock
	key   string
}

func newLoginFixture(t testing.TB) *loginFixture {
	t.Helper()
	iss := authntest.Start(t, devissuer.WithRealm("ml"))
	clock := storetest.NewClock(testNow)
	j, err := NewJWT(t.Context(), []IssuerConfig{{Name: "ml", Issuer: iss.URL, Audiences: []string{"mlflow"}, AdminGroups: []string{"admins"}}},
		WithJWTClock(clock.Now), WithJWTLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	t.Cleanup(j.Close)
	key := newKey(t)
	l, err := NewLogin(j, SessionConfig{KeysFile: writeFile(t, "keys", "# cookie keys\n"+key+"\n")},
		LoginConfig{Enabled: true, ClientID: "mlflow-authz", ClientSecretEnv: "TEST_SECRET"},
		WithLoginEnv(func(string) (string, bool) { return "s3cret", true }))
	require.NoError(t, err)
	return &loginFixture{login: l, iss: iss, clock: clock, key: key}
}

// session returns a live session state for alice at the fixture's clock.
func (f *loginFixture) session() *sessionState {
	now := f.clock.Now()
	return &sessionState{
		Issuer: f.iss.URL, User: "alice", Groups: []string{"team-a"}, Roles: []string{"default-roles-ml"},
		Expiry: now.Add(5 * time.Minute).Unix(), End: now.Add(10 * time.Hour).Unix(), Refresh: "refresh-token",
	}
}

func (f *loginFixture) seal(t testing.TB, host string, st *sessionState) string {
	t.Helper()
	v, err := f.login.keys.ring.sealState(purposeSession, host, st)
	require.NoError(t, err)
	return v
}

func cookieRequest(t testing.TB, method, target string, headers map[string]string) *authz.Request {
	t.Helper()
	h := map[string]string{":authority": testHost}
	for k, v := range headers {
		h[k] = v
	}
	r, d := authz.NewRequest(authz.RequestInput{Method: method, Host: testHost, Target: target, Headers: h})
	require.Nil(t, d)
	return r
}

func TestKeyRing(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	old := ring(t, k1)
	sealed := old.seal(purposeSession, testHost, []byte("hello"))

	t.Run("round trip", func(t *testing.T) {
		got, err := old.open(purposeSession, testHost, sealed)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(got))
	})
	t.Run("rotation: a new first key still opens what the old key sealed", func(t *testing.T) {
		rotated := ring(t, k2, k1)
		got, err := rotated.open(purposeSession, testHost, sealed)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(got))
		fresh := rotated.seal(purposeSession, testHost, []byte("x"))
		_, err = old.open(purposeSession, testHost, fresh)
		assert.ErrorIs(t, err, errSealUnknownKey, "the new key seals once it is first")
	})
	t.Run("a removed key opens nothing", func(t *testing.T) {
		_, err := ring(t, k2).open(purposeSession, testHost, sealed)
		assert.ErrorIs(t, err, errSealUnknownKey)
	})
	t.Run("bound to its host", func(t *testing.T) {
		_, err := old.open(purposeSession, "kiali.example.com", sealed)
		assert.ErrorIs(t, err, errSealForged)
	})
	t.Run("bound to its purpose", func(t *testing.T) {
		_, err := old.open(purposeLogin, testHost, sealed)
		assert.ErrorIs(t, err, errSealForged)
	})
	t.Run("every flipped byte is refused", func(t *testing.T) {
		raw, err := base64.RawURLEncoding.DecodeString(sealed)
		require.NoError(t, err)
		for i := range raw {
			bad := append([]byte(nil), raw...)
			bad[i] ^= 0x01
			_, err := old.open(purposeSession, testHost, base64.RawURLEncoding.EncodeToString(bad))
			assert.Error(t, err, "byte %d", i)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, v := range []string{"", "!!!", "AAAA", sealed[:20], strings.Repeat("A", 8000)} {
			_, err := old.open(purposeSession, testHost, v)
			assert.ErrorIs(t, err, errSealMalformed, "%.20q", v)
		}
	})
}

func TestParseKeyRingRefuses(t *testing.T) {
	k := newKey(t)
	for name, content := range map[string]string{
		"empty":          "",
		"only comments":  "# none\n\n",
		"not base64":     "not a key!\n",
		"short key":      base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"same key twice": k + "\n" + k,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseKeyRing([]byte(content))
			require.Error(t, err)
			assert.NotContains(t, err.Error(), k, "errors never echo a key")
		})
	}
	r, err := parseKeyRing([]byte("  " + strings.TrimRight(base64.URLEncoding.EncodeToString(make([]byte, 32)), "=") + "  \r\n"))
	require.NoError(t, err, "unpadded URL-safe base64 and stray whitespace are fine")
	assert.Len(t, r.keys, 1)
}

// keycloakGroups are 50 groups as Keycloak's group mapper writes them with
// "Full group path" on: nested, long names.
func keycloakGroups() []string {
	depts := []string{"data-science", "machine-learning-platform", "fraud-analytics", "customer-insights", "risk-modelling"}
	var out []string
	for i := range 50 {
		out = append(out, fmt.Sprintf("/acme-corporation/%s/project-team-%02d-%s", depts[i%len(depts)], i, []string{"readers", "editors", "owners"}[i%3]))
	}
	return out
}

// keycloakRefreshToken is shaped like a Keycloak 26 refresh token (an
// HS512 JWT of about 900 characters) and as incompressible as one.
func keycloakRefreshToken() string {
	b := make([]byte, 660)
	_, _ = rand.Read(b)
	return "eyJhbGciOiJIUzUxMiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICI0ZjM2In0." + base64.RawURLEncoding.EncodeToString(b)
}

func TestSessionCookieFitsWithFiftyGroups(t *testing.T) {
	f := newLoginFixture(t)
	st := f.session()
	st.User = "alexandra.konstantinopoulou@acme-corporation.example.com"
	st.Groups = keycloakGroups()
	for i, g := range st.Groups {
		st.Groups[i] = authz.NormalizeGroup(g)
	}
	st.Roles = []string{"default-roles-ml", "offline_access", "uma_authorization", "ml-user", "mlflow/experiment-editor",
		"mlflow/model-registrar", "account/manage-account", "account/manage-account-links", "account/view-profile",
		"kiali/viewer", "phoenix/member", "realm-management/view-users", "broker/read-token", "mlflow/admin"}
	st.Refresh = keycloakRefreshToken()
	raw := 0
	for _, g := range st.Groups {
		raw += len(g)
	}
	cookie, err := f.login.sealSession(testHost, st, f.clock.Now())
	require.NoError(t, err)
	nameValue, _, _ := strings.Cut(cookie, ";")
	t.Logf("50 groups (%d bytes of paths), %d roles, %d-byte refresh token: cookie %d bytes", raw, len(st.Roles), len(st.Refresh), len(nameValue))
	assert.Less(t, len(nameValue), SessionMaxCookieSize)
	assert.Contains(t, cookie, "; Path=/; Max-Age=36000; Secure; HttpOnly; SameSite=Lax")
	assert.True(t, strings.HasPrefix(cookie, "__Host-mlflow-authz="))

	t.Run("a session that cannot fit is refused, never split", func(t *testing.T) {
		big := *st
		big.Refresh = keycloakRefreshToken() + keycloakRefreshToken() + keycloakRefreshToken() + keycloakRefreshToken()
		_, err := f.login.sealSession(testHost, &big, f.clock.Now())
		require.Error(t, err)
	})
}

func TestSessionsAuthenticate(t *testing.T) {
	f := newLoginFixture(t)
	s := NewSessions(map[string]*Login{testHost: f.login})
	name := f.login.CookieName()
	valid := f.seal(t, testHost, f.session())

	expired := f.session()
	expired.End = f.clock.Now().Add(-time.Second).Unix()
	accessExpiredNoRefresh := f.session()
	accessExpiredNoRefresh.Expiry = f.clock.Now().Add(-time.Second).Unix()
	accessExpiredNoRefresh.Refresh = ""
	otherIssuer := f.session()
	otherIssuer.Issuer = "https://sso.example.com/realms/other"
	foreign := ring(t, newKey(t))
	foreignValue, err := foreign.sealState(purposeSession, testHost, f.session())
	require.NoError(t, err)
	flowValue, err := f.login.keys.ring.sealState(purposeLogin, testHost, flowState{State: randomToken(), Nonce: "n", Verifier: "v", Return: "/"})
	require.NoError(t, err)
	raw, _ := base64.RawURLEncoding.DecodeString(valid)
	raw[len(raw)-1] ^= 0x80
	tampered := base64.RawURLEncoding.EncodeToString(raw)

	tests := []struct {
		name       string
		method     string
		host       string
		headers    map[string]string
		wantUser   string
		wantNil    bool
		wantStatus int
		wantReason authz.Reason
	}{
		{name: "valid", headers: map[string]string{"cookie": "other=1; " + name + "=" + valid + "; x=2"}, wantUser: "alice"},
		{name: "no cookie", headers: map[string]string{"cookie": "other=1"}, wantNil: true},
		{name: "login-state cookie is not a session", headers: map[string]string{"cookie": name + "-login-abc=" + valid}, wantNil: true},
		{name: "host without login ignores the cookie", host: "kiali.example.com", headers: map[string]string{"cookie": name + "=" + valid}, wantNil: true},
		{name: "tampered", headers: map[string]string{"cookie": name + "=" + tampered}, wantStatus: 401, wantReason: ReasonSessionInvalid},
		{name: "sealed with a foreign key", headers: map[string]string{"cookie": name + "=" + foreignValue}, wantStatus: 401, wantReason: ReasonSessionUnknownKey},
		{name: "expired", headers: map[string]string{"cookie": name + "=" + f.seal(t, testHost, expired)}, wantStatus: 401, wantReason: ReasonSessionExpired},
		{name: "access expired and no refresh token", headers: map[string]string{"cookie": name + "=" + f.seal(t, testHost, accessExpiredNoRefresh)}, wantStatus: 401, wantReason: ReasonSessionExpired},
		{name: "another issuer's session", headers: map[string]string{"cookie": name + "=" + f.seal(t, testHost, otherIssuer)}, wantStatus: 401, wantReason: ReasonSessionInvalid},
		{name: "sealed for another host", headers: map[string]string{"cookie": name + "=" + f.seal(t, "kiali.example.com", f.session())}, wantStatus: 401, wantReason: ReasonSessionInvalid},
		{name: "a login-state value under the session name", headers: map[string]string{"cookie": name + "=" + flowValue}, wantStatus: 401, wantReason: ReasonSessionInvalid},
		{name: "two session cookies", headers: map[string]string{"cookie": name + "=" + valid + "; " + name + "=" + valid}, wantStatus: 401, wantReason: ReasonSessionInvalid},
		{name: "joined with a comma by a proxy", headers: map[string]string{"cookie": "a=1," + name + "=" + valid}, wantUser: "alice"},
		{name: "same-origin POST", method: "POST", headers: map[string]string{"cookie": name + "=" + valid, "origin": "https://mlflow.example.com"}, wantUser: "alice"},
		{name: "same-origin POST, explicit port", method: "POST", headers: map[string]string{"cookie": name + "=" + valid, "origin": "https://MLflow.example.com:443"}, wantUser: "alice"},
		{name: "POST with neither Origin nor Referer", method: "POST", headers: map[string]string{"cookie": name + "=" + valid}, wantUser: "alice"},
		{name: "cross-site POST", method: "POST", headers: map[string]string{"cookie": name + "=" + valid, "origin": "https://evil.example.net"}, wantStatus: 403, wantReason: ReasonCSRFOriginMismatch},
		{name: "cross-site DELETE by Referer", method: "DELETE", headers: map[string]string{"cookie": name + "=" + valid, "referer": "https://evil.example.net/page"}, wantStatus: 403, wantReason: ReasonCSRFOriginMismatch},
		{name: "Origin wins over a same-site Referer", method: "PATCH", headers: map[string]string{"cookie": name + "=" + valid, "origin": "https://evil.example.net", "referer": "https://mlflow.example.com/"}, wantStatus: 403, wantReason: ReasonCSRFOriginMismatch},
		{name: "another port is another origin", method: "POST", headers: map[string]string{"cookie": name + "=" + valid, "origin": "https://mlflow.example.com:8443"}, wantStatus: 403, wantReason: ReasonCSRFOriginMismatch},
		{name: "plain http origin is another origin", method: "POST", headers: map[string]string{"cookie": name + "=" + valid, "origin": "http://mlflow.example.com"}, wantStatus: 403, wantReason: ReasonCSRFOriginMismatch},
		{name: "Origin null", method: "POST", headers: map[string]string{"cookie": name + "=" + valid, "origin": "null"}, wantStatus: 403, wantReason: ReasonCSRFOriginMismatch},
		{name: "cross-site GET is no forgery", headers: map[string]string{"cookie": name + "=" + valid, "origin": "https://evil.example.net"}, wantUser: "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, host := tt.method, tt.host
			if method == "" {
				method = "GET"
			}
			if host == "" {
				host = testHost
			}
			h := map[string]string{":authority": host}
			for k, v := range tt.headers {
				h[k] = v
			}
			r, d := authz.NewRequest(authz.RequestInput{Method: method, Host: host, Target: "/ajax-api/2.0/mlflow/runs/get", Headers: h})
			require.Nil(t, d)
			id, err := s.Authenticate(t.Context(), r)
			switch {
			case tt.wantNil:
				assert.NoError(t, err)
				assert.Nil(t, id)
			case tt.wantUser != "":
				require.NoError(t, err)
				require.NotNil(t, id)
				assert.Equal(t, tt.wantUser, id.Username)
				assert.Equal(t, "session", id.Method)
				assert.Equal(t, []string{"team-a"}, id.Groups)
				assert.Equal(t, "mlflow-authz", id.ClientID)
				assert.Empty(t, id.ResponseHeaders)
			default:
				require.Nil(t, id)
				ce, ok := authz.AsCredentialError(err)
				require.True(t, ok, "error: %v", err)
				assert.Equal(t, tt.wantReason, ce.Reason)
				status := ce.Status
				if status == 0 {
					status = http.StatusUnauthorized
				}
				assert.Equal(t, tt.wantStatus, status)
				assert.NotContains(t, ce.Error(), valid[:20], "never echo the cookie")
			}
		})
	}

	t.Run("warm requests hit the cache, an expired one does not", func(t *testing.T) {
		r := cookieRequest(t, "GET", "/", map[string]string{"cookie": name + "=" + valid})
		_, err := s.Authenticate(t.Context(), r)
		require.NoError(t, err)
		_, hit := f.login.cache.Get(valid, f.clock.Now())
		assert.True(t, hit)
		f.clock.Advance(10*time.Hour + time.Second)
		_, err = s.Authenticate(t.Context(), r)
		ce, _ := authz.AsCredentialError(err)
		require.NotNil(t, ce)
		assert.Equal(t, ReasonSessionExpired, ce.Reason)
	})
}

func TestFindCookie(t *testing.T) {
	tests := []struct {
		header, name, want string
		n                  int
	}{
		{"", "a", "", 0},
		{"a=1", "a", "1", 1},
		{"b=2; a=1", "a", "1", 1},
		{"ab=2; a=1", "a", "1", 1},
		{" a=1 ;b=2", "a", "1", 1},
		{"a=1, a=2", "a", "2", 2},
		{"a", "a", "", 0},
		{"a=", "a", "", 1},
		{"xa=1;ax=2", "a", "", 0},
	}
	for _, tt := range tests {
		v, n := findCookie(tt.header, tt.name)
		assert.Equal(t, tt.want, v, tt.header)
		assert.Equal(t, tt.n, n, tt.header)
	}
	assert.Equal(t, []string{"p-1", "p-2"}, cookieNames("p-1=a; q=b, p-2=c", "p-"))
}

func TestSessionConfig(t *testing.T) {
	for name, c := range map[string]SessionConfig{
		"no keys file":               {},
		"cookie name without __Host": {KeysFile: "k", CookieName: "session"},
		"cookie name not a token":    {KeysFile: "k", CookieName: "__Host-a b"},
		"tiny max age":               {KeysFile: "k", MaxAge: time.Second},
	} {
		assert.Error(t, c.Validate(), name)
	}
	assert.NoError(t, SessionConfig{KeysFile: "k"}.Validate())
}

// TestRefreshAfterAnotherEnded: a request that read an expired cookie
// before a refresh of it stored its result, and asks for a refresh after
// that one ended, is served that result. The development issuer has no
// token endpoint, so any second refresh fails: before the fix, this is
// how a burst of XHRs spent a rotated refresh token twice and ended a
// live session.
func TestRefreshAfterAnotherEnded(t *testing.T) {
	f := newLoginFixture(t)
	now := f.clock.Now()
	expired := f.session()
	expired.Expiry = now.Add(-time.Minute).Unix()
	value := f.seal(t, testHost, expired)

	t.Run("the renewed session", func(t *testing.T) {
		renewed := f.session().identity("mlflow-authz")
		renewed.ResponseHeaders = []authz.Header{{Name: "set-cookie", Value: "renewed"}}
		f.login.cache.Put(value, renewed, now.Add(5*time.Minute), now)
		id, err := f.login.refresh(t.Context(), testHost, value, expired)
		require.NoError(t, err)
		assert.Equal(t, "alice", id.Username)
		assert.Equal(t, []authz.Header{{Name: "set-cookie", Value: "renewed"}}, id.ResponseHeaders, "the renewed cookie rides along")
		id.Username = "mallory"
		again, ok := f.login.cache.Get(value, now)
		require.True(t, ok)
		assert.Equal(t, "alice", again.Username, "callers get a copy")
	})
	t.Run("a refresh the provider refused", func(t *testing.T) {
		ended := f.seal(t, testHost, expired) // another cookie, same state
		f.login.cache.Put(ended, endedSession, now.Add(time.Hour), now)
		_, err := f.login.refresh(t.Context(), testHost, ended, expired)
		ce, ok := authz.AsCredentialError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, ReasonSessionRefreshFailed, ce.Reason)
	})
}
