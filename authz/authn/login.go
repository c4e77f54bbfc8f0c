package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Reasons of the login's own answers. The 302s are denies only in Envoy's
// sense (Check answers them itself); the 400s are pages that offer a fresh
// login, never another redirect, so a broken flow cannot loop.
const (
	ReasonLoginComplete        authz.Reason = "login_complete"
	ReasonLoggedOut            authz.Reason = "logged_out"
	ReasonLoginStateInvalid    authz.Reason = "login_state_invalid"
	ReasonLoginStateExpired    authz.Reason = "login_state_expired"
	ReasonLoginProviderError   authz.Reason = "login_provider_error"
	ReasonLoginCodeRejected    authz.Reason = "login_code_rejected"
	ReasonLoginIDTokenInvalid  authz.Reason = "login_id_token_invalid"
	ReasonLoginNonceMismatch   authz.Reason = "login_nonce_mismatch"
	ReasonLoginTokenRefused    authz.Reason = "login_token_refused"
	ReasonLoginSessionTooLarge authz.Reason = "login_session_too_large"
)

// Login defaults.
const (
	LoginDefaultCallbackPath = "/_authz/callback"
	LoginDefaultLogoutPath   = "/_authz/logout"
	// maxPendingLogins is how many unfinished logins a browser may have at
	// once (one login-state cookie each, e.g. several tabs). Beyond that
	// the next login clears them all, so cookies cannot pile up into a 431.
	maxPendingLogins = 4
	// maxReturnPath bounds the URL a login returns to.
	maxReturnPath = 2048
)

var defaultScopes = []string{"openid", "profile", "email"}

// LoginConfig is one application's browser login (config key
// apps[].login): the OpenID Connect authorization-code flow with PKCE,
// run by Check itself through a confidential client.
type LoginConfig struct {
	// Enabled turns the login on.
	Enabled bool `yaml:"enabled"`
	// Issuer names the issuer (issuers[].name, or its issuer URL) to log in
	// with. Defaults to the only issuer when there is one.
	Issuer string `yaml:"issuer"`
	// ClientID is the confidential client registered at the issuer.
	ClientID string `yaml:"client_id"`
	// ClientSecretFile or ClientSecretEnv (exactly one) holds the client
	// secret: a mounted Secret file or an environment variable, never a
	// value in the configuration itself.
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	// Scopes requested; openid is always included. Defaults to openid,
	// profile, email.
	Scopes []string `yaml:"scopes"`
	// CallbackPath is the redirect URI's path on every host of the app.
	CallbackPath string `yaml:"callback_path"`
	// LogoutPath ends the session.
	LogoutPath string `yaml:"logout_path"`
	// PostLogoutRedirectURI is where the identity provider sends the
	// browser after logout. Defaults to https://<host>/.
	PostLogoutRedirectURI string `yaml:"post_logout_redirect_uri"`
}

// Validate checks c, for the configuration loader. It reads no secret.
func (c LoginConfig) Validate() error {
	_, err := c.compile()
	return err
}

func (c LoginConfig) compile() (LoginConfig, error) {
	if c.ClientID == "" {
		return c, errors.New("client_id: required")
	}
	if (c.ClientSecretFile == "") == (c.ClientSecretEnv == "") {
		return c, errors.New("client_secret_file, client_secret_env: exactly one is required (the secret itself never goes in the configuration)")
	}
	if !slices.Contains(c.Scopes, "openid") {
		if len(c.Scopes) == 0 {
			c.Scopes = defaultScopes
		} else {
			c.Scopes = append([]string{"openid"}, c.Scopes...)
		}
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			return c, fmt.Errorf("scopes: %q is not a scope token", s)
		}
	}
	if c.CallbackPath == "" {
		c.CallbackPath = LoginDefaultCallbackPath
	}
	if c.LogoutPath == "" {
		c.LogoutPath = LoginDefaultLogoutPath
	}
	for _, p := range []struct{ key, v string }{{"callback_path", c.CallbackPath}, {"logout_path", c.LogoutPath}} {
		if canon, reason := authz.CanonicalPath(p.v); reason != "" || canon != p.v || strings.ContainsAny(p.v, "%?") {
			return c, fmt.Errorf("%s: %q is not a plain absolute path", p.key, p.v)
		}
	}
	if c.CallbackPath == c.LogoutPath {
		return c, errors.New("callback_path, logout_path: must differ")
	}
	if c.PostLogoutRedirectURI != "" {
		if err := checkHTTPURL(c.PostLogoutRedirectURI); err != nil {
			return c, fmt.Errorf("post_logout_redirect_uri: %w", err)
		}
	}
	return c, nil
}

// LoginOption configures NewLogin.
type LoginOption func(*loginOptions)

type loginOptions struct {
	lookupEnv func(string) (string, bool)
	cacheSize int
	cacheTTL  time.Duration
}

// WithLoginEnv sets how ClientSecretEnv is looked up (os.LookupEnv by
// default).
func WithLoginEnv(lookup func(string) (string, bool)) LoginOption {
	return func(o *loginOptions) { o.lookupEnv = lookup }
}

// WithSessionCache sizes the cache of opened session cookies (the token
// cache's settings). Zero values keep the defaults.
func WithSessionCache(size int, ttl time.Duration) LoginOption {
	return func(o *loginOptions) { o.cacheSize, o.cacheTTL = size, ttl }
}

// Login is one application's browser login. It implements authz.Login
// (its endpoints and the redirect to the identity provider), and opens
// and refreshes its sessions for Sessions. It is safe for concurrent use.
//
// It keeps no state between requests but caches: a login's progress
// lives in a sealed cookie per attempt (so two tabs may log in at once and
// any replica can finish what another started), and the session lives in
// a sealed cookie that any replica with the same keys can open.
type Login struct {
	cfg    LoginConfig
	secret string
	iss    *issuer
	jwt    *JWT
	keys   *sessionKeys
	clock  func() time.Time
	log    *slog.Logger

	provider   atomic.Pointer[providerEndpoints]
	discovery  singleflight.Group
	refreshes  singleflight.Group
	cache      *TokenCache
	flowPrefix string
}

// providerEndpoints are the parts of the issuer's discovery document the
// flow needs (OpenID Connect Discovery 1.0 section 3).
type providerEndpoints struct {
	Issuer        string `json:"issuer"`
	Authorization string `json:"authorization_endpoint"`
	Token         string `json:"token_endpoint"`
	EndSession    string `json:"end_session_endpoint"`
}

// NewLogin builds the login of one application from cfg, logging in with
// the issuer of jwt that cfg names and sealing cookies with the keys of
// session. It reads the client secret now; the issuer's endpoints are
// discovered on first use, so a provider that is down at start-up delays
// logins, not the service.
func NewLogin(jwt *JWT, session SessionConfig, cfg LoginConfig, opts ...LoginOption) (*Login, error) {
	o := loginOptions{lookupEnv: os.LookupEnv}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("authn: login: %w", err)
	}
	if jwt == nil {
		return nil, errors.New("authn: login: issuer: no issuers are configured")
	}
	iss, err := jwt.loginIssuer(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("authn: login: issuer: %w", err)
	}
	secret, err := readSecret(cfg, o.lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("authn: login: %w", err)
	}
	keys, err := loadSessionKeys(session)
	if err != nil {
		return nil, fmt.Errorf("authn: session: %w", err)
	}
	return &Login{
		cfg:        cfg,
		secret:     secret,
		iss:        iss,
		jwt:        jwt,
		keys:       keys,
		clock:      jwt.clock,
		log:        iss.keys.logger,
		cache:      NewTokenCache(o.cacheSize, o.cacheTTL),
		flowPrefix: keys.cfg.CookieName + "-login-",
	}, nil
}

// loginIssuer finds the issuer a login names: by name or issuer URL, or
// the only one when the name is empty.
func (j *JWT) loginIssuer(name string) (*issuer, error) {
	if name == "" {
		if len(j.list) != 1 {
			return nil, errors.New("several issuers are configured; name the one to log in with")
		}
		return j.list[0], nil
	}
	for _, iss := range j.list {
		if iss.cfg.Name == name || iss.cfg.Issuer == name {
			return iss, nil
		}
	}
	return nil, fmt.Errorf("%q is not a configured issuer", name)
}

func readSecret(cfg LoginConfig, lookupEnv func(string) (string, bool)) (string, error) {
	if cfg.ClientSecretFile != "" {
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return "", fmt.Errorf("client_secret_file: %w", err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("client_secret_file: %s is empty", cfg.ClientSecretFile)
	}
	s, ok := lookupEnv(cfg.ClientSecretEnv)
	if !ok || s == "" {
		return "", fmt.Errorf("client_secret_env: %s is not set", cfg.ClientSecretEnv)
	}
	return s, nil
}

// CookieName is the session cookie's name.
func (l *Login) CookieName() string { return l.keys.cfg.CookieName }

// Intercept implements authz.Login: it answers the callback and the
// logout path.
func (l *Login) Intercept(ctx context.Context, r *authz.Request) (authz.Decision, bool) {
	switch r.Path {
	case l.cfg.CallbackPath:
		return l.callback(ctx, r), true
	case l.cfg.LogoutPath:
		return l.logout(ctx, r), true
	}
	return authz.Decision{}, false
}

// Challenge implements authz.Login. A 401 on a top-level navigation
// becomes the redirect to the identity provider; any other 401 stays a
// 401 (API clients and the UI's own XHRs get JSON, never a login page).
// Either way a refused session cookie is cleared.
func (l *Login) Challenge(ctx context.Context, r *authz.Request, d authz.Decision) (authz.Decision, bool) {
	var clear []authz.Header
	switch d.Reason {
	case ReasonSessionInvalid, ReasonSessionUnknownKey, ReasonSessionExpired, ReasonSessionRefreshFailed:
		clear = []authz.Header{{Name: "set-cookie", Value: setCookie(l.CookieName(), "", 0)}}
	}
	if !isNavigation(r) {
		d.ResponseHeaders = slices.Concat(d.ResponseHeaders, clear)
		return d, false
	}
	out := l.startLogin(ctx, r)
	out.ResponseHeaders = append(out.ResponseHeaders, clear...)
	return out, true
}

// flowState is what a login-state cookie holds: the proof that this
// browser started the login with this state, and what finishing it needs.
type flowState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"` // PKCE code_verifier (RFC 7636)
	Return   string `json:"r"` // path and query to return to
	Expiry   int64  `json:"e"`
}

// decodeFlowCookie opens a login-state cookie sealed for host. It is the
// parser the login-state fuzz target drives.
func decodeFlowCookie(ring *keyRing, host, value string) (*flowState, error) {
	var f flowState
	if err := ring.openState(purposeLogin, host, value, &f); err != nil {
		return nil, err
	}
	if len(f.State) < stateBytesEncoded || f.Nonce == "" || f.Verifier == "" {
		return nil, errSealMalformed
	}
	return &f, nil
}

const stateBytesEncoded = 43 // base64url of 32 random bytes

// randomToken is 32 random bytes, base64url: a state or a nonce.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// flowCookieName names the login-state cookie of one attempt after its
// state, so concurrent logins in one browser keep separate cookies.
func (l *Login) flowCookieName(state string) string {
	return l.flowPrefix + state[:16]
}

// redirectURI is the callback on the host (and port) the browser used.
// The provider only accepts the redirect URIs registered for the client,
// so a forged Host cannot send a code elsewhere.
func (l *Login) redirectURI(r *authz.Request) string {
	return "https://" + requestAuthority(r) + l.cfg.CallbackPath
}

func (l *Login) oauth(ep *providerEndpoints, redirectURI string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     l.cfg.ClientID,
		ClientSecret: l.secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:  ep.Authorization,
			TokenURL: ep.Token,
			// client_secret_basic, the default of OpenID Connect Core 1.0
			// section 9; Keycloak accepts it for confidential clients.
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		RedirectURL: redirectURI,
		Scopes:      l.cfg.Scopes,
	}
}

// startLogin answers a navigation that needs a login: a 302 to the
// provider's authorization endpoint with a fresh state, nonce and PKCE
// challenge, and the login-state cookie that binds them to this browser.
func (l *Login) startLogin(ctx context.Context, r *authz.Request) authz.Decision {
	ep, err := l.endpoints(ctx)
	if err != nil {
		return l.page(http.StatusServiceUnavailable, authz.ReasonUnavailable,
			"The identity provider cannot be reached right now. Try again in a moment.", "")
	}
	if !validAuthority(requestAuthority(r)) {
		return l.page(http.StatusBadRequest, authz.ReasonBadRequest, "The request names no valid host.", "")
	}
	now := l.clock()
	f := flowState{
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: oauth2.GenerateVerifier(),
		Return:   returnPath(r),
		Expiry:   now.Add(l.keys.cfg.LoginTimeout).Unix(),
	}
	value, err := l.keys.ring.sealState(purposeLogin, r.Host, f)
	if err != nil {
		return l.page(http.StatusServiceUnavailable, authz.ReasonInternal, "Sign-in could not be started. Try again.", "")
	}
	location := l.oauth(ep, l.redirectURI(r)).AuthCodeURL(f.State,
		oauth2.S256ChallengeOption(f.Verifier), oauth2.SetAuthURLParam("nonce", f.Nonce))
	d := authz.Deny(http.StatusFound, authz.ReasonLoginRequired, "log in at the identity provider")
	d.ResponseHeaders = []authz.Header{
		{Name: "location", Value: location},
		{Name: "cache-control", Value: "no-store"},
	}
	if pending := cookieNames(r.Header("cookie"), l.flowPrefix); len(pending) >= maxPendingLogins {
		for _, name := range pending {
			d.ResponseHeaders = append(d.ResponseHeaders, authz.Header{Name: "set-cookie", Value: setCookie(name, "", 0)})
		}
	}
	d.ResponseHeaders = append(d.ResponseHeaders, authz.Header{Name: "set-cookie",
		Value: setCookie(l.flowCookieName(f.State), value, l.keys.cfg.LoginTimeout)})
	return d
}

// httpContext makes x/oauth2 use the issuer's HTTP client, bounded by its
// http_timeout.
func (l *Login) httpContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, l.iss.keys.client)
}

// endpoints returns the provider's endpoints, discovering them once.
func (l *Login) endpoints(ctx context.Context) (*providerEndpoints, error) {
	if ep := l.provider.Load(); ep != nil {
		return ep, nil
	}
	ch := l.discovery.DoChan("", func() (any, error) {
		if ep := l.provider.Load(); ep != nil {
			return ep, nil
		}
		u := l.iss.cfg.DiscoveryURL
		if u == "" {
			u = strings.TrimSuffix(l.iss.cfg.Issuer, "/") + "/.well-known/openid-configuration"
		}
		body, err := l.iss.keys.get(context.WithoutCancel(ctx), u)
		if err != nil {
			return nil, fmt.Errorf("authn: login: discovery: %w", err)
		}
		var ep providerEndpoints
		if err := json.Unmarshal(body, &ep); err != nil {
			return nil, fmt.Errorf("authn: login: discovery: %w", err)
		}
		if ep.Issuer != l.iss.cfg.Issuer {
			return nil, fmt.Errorf("authn: login: discovery names issuer %q", ep.Issuer)
		}
		for _, e := range []string{ep.Authorization, ep.Token} {
			if err := checkHTTPURL(e); err != nil {
				return nil, fmt.Errorf("authn: login: discovery: %w", err)
			}
		}
		if ep.EndSession != "" && checkHTTPURL(ep.EndSession) != nil {
			ep.EndSession = ""
		}
		l.provider.Store(&ep)
		return &ep, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			l.log.LogAttrs(ctx, slog.LevelWarn, "login discovery failed", slog.String("issuer", l.iss.cfg.Name), slog.String("error", res.Err.Error()))
			return nil, res.Err
		}
		return res.Val.(*providerEndpoints), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// page is a deny for a person: an HTML page with a link that starts a
// fresh login (a plain navigation to back), never a redirect. An empty
// back offers no link.
func (l *Login) page(status int, reason authz.Reason, msg, back string, headers ...authz.Header) authz.Decision {
	d := authz.Deny(status, reason, msg)
	link := ""
	if back != "" {
		link = `<p><a href="` + html.EscapeString(back) + `">Sign in again</a></p>`
	}
	d.Body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title></head><body>` +
		`<h1>Sign-in failed</h1><p>` + html.EscapeString(msg) + `</p>` + link +
		`<p><small>reason: ` + html.EscapeString(string(reason)) + `</small></p></body></html>`
	d.ContentType = "text/html; charset=utf-8"
	d.ResponseHeaders = append([]authz.Header{
		{Name: "cache-control", Value: "no-store"},
		{Name: "content-security-policy", Value: "default-src 'none'"},
		{Name: "x-content-type-options", Value: "nosniff"},
	}, headers...)
	return d
}
