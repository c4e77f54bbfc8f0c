package authn_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// basicHost is the application host with Basic on in these tests.
const basicHost = "mlflow.example.com"

// vector is a users.password_hash made by werkzeug's algorithm with a known
// password (testdata/werkzeug_hashes.py).
type vector struct{ Name, Password, Hash string }

func vectors(t testing.TB) map[string]vector {
	t.Helper()
	b, err := os.ReadFile("testdata/werkzeug_hashes.json")
	require.NoError(t, err)
	var list []vector
	require.NoError(t, json.Unmarshal(b, &list))
	out := map[string]vector{}
	for _, v := range list {
		out[v.Name] = v
	}
	return out
}

// basicFixture is a Basic authenticator on a real SQLite auth database,
// read through the store's cache as the server reads it.
type basicFixture struct {
	basic *authn.Basic
	cache *cache.Cache
	exec  storetest.ExecFunc
	clock *storetest.Clock
	st    *sqlite.Store
	logs  *storetest.LogBuffer
}

// newBasicFixture seeds users alice (scrypt default vector), bob (pbkdf2
// 260000), carol (no password), dave (a hash we refuse: werkzeug < 3 plain).
func newBasicFixture(t testing.TB, cfg authn.BasicConfig, opts ...authn.BasicOption) basicFixture {
	t.Helper()
	v := vectors(t)
	path := filepath.Join(t.TempDir(), "basic_auth.db")
	require.NoError(t, sqlite.Migrate(t.Context(), path))
	exec := storetest.SQLiteExec(t, path)
	storetest.Must(t, exec,
		`INSERT INTO users (id, username, password_hash, is_admin) VALUES
			(1, 'alice', '`+v["scrypt default"].Hash+`', false),
			(2, 'bob', '`+v["pbkdf2 260000"].Hash+`', false),
			(3, 'carol', NULL, false),
			(4, 'dave', 'plain$$secret-password', false)`)
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: path})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	c := cache.New(st, cache.Options{})
	f := basicFixture{cache: c, exec: exec, clock: newJWTClock(), st: st, logs: &storetest.LogBuffer{}}
	opts = append([]authn.BasicOption{authn.WithBasicClock(f.clock.Now),
		authn.WithBasicLogger(slog.New(slog.NewJSONHandler(f.logs, nil)))}, opts...)
	f.basic, err = authn.NewBasic(c, cfg, []string{basicHost}, opts...)
	require.NoError(t, err)
	return f
}

// basicHeader is the Authorization header MLflow's Python client sends:
// "Basic " + base64.standard_b64encode(f"{username}:{password}".encode())
// (mlflow/utils/rest_utils.py, http_request).
func basicHeader(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// mlflowRequest is a request shaped as MLflow's client sends it, on host.
func mlflowRequest(t testing.TB, host, authorization string) *authz.Request {
	t.Helper()
	h := map[string]string{"user-agent": "mlflow-python-client/3.11.1", "accept-encoding": "gzip, deflate",
		"accept": "*/*", "connection": "keep-alive"}
	if authorization != "" {
		h["authorization"] = authorization
	}
	r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: host,
		Target: "/api/2.0/mlflow/experiments/get?experiment_id=1", Headers: h})
	require.Nil(t, d)
	return r
}

func (f basicFixture) auth(t testing.TB, user, password string) (*authz.Identity, error) {
	t.Helper()
	return f.basic.Authenticate(t.Context(), mlflowRequest(t, basicHost, basicHeader(user, password)))
}

// requireBasicDeny asserts a 401 with reason and the Basic challenge, and
// that the message names neither the user nor the password.
func requireBasicDeny(t *testing.T, id *authz.Identity, err error, reason authz.Reason, secrets ...string) {
	t.Helper()
	require.Nil(t, id)
	require.Equal(t, http.StatusUnauthorized, jwtStatus(err), "error: %v", err)
	ce, _ := authz.AsCredentialError(err)
	require.Equal(t, reason, ce.Reason, "message: %s", ce.Message)
	require.False(t, ce.Foreign)
	require.Equal(t, authn.BasicChallenge, ce.Challenge)
	for _, s := range secrets {
		require.NotContains(t, ce.Error(), s)
	}
}

func TestBasicWerkzeugHashes(t *testing.T) {
	v := vectors(t)
	f := newBasicFixture(t, authn.BasicConfig{})
	// Every format werkzeug writes, stored as MLflow stores it.
	names := []string{"scrypt token_urlsafe salt", "scrypt utf-8 password", "scrypt colon and dollar in password",
		"scrypt other parameters", "pbkdf2 600000", "pbkdf2 utf-8 password"}
	for i, name := range names {
		require.NoError(t, f.exec(t.Context(), `INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)`,
			10+i, "user-"+name, v[name].Hash))
	}
	f.cache.Flush()
	names = append(names, "scrypt default", "pbkdf2 260000")
	users := map[string]string{"scrypt default": "alice", "pbkdf2 260000": "bob"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			user := cmpOr(users[name], "user-"+name)
			id, err := f.auth(t, user, v[name].Password)
			require.NoError(t, err)
			assert.Equal(t, &authz.Identity{Kind: authz.KindUser, Username: user, Method: "basic"}, id)
			id, err = f.auth(t, user, v[name].Password+"!")
			requireBasicDeny(t, id, err, authn.ReasonBasicInvalid, v[name].Password)
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestBasicRefusals: an unknown user, a wrong password, a user without a
// password and a hash we cannot check all get the same answer, so none
// tells an attacker which usernames exist.
func TestBasicRefusals(t *testing.T) {
	v := vectors(t)
	f := newBasicFixture(t, authn.BasicConfig{})
	for _, tt := range []struct{ name, user, password string }{
		{"wrong password", "alice", "alice-s3cret-pass2"},
		{"unknown user", "mallory", v["scrypt default"].Password},
		{"no password stored", "carol", "anything-long-enough"},
		{"hash we refuse", "dave", "secret-password"},
		{"username differs in case", "Alice", v["scrypt default"].Password},
		{"username too long to exist", strings.Repeat("u", 2000), "x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.auth(t, tt.user, tt.password)
			requireBasicDeny(t, id, err, authn.ReasonBasicInvalid, tt.password)
			ce, _ := authz.AsCredentialError(err)
			assert.Equal(t, "invalid username or password", ce.Message)
		})
	}
	assert.Contains(t, f.logs.String(), "the stored password hash cannot be checked", "an operator learns of the unusable hash")
	assert.NotContains(t, f.logs.String(), "secret-password")
}

func TestBasicHeader(t *testing.T) {
	v := vectors(t)
	f := newBasicFixture(t, authn.BasicConfig{})
	good := base64.StdEncoding.EncodeToString([]byte("bob:" + v["pbkdf2 260000"].Password))
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		header string
		reason authz.Reason // "": no credential of ours; "ok": bob
	}{
		{"no header", "", ""},
		{"bearer", "Bearer abc", ""},
		{"other scheme", "Digest username=bob", ""},
		{"scheme prefix only", "Basicx " + good, ""},
		{"lower-case scheme", "basic " + good, "ok"},
		{"tab and trailing space", "BASIC\t" + good + " ", "ok"},
		{"empty", "Basic", authn.ReasonBasicMalformed},
		{"empty after space", "Basic   ", authn.ReasonBasicMalformed},
		{"not base64", "Basic bob:secret", authn.ReasonBasicMalformed},
		{"url-safe alphabet", "Basic " + strings.NewReplacer("+", "-", "/", "_").Replace(enc("bob:a>?b>?c")), authn.ReasonBasicMalformed},
		{"line break inside", "Basic " + good[:4] + "\n" + good[4:], authn.ReasonBasicMalformed},
		{"missing padding", "Basic " + strings.TrimRight(enc("bob:x"), "="), authn.ReasonBasicMalformed},
		{"no colon", "Basic " + enc("bob"), authn.ReasonBasicMalformed},
		{"empty username", "Basic " + enc(":password"), authn.ReasonBasicMalformed},
		{"empty password", "Basic " + enc("bob:"), authn.ReasonBasicMalformed},
		{"not UTF-8", "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:\xff\xfe")), authn.ReasonBasicMalformed},
		{"two credentials", "Basic " + good + ", Basic " + good, authn.ReasonBasicMalformed},
		{"two separated by space", "Basic " + good + " " + good, authn.ReasonBasicMalformed},
		{"too large", "Basic " + enc("bob:"+strings.Repeat("p", 30000)), authn.ReasonBasicMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.basic.Authenticate(t.Context(), mlflowRequest(t, basicHost, tt.header))
			switch tt.reason {
			case "":
				require.NoError(t, err)
				require.Nil(t, id)
			case "ok":
				require.NoError(t, err)
				require.Equal(t, "bob", id.Username)
			default:
				requireBasicDeny(t, id, err, tt.reason)
			}
		})
	}
}

// TestBasicDisabled: an application without Basic refuses the credential
// as one that is not ours, unchecked.
func TestBasicDisabled(t *testing.T) {
	f := newBasicFixture(t, authn.BasicConfig{})
	id, err := f.basic.Authenticate(t.Context(), mlflowRequest(t, "phoenix.example.com", basicHeader("alice", "alice-s3cret-pass")))
	require.Nil(t, id)
	ce, ok := authz.AsCredentialError(err)
	require.True(t, ok)
	assert.Equal(t, authn.ReasonBasicDisabled, ce.Reason)
	assert.True(t, ce.Foreign)
	assert.Zero(t, f.basic.Stats().Verifications, "no hash computed for a host without Basic")
}

// TestBasicCache: the hash runs once for a burst of requests with the same
// credentials, and the cache never answers for other credentials.
func TestBasicCache(t *testing.T) {
	v := vectors(t)
	f := newBasicFixture(t, authn.BasicConfig{CacheTTL: time.Minute})
	for range 20 {
		id, err := f.auth(t, "alice", v["scrypt default"].Password)
		require.NoError(t, err)
		require.Equal(t, "alice", id.Username)
	}
	assert.Equal(t, authn.BasicStats{Verifications: 1, CacheHits: 19}, f.basic.Stats(), "scrypt ran once")

	id, err := f.auth(t, "alice", v["scrypt default"].Password+"x")
	requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
	assert.EqualValues(t, 2, f.basic.Stats().Verifications, "other credentials are checked")

	f.clock.Advance(time.Minute)
	_, err = f.auth(t, "alice", v["scrypt default"].Password)
	require.NoError(t, err)
	assert.EqualValues(t, 3, f.basic.Stats().Verifications, "the entry expired with the TTL")

	// The cached identity is each caller's own.
	id, err = f.auth(t, "alice", v["scrypt default"].Password)
	require.NoError(t, err)
	id.Username = "mallory"
	id, err = f.auth(t, "alice", v["scrypt default"].Password)
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Username)
}

// TestBasicPasswordChange: a cached success ends when the stored hash
// changes or the user is deleted, as soon as the store's cache sees it (the
// server's watch flushes it on the change notification; here by hand).
func TestBasicPasswordChange(t *testing.T) {
	v := vectors(t)
	f := newBasicFixture(t, authn.BasicConfig{CacheTTL: time.Hour})
	old := v["scrypt default"].Password
	_, err := f.auth(t, "alice", old)
	require.NoError(t, err)

	storetest.Must(t, f.exec, `UPDATE users SET password_hash = '`+v["scrypt utf-8 password"].Hash+`' WHERE username = 'alice'`)
	_, err = f.auth(t, "alice", old)
	require.NoError(t, err, "served from both caches until the change is announced")
	f.cache.Invalidate()
	id, err := f.auth(t, "alice", old)
	requireBasicDeny(t, id, err, authn.ReasonBasicInvalid, old)
	_, err = f.auth(t, "alice", v["scrypt utf-8 password"].Password)
	require.NoError(t, err, "the new password")

	storetest.Must(t, f.exec, `DELETE FROM users WHERE username = 'alice'`)
	f.cache.Invalidate()
	id, err = f.auth(t, "alice", v["scrypt utf-8 password"].Password)
	requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
}

// TestBasicRateLimit: a username gets max_failures wrong passwords, then
// is refused unchecked (even with the right password) until it earns an
// attempt back; a success clears its record; other usernames are not
// affected; and credentials already verified keep working during an
// attack on their username.
func TestBasicRateLimit(t *testing.T) {
	v := vectors(t)
	f := newBasicFixture(t, authn.BasicConfig{MaxFailures: 3, FailureWindow: 30 * time.Second})
	right := v["pbkdf2 260000"].Password
	_, err := f.auth(t, "alice", v["scrypt default"].Password) // cached before the attack
	require.NoError(t, err)

	for range 3 {
		id, err := f.auth(t, "bob", "guess")
		requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
	}
	before := f.basic.Stats().Verifications
	id, err := f.auth(t, "bob", right)
	requireBasicDeny(t, id, err, authn.ReasonBasicRateLimited, right)
	id, err = f.auth(t, "bob", "guess")
	requireBasicDeny(t, id, err, authn.ReasonBasicRateLimited)
	assert.Equal(t, before, f.basic.Stats().Verifications, "refused without computing a hash")
	assert.EqualValues(t, 2, f.basic.Stats().RateLimited)

	// Others are unaffected, unknown usernames are limited alike.
	_, err = f.auth(t, "alice", v["scrypt default"].Password)
	require.NoError(t, err)
	for range 3 {
		id, err := f.auth(t, "ghost", "guess")
		requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
	}
	id, err = f.auth(t, "ghost", "guess")
	requireBasicDeny(t, id, err, authn.ReasonBasicRateLimited)

	// An attempt every window/max_failures: 10s.
	f.clock.Advance(9 * time.Second)
	id, err = f.auth(t, "bob", right)
	requireBasicDeny(t, id, err, authn.ReasonBasicRateLimited)
	f.clock.Advance(time.Second)
	id, err = f.auth(t, "bob", right)
	require.NoError(t, err)
	require.Equal(t, "bob", id.Username)
	// The success cleared bob's failures: a full burst again.
	for range 3 {
		id, err := f.auth(t, "bob", "guess")
		requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
	}
}

// TestBasicRateLimitConcurrent: concurrent guesses cannot overrun the
// burst, because an attempt is taken before the hash runs.
func TestBasicRateLimitConcurrent(t *testing.T) {
	f := newBasicFixture(t, authn.BasicConfig{MaxFailures: 4, MaxConcurrent: 2})
	var wg sync.WaitGroup
	reasons := make([]authz.Reason, 16)
	for i := range reasons {
		wg.Go(func() {
			_, err := f.basic.Authenticate(context.Background(), mlflowRequest(t, basicHost, basicHeader("bob", "guess")))
			if ce, ok := authz.AsCredentialError(err); ok {
				reasons[i] = ce.Reason
			}
		})
	}
	wg.Wait()
	checked := 0
	for _, r := range reasons {
		if r == authn.ReasonBasicInvalid {
			checked++
		} else {
			require.Equal(t, authn.ReasonBasicRateLimited, r)
		}
	}
	assert.Equal(t, 4, checked, "exactly max_failures guesses were checked")
	assert.EqualValues(t, 4, f.basic.Stats().Verifications)
}

// TestBasicUnknownUserCostsAPasswordCheck: an unknown username runs one
// scrypt check with werkzeug's default parameters, like a wrong password
// for a user with a default hash, so the time of the answer does not tell
// which usernames exist.
func TestBasicUnknownUserCostsAPasswordCheck(t *testing.T) {
	f := newBasicFixture(t, authn.BasicConfig{MaxFailures: 100})
	timeOf := func(user string) time.Duration {
		start := time.Now()
		id, err := f.auth(t, user, "wrong-password")
		took := time.Since(start)
		requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
		return took
	}
	var known, unknown []time.Duration
	for i := range 5 {
		before := f.basic.Stats().Verifications
		known = append(known, timeOf("alice"))
		unknown = append(unknown, timeOf("nobody-"+string(rune('a'+i))))
		assert.Equal(t, before+2, f.basic.Stats().Verifications, "one hash each")
	}
	slices.Sort(known)
	slices.Sort(unknown)
	k, u := known[2], unknown[2]
	t.Logf("median: wrong password %v, unknown user %v", k, u)
	assert.InDelta(t, 1.0, float64(u)/float64(k), 0.5, "unknown user %v vs wrong password %v", u, k)
}

// TestBasicStoreDown: a store that cannot be read is an infrastructure
// failure (503), never a refused credential (401), and never a success.
func TestBasicStoreDown(t *testing.T) {
	f := newBasicFixture(t, authn.BasicConfig{})
	f.st.Close()
	id, err := f.auth(t, "alice", "alice-s3cret-pass")
	require.Nil(t, id)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, jwtStatus(err))
	require.ErrorIs(t, err, store.ErrUnavailable)
}

// TestBasicDeadline: a check that cannot get a hashing slot before its
// deadline ends with the context's error (a 503), not a hash.
func TestBasicDeadline(t *testing.T) {
	f := newBasicFixture(t, authn.BasicConfig{MaxConcurrent: 1, MaxFailures: 100})
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = f.basic.Authenticate(ctx, mlflowRequest(t, basicHost, basicHeader("alice", "wrong")))
		})
	}
	wg.Wait()
	deadline := 0
	for _, err := range errs {
		if errors.Is(err, context.DeadlineExceeded) {
			deadline++
		} else {
			_, ok := authz.AsCredentialError(err)
			require.True(t, ok, "error: %v", err)
		}
	}
	assert.Positive(t, deadline, "waiting checks gave up at their deadline")
}

// TestBasicAccessTokenPassword: with basic_password on an issuer, its
// access token is accepted as the password of its own username.
func TestBasicAccessTokenPassword(t *testing.T) {
	k := jwtRSAKey(t)
	ti := newJWTTestIssuer(t, "ml", k)
	clock := newJWTClock()
	cfg := jwtTestConfig(ti.URL)
	cfg.BasicPassword = true
	other := newJWTTestIssuer(t, "other", k)
	otherCfg := jwtTestConfig(other.URL)
	otherCfg.Name = "other"
	j := newTestJWT(t, clock, cfg, otherCfg)
	f := newBasicFixture(t, authn.BasicConfig{}, authn.WithBasicTokens(j), authn.WithBasicClock(clock.Now))
	token := authntest.Token(t, k, jwtUserClaims(ti.URL))

	id, err := f.auth(t, "alice", token)
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Username)
	assert.Equal(t, "basic_token", id.Method)
	assert.Equal(t, ti.URL, id.Issuer)
	assert.Equal(t, []string{"team-a", "org/team-b"}, id.Groups, "the token's identity")
	assert.Zero(t, f.basic.Stats().Verifications, "no password hash for a token")

	id, err = f.auth(t, "bob", token)
	requireBasicDeny(t, id, err, authn.ReasonBasicTokenUserMismatch, token)

	expired := jwtUserClaims(ti.URL)
	expired["exp"] = jwtTestNow.Add(-time.Hour).Unix()
	id, err = f.auth(t, "alice", authntest.Token(t, k, expired))
	requireBasicDeny(t, id, err, authn.ReasonTokenExpired)

	// An issuer without basic_password: the token is just a (wrong) password.
	id, err = f.auth(t, "alice", authntest.Token(t, k, jwtUserClaims(other.URL)))
	requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
	assert.EqualValues(t, 1, f.basic.Stats().Verifications)
}

// TestBasicNeedsAStore: Basic on for some host without a store is a
// configuration error.
func TestBasicNeedsAStore(t *testing.T) {
	_, err := authn.NewBasic(nil, authn.BasicConfig{}, []string{basicHost})
	require.Error(t, err)
	b, err := authn.NewBasic(nil, authn.BasicConfig{}, nil, authn.WithBasicLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	_, err = b.Authenticate(t.Context(), mlflowRequest(t, basicHost, basicHeader("a", "b")))
	ce, ok := authz.AsCredentialError(err)
	require.True(t, ok)
	assert.Equal(t, authn.ReasonBasicDisabled, ce.Reason)
	_, err = authn.NewBasic(nil, authn.BasicConfig{MaxFailures: -1}, nil)
	require.ErrorContains(t, err, "max_failures")
}

// TestBasicExpiredPassword: mlflow-oidc-auth stores its users' access
// tokens as password hashes with a password_expiration; an expired one is
// refused like a wrong password, cached or not.
func TestBasicExpiredPassword(t *testing.T) {
	v := vectors(t)["pbkdf2 utf-8 password"]
	path := filepath.Join(t.TempDir(), "mlflow_oidc_auth.db")
	require.NoError(t, sqlite.Migrate(t.Context(), path))
	exec := storetest.SQLiteExec(t, path)
	require.NoError(t, storetest.AddPasswordExpiration(t.Context(), exec))
	// jwtTestNow is 2026-01-01T00:00:00Z; SQLAlchemy writes naive UTC.
	storetest.Must(t, exec, `INSERT INTO users (id, username, password_hash, password_expiration) VALUES
		(1, 'alice', '`+v.Hash+`', '2026-01-01 00:10:00.000000'),
		(2, 'bob', '`+v.Hash+`', '2025-12-31 23:59:59.000000'),
		(3, 'carol', '`+v.Hash+`', NULL)`)
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: path})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	clock := newJWTClock()
	b, err := authn.NewBasic(cache.New(st, cache.Options{}), authn.BasicConfig{CacheTTL: time.Hour}, []string{basicHost},
		authn.WithBasicClock(clock.Now))
	require.NoError(t, err)
	auth := func(user string) (*authz.Identity, error) {
		return b.Authenticate(t.Context(), mlflowRequest(t, basicHost, basicHeader(user, v.Password)))
	}

	_, err = auth("alice")
	require.NoError(t, err, "expires in ten minutes")
	_, err = auth("carol")
	require.NoError(t, err, "no expiration")
	id, err := auth("bob")
	requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)

	clock.Advance(10 * time.Minute)
	id, err = auth("alice")
	requireBasicDeny(t, id, err, authn.ReasonBasicInvalid)
	assert.EqualValues(t, 4, b.Stats().Verifications, "the cached success ended with the expiry")
}

// MLflow's published default admin password never signs in, even where
// the hash in the database matches it (a database its basic-auth app
// created), and the operator is told which user still has it.
func TestBasicRefusesMLflowDefaultAdminPassword(t *testing.T) {
	f := newBasicFixture(t, authn.BasicConfig{})
	// pbkdf2_hmac("sha256", b"password1234", b"mlflowdefault", 1000), as
	// werkzeug writes it.
	storetest.Must(t, f.exec, `INSERT INTO users (id, username, password_hash, is_admin) VALUES
		(10, 'admin', 'pbkdf2:sha256:1000$mlflowdefault$4b72f4de1857711543d311b714efefa0dcccd39febdf36bab7e15d1aa9ebdd40', true)`)
	id, err := f.auth(t, "admin", "password1234")
	requireBasicDeny(t, id, err, authn.ReasonBasicInvalid, "password1234")
	assert.Contains(t, f.logs.String(), "published default admin password")
	assert.Contains(t, f.logs.String(), `"user":"admin"`)
	assert.Equal(t, uint64(1), f.basic.Stats().Failures)
}
