package authn

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
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

// apiSegments are the first path segments of what the MLflow UI, Phoenix
// and Kiali fetch from script, and of MLflow's REST API; under a prefix
// (MLflow's --static-prefix, Kiali's web_root) they are second.
var apiSegments = map[string]bool{"ajax-api": true, "api": true, "graphql": true, "get-artifact": true, "v1": true}

// isNavigation reports whether r is a top-level page load by a person: a
// GET or HEAD that accepts HTML, carries no Authorization and is not a
// script's request. Only those are sent to the identity provider; the
// rest get a 401, which a script can act on.
func isNavigation(r *authz.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header("authorization") != "" || r.Header("x-requested-with") != "" {
		return false
	}
	// Fetch Metadata (https://www.w3.org/TR/fetch-metadata/): when the
	// browser says how the request was made, only "navigate" is a page.
	if mode := r.Header("sec-fetch-mode"); mode != "" && mode != "navigate" {
		return false
	}
	if !acceptsHTML(r.Header("accept")) {
		return false
	}
	rest := strings.TrimPrefix(r.Path, "/")
	for range 2 {
		seg, tail, _ := strings.Cut(rest, "/")
		if apiSegments[seg] {
			return false
		}
		rest = tail
	}
	return true
}

// acceptsHTML reports whether an Accept header asks for text/html and not
// for JSON. */* alone (fetch's default) is not a page load.
func acceptsHTML(accept string) bool {
	html := false
	for part := range strings.SplitSeq(accept, ",") {
		media, params, _ := strings.Cut(part, ";")
		if q, ok := qValue(params); ok && q == 0 {
			continue // q=0: explicitly not acceptable (RFC 9110 section 12.4.2)
		}
		switch strings.ToLower(strings.TrimSpace(media)) {
		case "application/json":
			return false
		case "text/html":
			html = true
		}
	}
	return html
}

// qValue reads the q parameter of an Accept element's parameters.
func qValue(params string) (float64, bool) {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(k, "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return q, err == nil
		}
	}
	return 0, false
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

// returnPath is the request's own path and query, as the browser sent
// them, when they are a safe place to return to; "/" otherwise.
func returnPath(r *authz.Request) string {
	target := r.Header(":path")
	if target == "" {
		target = (&url.URL{Path: r.Path, RawQuery: r.RawQuery}).RequestURI()
	}
	if !SafeReturnPath(target) {
		return "/"
	}
	return target
}

// SafeReturnPath reports whether target may follow a login or logout as a
// Location: a path and query on this same host, nothing a browser could
// read as another host. Browsers treat "//evil" and "/\evil" as
// scheme-relative URLs to host evil, so both are refused with every
// absolute URL, control character and non-canonical path.
func SafeReturnPath(target string) bool {
	if target == "" || len(target) > maxReturnPath || target[0] != '/' {
		return false
	}
	if len(target) > 1 && (target[1] == '/' || target[1] == '\\') {
		return false
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c < 0x21 || c == 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return false
	}
	path, _, _ := strings.Cut(target, "?")
	_, reason := authz.CanonicalPath(path)
	return reason == ""
}

// validAuthority reports whether a is a plausible host[:port], so it can
// go into a URL unescaped.
func validAuthority(a string) bool {
	if a == "" || len(a) > 255 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-.:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// callback finishes a login: the state must match a login-state cookie of
// this browser (sealed by us for this host, not expired), the code must
// exchange with our PKCE verifier, the ID token must verify with its
// nonce, and the access token must pass exactly as a bearer token would.
// Success is a 302 back to where the login started, with the session
// cookie; every failure is a page offering a fresh login.
func (l *Login) callback(ctx context.Context, r *authz.Request) authz.Decision {
	q, err := r.Query()
	if err != nil || len(q["state"]) != 1 || len(q["code"]) > 1 || len(q["error"]) > 1 {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid, "This sign-in link is not valid.", "/")
	}
	state := q.Get("state")
	if len(state) != stateBytesEncoded {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid, "This sign-in link is not valid.", "/")
	}
	name := l.flowCookieName(state)
	value, n := findCookie(r.Header("cookie"), name)
	if n != 1 {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid,
			"This browser did not start this sign-in, or it was already finished.", "/")
	}
	clearFlow := authz.Header{Name: "set-cookie", Value: setCookie(name, "", 0)}
	f, err := decodeFlowCookie(l.keys.ring, r.Host, value)
	if err != nil || subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) != 1 {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid, "This sign-in link is not valid.", "/", clearFlow)
	}
	back := f.Return
	if !SafeReturnPath(back) {
		back = "/"
	}
	now := l.clock()
	if now.Unix() > f.Expiry {
		return l.page(http.StatusBadRequest, ReasonLoginStateExpired, "This sign-in took too long.", back, clearFlow)
	}
	if e := q.Get("error"); e != "" {
		return l.page(http.StatusBadRequest, ReasonLoginProviderError,
			"The identity provider did not sign you in ("+oauthErrorCode(e)+").", back, clearFlow)
	}
	code := q.Get("code")
	if code == "" {
		return l.page(http.StatusBadRequest, ReasonLoginCodeRejected, "The identity provider sent no authorization code.", back, clearFlow)
	}
	ep, err := l.endpoints(ctx)
	if err != nil {
		return l.page(http.StatusServiceUnavailable, authz.ReasonUnavailable, "The identity provider cannot be reached right now.", back, clearFlow)
	}
	tok, err := l.oauth(ep, l.redirectURI(r)).Exchange(l.httpContext(ctx), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		if rejectedByProvider(err) {
			return l.page(http.StatusBadRequest, ReasonLoginCodeRejected, "The identity provider refused this sign-in (the code was used or has expired).", back, clearFlow)
		}
		l.log.LogAttrs(ctx, slog.LevelWarn, "login code exchange failed", slog.String("issuer", l.iss.cfg.Name), slog.String("error", err.Error()))
		return l.page(http.StatusServiceUnavailable, authz.ReasonUnavailable, "The identity provider cannot be reached right now.", back, clearFlow)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idClaims, cerr := l.verifyIDToken(ctx, rawID, f.Nonce, now)
	if cerr != nil {
		return l.page(http.StatusBadRequest, cerr.Reason, cerr.Message, back, clearFlow)
	}
	id, err := l.jwt.verifyWith(ctx, l.iss, tok.AccessToken, now)
	if err != nil {
		if ce, ok := authz.AsCredentialError(err); ok {
			return l.page(http.StatusBadRequest, ReasonLoginTokenRefused,
				"The identity provider's access token is not accepted here: "+ce.Message+".", back, clearFlow)
		}
		return l.page(http.StatusServiceUnavailable, authz.ReasonUnavailable, "The identity provider's keys cannot be read right now.", back, clearFlow)
	}
	if sub := claimString(idClaims, "sub"); id.Subject != "" && sub != id.Subject {
		return l.page(http.StatusBadRequest, ReasonLoginIDTokenInvalid, "The ID token and the access token name different users.", back, clearFlow)
	}
	st := &sessionState{
		Issuer: l.iss.cfg.Issuer, User: id.Username, Groups: id.Groups, Roles: id.Roles, Admin: id.Admin,
		Expiry: id.Expiry.Unix(), End: now.Add(l.keys.cfg.MaxAge).Unix(), Refresh: tok.RefreshToken,
	}
	cookie, err := l.sealSession(r.Host, st, now)
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelError, "login session does not fit a cookie", slog.String("user", id.Username), slog.Int("groups", len(id.Groups)))
		return l.page(http.StatusBadRequest, ReasonLoginSessionTooLarge,
			"Your account has too many groups or roles to fit a browser session; ask an administrator to trim what the token carries.", back, clearFlow)
	}
	d := authz.Deny(http.StatusFound, ReasonLoginComplete, "signed in")
	d.Identity = st.identity(l.cfg.ClientID)
	d.ResponseHeaders = []authz.Header{
		{Name: "location", Value: back},
		{Name: "cache-control", Value: "no-store"},
		{Name: "set-cookie", Value: cookie},
		clearFlow,
	}
	return d
}

// verifyWith verifies an access token exactly as a bearer token, and
// insists that iss issued it.
func (j *JWT) verifyWith(ctx context.Context, iss *issuer, token string, now time.Time) (*authz.Identity, error) {
	id, err := j.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	if id.Issuer != iss.cfg.Issuer {
		return nil, deny(ReasonTokenUnknownIssuer, "the access token comes from another issuer")
	}
	return id, nil
}

// oauthErrorCode keeps an RFC 6749 error code for a page: its own
// characters only (section 5.2), so nothing a link could inject reaches it.
func oauthErrorCode(e string) string {
	if len(e) > 64 {
		e = e[:64]
	}
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return -1
	}, e)
}

// rejectedByProvider reports whether the token endpoint itself refused
// (a 4xx or an OAuth error), as opposed to being unreachable or failing.
func rejectedByProvider(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	return re.Response == nil || re.Response.StatusCode < 500
}

// httpContext makes x/oauth2 use the issuer's HTTP client, bounded by its
// http_timeout.
func (l *Login) httpContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, l.iss.keys.client)
}

// verifyIDToken checks the ID token as OpenID Connect Core 1.0 section
// 3.1.3.7 asks: the issuer's signature, iss, aud naming our client (and
// azp, when present, being it), exp, and the nonce of this login.
func (l *Login) verifyIDToken(ctx context.Context, raw, nonce string, now time.Time) (map[string]any, *authz.CredentialError) {
	bad := func(msg string) *authz.CredentialError { return deny(ReasonLoginIDTokenInvalid, msg) }
	if raw == "" || len(raw) > JWTMaxTokenSize {
		return nil, bad("The identity provider sent no usable ID token.")
	}
	hdr, _, ok := splitToken(raw)
	if !ok {
		return nil, bad("The ID token is not a signed JWT.")
	}
	claims, err := l.iss.verifySignature(ctx, raw, hdr)
	if err != nil {
		return nil, bad("The ID token's signature does not verify.")
	}
	if claimString(claims, "iss") != l.iss.cfg.Issuer {
		return nil, bad("The ID token comes from another issuer.")
	}
	aud, _ := stringArray(claims["aud"])
	if s, ok := claims["aud"].(string); ok {
		aud = []string{s}
	}
	if !slices.Contains(aud, l.cfg.ClientID) {
		return nil, bad("The ID token is meant for another client.")
	}
	if azp, ok := claims["azp"]; ok && azp != l.cfg.ClientID {
		return nil, bad("The ID token was issued to another client.")
	}
	if typ, ok := claims["typ"]; ok && typ != "ID" {
		// Keycloak types its ID tokens "ID"; other providers leave typ out.
		return nil, bad("The token is not an ID token.")
	}
	exp, ok, malformed := numericDate(claims, "exp")
	if !ok || malformed || !now.Before(exp.Add(JWTClockSkew)) {
		return nil, bad("The ID token has expired.")
	}
	if got := claimString(claims, "nonce"); subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return nil, deny(ReasonLoginNonceMismatch, "The ID token belongs to another sign-in (nonce).")
	}
	return claims, nil
}

// sealSession seals st into a Set-Cookie value, refusing one that would
// not fit a browser's cookie.
func (l *Login) sealSession(host string, st *sessionState, now time.Time) (string, error) {
	value, err := l.keys.ring.sealState(purposeSession, host, st)
	if err != nil {
		return "", err
	}
	name := l.CookieName()
	if len(name)+1+len(value) > SessionMaxCookieSize {
		return "", fmt.Errorf("authn: session: %d bytes do not fit a cookie", len(name)+1+len(value))
	}
	l.cache.Put(value, st.identity(l.cfg.ClientID), time.Unix(min(st.Expiry, st.End), 0), now)
	return setCookie(name, value, time.Unix(st.End, 0).Sub(now)), nil
}

// logout clears the session cookie and sends the browser to the
// provider's end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0
// section 2) with client_id and post_logout_redirect_uri, so the
// provider's own session ends too. Without that endpoint it returns
// straight to the post-logout URI.
func (l *Login) logout(ctx context.Context, r *authz.Request) authz.Decision {
	after := l.cfg.PostLogoutRedirectURI
	if after == "" {
		after = "/"
		if validAuthority(requestAuthority(r)) {
			after = "https://" + requestAuthority(r) + "/"
		}
	}
	location := after
	if ep, err := l.endpoints(ctx); err == nil && ep.EndSession != "" {
		if u, err := url.Parse(ep.EndSession); err == nil {
			q := u.Query()
			q.Set("client_id", l.cfg.ClientID)
			q.Set("post_logout_redirect_uri", after)
			u.RawQuery = q.Encode()
			location = u.String()
		}
	}
	d := authz.Deny(http.StatusFound, ReasonLoggedOut, "signed out")
	d.ResponseHeaders = []authz.Header{
		{Name: "location", Value: location},
		{Name: "cache-control", Value: "no-store"},
		{Name: "set-cookie", Value: setCookie(l.CookieName(), "", 0)},
	}
	return d
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

// session returns the identity of a session cookie, refreshing the
// session when its access token has expired.
func (l *Login) session(ctx context.Context, r *authz.Request, value string) (*authz.Identity, error) {
	now := l.clock()
	if id, ok := l.cache.Get(value, now); ok {
		if id == endedSession {
			return nil, deny(ReasonSessionRefreshFailed, "the session ended; log in again")
		}
		cp := *id
		return &cp, nil
	}
	st, err := decodeSessionCookie(l.keys.ring, r.Host, value)
	if err != nil {
		return nil, err
	}
	if st.Issuer != l.iss.cfg.Issuer {
		return nil, deny(ReasonSessionInvalid, "the session belongs to another issuer; log in again")
	}
	if now.Unix() >= st.End {
		return nil, deny(ReasonSessionExpired, "the session has expired; log in again")
	}
	if now.Unix() < st.Expiry {
		id := st.identity(l.cfg.ClientID)
		l.cache.Put(value, id, time.Unix(min(st.Expiry, st.End), 0), now)
		cp := *id
		return &cp, nil
	}
	if st.Refresh == "" {
		return nil, deny(ReasonSessionExpired, "the session's access has expired and it cannot be refreshed; log in again")
	}
	return l.refresh(ctx, r.Host, value, st)
}

// endedSession marks, in the cache, a session whose refresh the provider
// refused, so a burst of requests with it asks the provider once.
var endedSession = &authz.Identity{Kind: authz.KindAnonymous, Method: sessionMethod}

// refresh renews an expired session with its refresh token: a new access
// token, verified as any bearer token is, so group changes and disabled
// users take effect now. One refresh runs per session however many
// requests wait on it; the old cookie then maps to the renewed session
// (with its Set-Cookie) until the browser sends the new one.
func (l *Login) refresh(ctx context.Context, host, value string, st *sessionState) (*authz.Identity, error) {
	key := tokenKey(value)
	ch := l.refreshes.DoChan(string(key[:]), func() (any, error) {
		// The refresh serves every waiter: one caller's cancellation must
		// not abort it; the issuer's timeout bounds it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.iss.cfg.HTTPTimeout)
		defer cancel()
		return l.doRefresh(fctx, host, value, st)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		cp := *res.Val.(*authz.Identity)
		return &cp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Login) doRefresh(ctx context.Context, host, value string, st *sessionState) (*authz.Identity, error) {
	ended := func(msg string) error {
		now := l.clock()
		l.cache.Put(value, endedSession, time.Unix(st.End, 0), now)
		return deny(ReasonSessionRefreshFailed, msg)
	}
	ep, err := l.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	past := time.Unix(st.Expiry, 0)
	tok, err := l.oauth(ep, "").TokenSource(l.httpContext(ctx), &oauth2.Token{RefreshToken: st.Refresh, Expiry: past}).Token()
	if err != nil {
		if rejectedByProvider(err) {
			return nil, ended("the identity provider ended the session; log in again")
		}
		l.log.LogAttrs(ctx, slog.LevelWarn, "session refresh failed", slog.String("issuer", l.iss.cfg.Name), slog.String("error", err.Error()))
		return nil, fmt.Errorf("authn: session: refresh: %w", err)
	}
	now := l.clock()
	id, err := l.jwt.verifyWith(ctx, l.iss, tok.AccessToken, now)
	if err != nil {
		if ce, ok := authz.AsCredentialError(err); ok {
			return nil, ended("the refreshed access token is not accepted: " + ce.Message)
		}
		return nil, err
	}
	if id.Username != st.User {
		return nil, ended("the refreshed session names another user")
	}
	next := *st
	next.Groups, next.Roles, next.Admin, next.Expiry = id.Groups, id.Roles, id.Admin, id.Expiry.Unix()
	if tok.RefreshToken != "" {
		next.Refresh = tok.RefreshToken
	}
	cookie, err := l.sealSession(host, &next, now)
	if err != nil {
		return nil, ended("the refreshed session does not fit a cookie")
	}
	renewed := next.identity(l.cfg.ClientID)
	renewed.ResponseHeaders = []authz.Header{{Name: "set-cookie", Value: cookie}}
	l.cache.Put(value, renewed, time.Unix(min(next.Expiry, next.End), 0), now)
	return renewed, nil
}
