// Package testidp is an OpenID provider for tests: the OpenID-certified
// github.com/zitadel/oidc/v3 server (pkg/op) over in-memory storage,
// speaking the real protocol over HTTP on loopback: discovery, authorize
// with a login form, the token endpoint (authorization code with PKCE,
// refresh), JWKS and end-session.
//
// Its tokens are shaped like Keycloak's: RS256 JWT access tokens with
// typ "Bearer", preferred_username, groups (full paths) and
// realm_access.roles, and an audience mapper's extra audiences. A test
// changes a user's groups or disables the user to see what a refresh
// does, and counts the token requests it served.
package testidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is a person who can log in with a password.
type User struct {
	Username string
	Password string
	// Groups as Keycloak's group mapper writes them with full paths.
	Groups []string
	// Roles are realm roles.
	Roles []string
}

// Client is a confidential OAuth client.
type Client struct {
	ID     string
	Secret string
	// RedirectURIs and PostLogoutRedirectURIs are matched exactly.
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	// Audience is added to the client id in aud, as Keycloak's audience
	// mapper does.
	Audience []string
}

// Options configure Start.
type Options struct {
	Users   []User
	Clients []Client
	// AccessTokenTTL is the access token lifetime; Keycloak's default is
	// 5 minutes.
	AccessTokenTTL time.Duration
}

// Provider is a running OpenID provider.
type Provider struct {
	// URL is the issuer.
	URL string

	srv *http.Server
	st  *storage
}

// Start listens on addr ("127.0.0.1:0") and serves the provider.
func Start(addr string, o Options) (*Provider, error) {
	if o.AccessTokenTTL == 0 {
		o.AccessTokenTTL = 5 * time.Minute
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("testidp: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testidp: %w", err)
	}
	issuer := "http://" + ln.Addr().String()
	st := &storage{
		issuer:   issuer,
		key:      key,
		keyID:    randomID(),
		ttl:      o.AccessTokenTTL,
		users:    map[string]*User{},
		clients:  map[string]*Client{},
		requests: map[string]*authRequest{},
		codes:    map[string]string{},
		refresh:  map[string]*refreshToken{},
	}
	for _, u := range o.Users {
		st.users[u.Username] = &u
	}
	for _, c := range o.Clients {
		st.clients[c.ID] = &c
	}
	var cryptoKey [32]byte
	_, _ = rand.Read(cryptoKey[:])
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                cryptoKey,
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("testidp: %w", err)
	}
	login := &loginForm{st: st, callback: op.AuthCallbackURL(provider)}
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux := http.NewServeMux()
	mux.Handle("/login", interceptor.Handler(login))
	mux.HandleFunc("/logged-out", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("signed out")) })
	mux.Handle("/", provider)
	p := &Provider{URL: issuer, st: st, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the provider.
func (p *Provider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

// SetGroups replaces a user's groups; tokens issued from now on carry them.
func (p *Provider) SetGroups(username string, groups []string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.users[username].Groups = groups
}

// Disable disables a user: the login form and refresh tokens refuse them.
func (p *Provider) Disable(username string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.disabled = append(p.st.disabled, username)
}

// Refreshes counts the refresh-token grants asked for.
func (p *Provider) Refreshes() int { return int(p.st.refreshes.Load()) }

// EndSessions counts the end-session requests that reached storage.
func (p *Provider) EndSessions() int { return int(p.st.endSessions.Load()) }

// storage is the in-memory op.Storage.
type storage struct {
	issuer string
	key    *rsa.PrivateKey
	keyID  string
	ttl    time.Duration

	mu       sync.Mutex
	users    map[string]*User
	disabled []string
	clients  map[string]*Client
	requests map[string]*authRequest
	codes    map[string]string // code → auth request id
	refresh  map[string]*refreshToken

	refreshes   atomic.Int64
	endSessions atomic.Int64
}

var errNotFound = errors.New("testidp: not found")

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// authRequest is one authorization request and, once the user logged in,
// who it is for.
type authRequest struct {
	id        string
	req       oidc.AuthRequest
	audience  []string
	user      string
	authTime  time.Time
	done      bool
	challenge *oidc.CodeChallenge
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string                { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                   { return a.req.Scopes }
func (a *authRequest) GetState() string                      { return a.req.State }
func (a *authRequest) GetSubject() string                    { return a.user }
func (a *authRequest) Done() bool                            { return a.done }

// refreshToken is what a refresh token stands for.
type refreshToken struct {
	user, client string
	audience     []string
	scopes       []string
	authTime     time.Time
}

func (r *refreshToken) GetAMR() []string            { return []string{"pwd"} }
func (r *refreshToken) GetAudience() []string       { return r.audience }
func (r *refreshToken) GetAuthTime() time.Time      { return r.authTime }
func (r *refreshToken) GetClientID() string         { return r.client }
func (r *refreshToken) GetScopes() []string         { return r.scopes }
func (r *refreshToken) GetSubject() string          { return r.user }
func (r *refreshToken) SetCurrentScopes(s []string) { r.scopes = s }

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[req.ClientID]
	if !ok {
		return nil, errNotFound
	}
	a := &authRequest{id: randomID(), req: *req, audience: append([]string{c.ID}, c.Audience...)}
	// Keycloak gives every code flow a refresh token bound to the user's
	// session; zitadel's server gives one only for offline_access.
	if !slices.Contains(a.req.Scopes, oidc.ScopeOfflineAccess) {
		a.req.Scopes = append(slices.Clone(a.req.Scopes), oidc.ScopeOfflineAccess)
	}
	if req.CodeChallenge != "" {
		a.challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.requests[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.requests[id]; ok {
		return a, nil
	}
	return nil, errNotFound
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.requests[s.codes[code]]; ok {
		return a, nil
	}
	return nil, errNotFound
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest runs once the code is exchanged: the code is then
// spent, so a replay is invalid_grant.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return randomID(), time.Now().Add(s.ttl), nil
}

// CreateAccessAndRefreshTokens issues a new refresh token every time and
// retires the one presented, as Keycloak does with "Revoke Refresh Token".
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := &refreshToken{user: req.GetSubject(), audience: req.GetAudience(), scopes: req.GetScopes()}
	switch r := req.(type) {
	case *authRequest:
		rt.client, rt.authTime = r.req.ClientID, r.authTime
	case *refreshToken:
		rt.client, rt.authTime = r.client, r.authTime
	}
	if current != "" {
		delete(s.refresh, current)
	}
	token := randomID()
	s.refresh[token] = rt
	return randomID(), token, time.Now().Add(s.ttl), nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.refreshes.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok || slices.Contains(s.disabled, rt.user) {
		return nil, op.ErrInvalidRefreshToken
	}
	cp := *rt
	return &cp, nil
}

func (s *storage) TerminateSession(_ context.Context, user, client string) error {
	s.endSessions.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for token, rt := range s.refresh {
		if rt.client == client && (user == "" || rt.user == user) {
			delete(s.refresh, token)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, token, _, _ string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, token)
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt, ok := s.refresh[token]; ok {
		return rt.user, token, nil
	}
	return "", "", op.ErrInvalidRefreshToken
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{id: s.keyID, key: s.key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{signingKey{id: s.keyID, key: s.key}}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, errNotFound
	}
	return &client{c: c, issuer: s.issuer}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[id]; ok && c.Secret == secret {
		return nil
	}
	return errors.New("testidp: invalid client secret")
}

func (s *storage) user(name string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[name]
	if !ok {
		return User{}, false
	}
	return *u, true
}

func (s *storage) SetUserinfoFromScopes(_ context.Context, info *oidc.UserInfo, user, _ string, _ []string) error {
	info.Subject = user
	info.PreferredUsername = user
	return nil
}

func (s *storage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, _, subject, _ string) error {
	return s.SetUserinfoFromScopes(ctx, info, subject, "", nil)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, r *oidc.IntrospectionResponse, _, subject, client string) error {
	r.Active, r.Subject, r.ClientID = true, subject, client
	return nil
}

// GetPrivateClaimsFromScopes writes the Keycloak-shaped claims of the
// access token: read at every issue, so a changed group shows up at the
// next refresh.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, user, client string, _ []string) (map[string]any, error) {
	u, ok := s.user(user)
	if !ok {
		return nil, errNotFound
	}
	return map[string]any{
		"typ":                "Bearer",
		"azp":                client,
		"preferred_username": u.Username,
		"groups":             u.Groups,
		"realm_access":       map[string]any{"roles": u.Roles},
	}, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("testidp: JWT profile is not supported")
}

func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s *storage) Health(context.Context) error { return nil }

// client is a Client as op.Client: a confidential web client with
// client_secret_basic and JWT access tokens.
type client struct {
	c      *Client
	issuer string
}

func (c *client) GetID() string                    { return c.c.ID }
func (c *client) RedirectURIs() []string           { return c.c.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.c.PostLogoutRedirectURIs }
func (c *client) ApplicationType() op.ApplicationType {
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string           { return c.issuer + "/login?id=" + id }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return 5 * time.Minute }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }

// loginForm is the provider's login page: a username and password form.
type loginForm struct {
	st       *storage
	callback func(context.Context, string) string
}

func (l *loginForm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.FormValue("id")
	if r.Method != http.MethodPost {
		l.render(w, id, "", http.StatusOK)
		return
	}
	u, ok := l.st.user(r.FormValue("username"))
	l.st.mu.Lock()
	a, known := l.st.requests[id]
	valid := ok && u.Password == r.FormValue("password") && !slices.Contains(l.st.disabled, u.Username)
	if known && valid {
		a.user, a.done, a.authTime = u.Username, true, time.Now()
	}
	l.st.mu.Unlock()
	switch {
	case !known:
		http.Error(w, "unknown login request", http.StatusBadRequest)
	case !valid:
		l.render(w, id, "Invalid username or password.", http.StatusUnauthorized)
	default:
		http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
	}
}

func (l *loginForm) render(w http.ResponseWriter, id, msg string, status int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<!doctype html><html><head><title>Sign in to the test realm</title></head><body>
<h1 id="kc-page-title">Sign in to your account</h1><p id="error">%s</p>
<form id="kc-form-login" method="post" action="/login">
<input type="hidden" name="id" value="%s">
<label>Username <input id="username" name="username" autocomplete="off"></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="kc-login" type="submit">Sign In</button>
</form></body></html>`, html.EscapeString(msg), html.EscapeString(id))
}
