package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Reasons for denying a bearer token. They are stable: they appear in the
// decision log, the deny body and metric labels.
const (
	ReasonTokenExpired         authz.Reason = "token_expired"
	ReasonTokenNotYetValid     authz.Reason = "token_not_yet_valid"
	ReasonTokenUnknownIssuer   authz.Reason = "token_unknown_issuer"
	ReasonTokenNotJWT          authz.Reason = "token_not_jwt"
	ReasonTokenWrongAudience   authz.Reason = "token_wrong_audience"
	ReasonTokenWrongType       authz.Reason = "token_wrong_type"
	ReasonTokenBadSignature    authz.Reason = "token_bad_signature"
	ReasonTokenAlgNotAllowed   authz.Reason = "token_alg_not_allowed"
	ReasonTokenUnknownKey      authz.Reason = "unknown_signing_key"
	ReasonTokenMalformed       authz.Reason = "token_malformed"
	ReasonTokenTooLarge        authz.Reason = "token_too_large"
	ReasonTokenMissingExp      authz.Reason = "token_missing_exp"
	ReasonTokenMissingUsername authz.Reason = "token_missing_username"
	ReasonTokenBadServiceAcct  authz.Reason = "token_bad_service_account"
)

// JWT limits and defaults.
const (
	// JWTMaxTokenSize is the largest bearer token we parse. Keycloak tokens
	// with many groups run to a few KiB; anything bigger is refused unread so
	// a client cannot make us decode megabytes of JSON per request.
	JWTMaxTokenSize = 16 << 10
	// JWTClockSkew is the tolerance on exp, nbf and iat (the "small leeway"
	// of RFC 7519 section 4.1.4).
	JWTClockSkew = 30 * time.Second
	// JWTDefaultRefreshInterval is how often each issuer's JWKS is re-fetched.
	JWTDefaultRefreshInterval = 5 * time.Minute
	// JWTDefaultMinRefreshInterval bounds JWKS fetches caused by unknown
	// kids that bring no new key, so forged tokens cannot make us hammer the
	// issuer: a sustained flood costs one fetch per interval (12 a minute
	// per replica), and a new key waits at most this long even then.
	// Keycloak's own adapters use 10s (min-time-between-jwks-requests).
	JWTDefaultMinRefreshInterval = 5 * time.Second
	// JWTDefaultHTTPTimeout bounds each discovery or JWKS request.
	JWTDefaultHTTPTimeout = 5 * time.Second
)

// defaultAlgorithms are the asymmetric algorithms Keycloak realm keys sign
// with (RS256 unless configured otherwise). HMAC is never acceptable: the
// realm's HMAC keys are secret to Keycloak, and accepting HS* is how "sign
// with the public key as secret" attacks work (RFC 8725 section 2.1).
var defaultAlgorithms = []string{"RS256", "ES256", "PS256"}

// allowedAlgorithms are the only algorithms a config may list.
var allowedAlgorithms = map[string]jwa.SignatureAlgorithm{
	"RS256": jwa.RS256(), "RS384": jwa.RS384(), "RS512": jwa.RS512(),
	"PS256": jwa.PS256(), "PS384": jwa.PS384(), "PS512": jwa.PS512(),
	"ES256": jwa.ES256(), "ES384": jwa.ES384(), "ES512": jwa.ES512(),
}

// IssuerConfig configures one trusted token issuer (one Keycloak realm).
type IssuerConfig struct {
	// Name identifies the issuer in logs and errors. Defaults to Issuer.
	Name string `yaml:"name"`
	// Issuer is the exact iss claim, scheme and port included.
	Issuer string `yaml:"issuer"`
	// DiscoveryURL is read once at start for jwks_uri. Defaults to
	// <issuer>/.well-known/openid-configuration.
	DiscoveryURL string `yaml:"discovery_url"`
	// JWKSURL, when set, skips discovery.
	JWKSURL string `yaml:"jwks_url"`
	// Audiences are the accepted aud values; a token must carry at least one.
	Audiences []string `yaml:"audiences"`
	// Profile is the kind of provider: keycloak (the default: Keycloak's
	// access tokens, typ "Bearer", realm and client roles, service accounts
	// by preferred_username) or generic (any OpenID provider: RFC 9068
	// access tokens or tokens with no typ claim, the client in client_id
	// or azp, a client-credentials token when sub is the client).
	Profile string `yaml:"profile"`
	// UsernameClaim names the claims that may hold the MLflow username, in
	// order; the first the token carries as a non-empty string wins. A name
	// is a top-level claim or a dotted path into nested objects. Defaults
	// to preferred_username (keycloak) or sub (generic).
	UsernameClaim ClaimNames `yaml:"username_claim"`
	// GroupsClaim holds group paths: a claim name or a dotted path.
	// Defaults to groups.
	GroupsClaim string `yaml:"groups_claim"`
	// RolesClaim holds more roles: a claim name or a dotted path. Unset,
	// the keycloak profile reads realm_access and resource_access, and the
	// generic profile reads no roles.
	RolesClaim string `yaml:"roles_claim"`
	// AdminGroups make their members Identity.Admin.
	AdminGroups []string `yaml:"admin_groups"`
	// AdminRoles (realm roles, or "<client>/<role>") make holders Identity.Admin.
	AdminRoles []string `yaml:"admin_roles"`
	// Algorithms is the signature allowlist. Defaults to RS256, ES256, PS256.
	Algorithms []string `yaml:"algorithms"`
	// BasicPassword accepts this issuer's access tokens as the password of
	// Basic credentials whose username is the token's, for tools that can
	// send only a username and a password.
	BasicPassword bool `yaml:"basic_password"`
	// ServiceAccounts maps a client id to the MLflow username its
	// client-credentials tokens act as. Unmapped clients act as
	// service-account-<client>.
	ServiceAccounts map[string]string `yaml:"service_accounts"`
	// JWKSRefreshInterval is the background JWKS refresh period.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// JWKSMinRefreshInterval rate-limits refreshes caused by unknown kids
	// that bring no new key.
	JWKSMinRefreshInterval time.Duration `yaml:"jwks_min_refresh_interval"`
	// HTTPTimeout bounds each discovery and JWKS request.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
}

// Issuer profiles (IssuerConfig.Profile).
const (
	ProfileKeycloak = "keycloak"
	ProfileGeneric  = "generic"
)

// ClaimNames is one claim name or an ordered list of them. In YAML it is a
// string or a list of strings.
type ClaimNames []string

// UnmarshalYAML accepts a single name or a list of names.
func (c *ClaimNames) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		*c = ClaimNames{one}
		return nil
	}
	var list []string
	if err := unmarshal(&list); err != nil {
		return errors.New("want a claim name or a list of claim names")
	}
	*c = list
	return nil
}

// JWTOption configures NewJWT.
type JWTOption func(*jwtOptions)

type jwtOptions struct {
	clock     func() time.Time
	logger    *slog.Logger
	cacheSize int
	cacheTTL  time.Duration
}

// WithJWTClock sets the clock used for token validity and refresh rate
// limits, so tests are deterministic.
func WithJWTClock(now func() time.Time) JWTOption {
	return func(o *jwtOptions) { o.clock = now }
}

// WithJWTLogger sets the logger for background JWKS problems.
func WithJWTLogger(l *slog.Logger) JWTOption {
	return func(o *jwtOptions) { o.logger = l }
}

// WithTokenCache sizes the verified-token cache (token_cache_size,
// token_cache_ttl). Zero values keep the defaults.
func WithTokenCache(size int, ttl time.Duration) JWTOption {
	return func(o *jwtOptions) { o.cacheSize, o.cacheTTL = size, ttl }
}

// JWT authenticates "Authorization: Bearer <jwt>" access tokens from one or
// more Keycloak realms. It is safe for concurrent use.
type JWT struct {
	issuers map[string]*issuer // by exact iss
	list    []*issuer
	cache   *TokenCache
	clock   func() time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// issuer is one validated IssuerConfig plus its key source.
type issuer struct {
	cfg         IssuerConfig
	algs        map[string]jwa.SignatureAlgorithm
	audiences   []string
	adminGroups []string
	keys        *keySource
}

// NewJWT validates cfgs and starts fetching each issuer's keys. It tries
// discovery and the JWKS once, bounded by http_timeout, and returns even if
// Keycloak is unreachable: fetching then continues in the background and
// Ready reports false until every issuer has keys. An invalid config is an
// error naming the key. Call Close to stop the background work.
func NewJWT(ctx context.Context, cfgs []IssuerConfig, opts ...JWTOption) (*JWT, error) {
	o := jwtOptions{clock: time.Now, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if len(cfgs) == 0 {
		return nil, errors.New("authn: jwt: issuers: at least one issuer is required")
	}
	j := &JWT{
		issuers: make(map[string]*issuer, len(cfgs)),
		cache:   NewTokenCache(o.cacheSize, o.cacheTTL),
		clock:   o.clock,
	}
	// One client for every issuer's discovery and JWKS requests; each
	// request is bounded by its issuer's http_timeout.
	client := &http.Client{}
	names := make(map[string]bool, len(cfgs))
	for i, c := range cfgs {
		iss, err := newIssuer(c, i, client, o)
		if err != nil {
			return nil, err
		}
		if j.issuers[iss.cfg.Issuer] != nil {
			return nil, fmt.Errorf("authn: jwt: issuers[%d].issuer: %q is configured twice", i, iss.cfg.Issuer)
		}
		if names[iss.cfg.Name] {
			return nil, fmt.Errorf("authn: jwt: issuers[%d].name: %q is configured twice", i, iss.cfg.Name)
		}
		names[iss.cfg.Name] = true
		j.issuers[iss.cfg.Issuer] = iss
		j.list = append(j.list, iss)
	}

	// The background work outlives ctx's request scope but not the JWT.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j.cancel = cancel
	var first sync.WaitGroup
	for _, iss := range j.list {
		first.Add(1)
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			iss.keys.run(bg, first.Done)
		}()
	}
	first.Wait()
	return j, nil
}

// Validate checks one issuer's config. Errors name the offending key
// relative to the issuer ("audiences: ..."), for the config loader to prefix.
func (c IssuerConfig) Validate() error {
	_, err := c.compile()
	return err
}

// compile validates c and fills in its defaults.
func (c IssuerConfig) compile() (IssuerConfig, error) {
	if c.Issuer == "" {
		return c, errors.New("issuer: required")
	}
	if c.Name == "" {
		c.Name = c.Issuer
	}
	if c.JWKSURL != "" {
		if err := checkHTTPURL(c.JWKSURL); err != nil {
			return c, fmt.Errorf("jwks_url: %w", err)
		}
	} else {
		if c.DiscoveryURL == "" {
			c.DiscoveryURL = strings.TrimSuffix(c.Issuer, "/") + "/.well-known/openid-configuration"
		}
		if err := checkHTTPURL(c.DiscoveryURL); err != nil {
			return c, fmt.Errorf("discovery_url: %w", err)
		}
	}
	if len(c.Audiences) == 0 {
		return c, errors.New("audiences: at least one audience is required")
	}
	if slices.Contains(c.Audiences, "") {
		return c, errors.New("audiences: empty audience")
	}
	switch c.Profile {
	case "":
		c.Profile = ProfileKeycloak
	case ProfileKeycloak, ProfileGeneric:
	default:
		return c, fmt.Errorf("profile: %q is not %s or %s", c.Profile, ProfileKeycloak, ProfileGeneric)
	}
	if slices.Contains(c.UsernameClaim, "") {
		return c, errors.New("username_claim: empty claim name")
	}
	if len(c.UsernameClaim) == 0 {
		c.UsernameClaim = ClaimNames{"preferred_username"}
		if c.Profile == ProfileGeneric {
			// OpenID Connect Core 1.0 section 5.7: only iss and sub are
			// stable and unique; other providers may let people choose
			// their preferred_username.
			c.UsernameClaim = ClaimNames{"sub"}
		}
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = defaultAlgorithms
	}
	for _, a := range c.Algorithms {
		if _, ok := allowedAlgorithms[a]; !ok {
			return c, fmt.Errorf("algorithms: %q is not allowed (only RS*, PS* and ES*; never none or HS*)", a)
		}
	}
	for client, user := range c.ServiceAccounts {
		if client == "" || user == "" {
			return c, errors.New("service_accounts: empty client id or username")
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"jwks_refresh_interval", &c.JWKSRefreshInterval, JWTDefaultRefreshInterval},
		{"jwks_min_refresh_interval", &c.JWKSMinRefreshInterval, JWTDefaultMinRefreshInterval},
		{"http_timeout", &c.HTTPTimeout, JWTDefaultHTTPTimeout},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("%s: must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return c, nil
}

func newIssuer(c IssuerConfig, i int, client *http.Client, o jwtOptions) (*issuer, error) {
	c, err := c.compile()
	if err != nil {
		return nil, fmt.Errorf("authn: jwt: issuers[%d].%w", i, err)
	}
	algs := make(map[string]jwa.SignatureAlgorithm, len(c.Algorithms))
	for _, a := range c.Algorithms {
		algs[a] = allowedAlgorithms[a]
	}
	adminGroups := make([]string, len(c.AdminGroups))
	for k, g := range c.AdminGroups {
		adminGroups[k] = authz.NormalizeGroup(g)
	}
	return &issuer{
		cfg:         c,
		algs:        algs,
		audiences:   c.Audiences,
		adminGroups: adminGroups,
		keys: &keySource{
			name:         c.Name,
			issuer:       c.Issuer,
			discoveryURL: c.DiscoveryURL,
			jwksURL:      c.JWKSURL,
			client:       client,
			timeout:      c.HTTPTimeout,
			refresh:      c.JWKSRefreshInterval,
			minRefresh:   c.JWKSMinRefreshInterval,
			clock:        o.clock,
			logger:       o.logger,
		},
	}, nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// Ready reports whether every issuer's JWKS has been fetched at least once.
func (j *JWT) Ready() bool {
	for _, iss := range j.list {
		if iss.keys.current() == nil {
			return false
		}
	}
	return true
}

// JWKSStatus is one issuer's key-fetch health, for metrics.
type JWKSStatus struct {
	// Issuer is the issuer's name (issuers[].name).
	Issuer string
	// Failures counts failed discovery or JWKS fetches since NewJWT.
	Failures uint64
	// LastSuccess is when the keys were last fetched; zero if never.
	LastSuccess time.Time
}

// JWKSStatus returns every issuer's key-fetch health, in configuration order.
func (j *JWT) JWKSStatus() []JWKSStatus {
	out := make([]JWKSStatus, len(j.list))
	for i, iss := range j.list {
		out[i] = JWKSStatus{Issuer: iss.cfg.Name, Failures: iss.keys.failures.Load()}
		if ns := iss.keys.lastOK.Load(); ns != 0 {
			out[i].LastSuccess = time.Unix(0, ns)
		}
	}
	return out
}

// Close stops background JWKS refreshes and waits for them to end.
func (j *JWT) Close() {
	j.closed.Do(func() {
		j.cancel()
		j.wg.Wait()
	})
}

// deny builds the 401 for a credential that is present but unacceptable.
// Messages are fixed strings for people and never echo the credential.
func deny(reason authz.Reason, msg string) *authz.CredentialError {
	return &authz.CredentialError{Reason: reason, Message: msg}
}

// denyForeign is deny for a credential that may be someone else's (a JWT
// of an issuer we do not know, a token that is no JWT): applications that
// let such credentials through treat the caller as anonymous.
func denyForeign(reason authz.Reason, msg string) *authz.CredentialError {
	return &authz.CredentialError{Reason: reason, Message: msg, Foreign: true}
}

// Authenticate implements authz.Authenticator for bearer JWTs. It returns
// (nil, nil) when there is no Authorization header or it is not a Bearer
// credential. A token from an issuer we do not know, or one that is not a
// JWT at all, is a Foreign CredentialError, so applications that let their
// own bearer credentials through (Phoenix API keys) can do so.
//
// The returned Identity is the caller's own copy, but its Groups and Roles
// slices are shared with the token cache and must not be modified.
func (j *JWT) Authenticate(ctx context.Context, r *authz.Request) (*authz.Identity, error) {
	token, cerr := bearerToken(r.Header("authorization"))
	if cerr != nil {
		return nil, cerr
	}
	if token == "" {
		return nil, nil
	}
	return j.authenticateToken(ctx, token)
}

// authenticateToken verifies a token, or finds it in the cache, and returns
// the caller's own copy of its identity.
func (j *JWT) authenticateToken(ctx context.Context, token string) (*authz.Identity, error) {
	now := j.clock()
	if id, ok := j.cache.Get(token, now); ok {
		if tr := authz.TraceFrom(ctx); tr != nil {
			tr.Addf("identity", "jwt: cached token of %s", id.Username)
		}
		cp := *id
		return &cp, nil
	}
	id, err := j.verify(ctx, token, now)
	if err != nil {
		if tr := authz.TraceFrom(ctx); tr != nil {
			tr.Addf("identity", "jwt: %v", err)
		}
		return nil, err
	}
	j.cache.Put(token, id, id.Expiry, now)
	if tr := authz.TraceFrom(ctx); tr != nil {
		tr.Addf("identity", "jwt: verified token of %s from %s", id.Username, id.Issuer)
	}
	cp := *id
	return &cp, nil
}

// bearerToken extracts the token of a Bearer Authorization header (RFC 6750
// section 2.1). It returns "" and no error when the header is absent or
// another scheme.
//
// Envoy joins repeated headers with ",", and a JWT never contains one, so a
// comma in a Bearer credential means two credentials: which one the
// upstream would use is anyone's guess, so it is refused.
func bearerToken(h string) (string, *authz.CredentialError) {
	h = strings.Trim(h, " \t")
	if h == "" {
		return "", nil
	}
	if !isBearer(h) {
		if strings.IndexByte(h, ',') >= 0 {
			for part := range strings.SplitSeq(h, ",") {
				if isBearer(strings.Trim(part, " \t")) {
					return "", deny(ReasonTokenMalformed, "more than one Authorization credential")
				}
			}
		}
		return "", nil
	}
	token := strings.Trim(h[len("bearer"):], " \t")
	if len(token) > JWTMaxTokenSize {
		return "", deny(ReasonTokenTooLarge, "bearer token too large")
	}
	if token == "" {
		return "", deny(ReasonTokenMalformed, "empty bearer token")
	}
	if strings.ContainsAny(token, ", \t") {
		return "", deny(ReasonTokenMalformed, "more than one Authorization credential")
	}
	return token, nil
}

// isBearer reports whether h starts with the Bearer scheme (case-insensitive,
// RFC 9110 section 11.1) followed by whitespace or nothing.
func isBearer(h string) bool {
	const s = "bearer"
	if len(h) < len(s) || !strings.EqualFold(h[:len(s)], s) {
		return false
	}
	return len(h) == len(s) || h[len(s)] == ' ' || h[len(s)] == '\t'
}

// joseHeader is the part of the JOSE header we act on. jku, x5u, jwk and x5c
// are deliberately not read: keys only ever come from the issuer's JWKS
// (RFC 8725 section 3.10).
type joseHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// splitToken splits a compact JWS and decodes its header and payload. It
// returns ok=false for anything that is not a signed JWT (an opaque token,
// a JWE, a Phoenix API key in another format).
func splitToken(token string) (hdr joseHeader, payload []byte, ok bool) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sig, '.') >= 0 || h == "" || p == "" {
		return hdr, nil, false
	}
	hb, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || json.Unmarshal(hb, &hdr) != nil || hdr.Alg == "" {
		return hdr, nil, false
	}
	payload, err = base64.RawURLEncoding.DecodeString(p)
	if err != nil || len(payload) == 0 || payload[0] != '{' {
		return hdr, nil, false
	}
	return hdr, payload, true
}

// verify fully checks a token not found in the cache.
func (j *JWT) verify(ctx context.Context, token string, now time.Time) (*authz.Identity, error) {
	hdr, payload, ok := splitToken(token)
	if !ok {
		return nil, denyForeign(ReasonTokenNotJWT, "bearer token is not a JWT")
	}
	// Choose the issuer from the unverified iss; everything below is then
	// verified against that issuer's keys only.
	var peek struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(payload, &peek) != nil {
		return nil, denyForeign(ReasonTokenNotJWT, "bearer token is not a JWT")
	}
	issStr, _ := peek.Iss.(string)
	iss := j.issuers[issStr]
	if iss == nil {
		return nil, denyForeign(ReasonTokenUnknownIssuer, "token issuer is not trusted here")
	}

	if _, ok := iss.algs[hdr.Alg]; !ok {
		return nil, deny(ReasonTokenAlgNotAllowed, "token signature algorithm is not allowed")
	}
	// Keycloak types access tokens JWT; RFC 9068 section 2.1 types them
	// at+jwt. Any other type (logout+jwt...) is another kind of token.
	switch strings.ToLower(hdr.Typ) {
	case "", "jwt", "at+jwt", "application/at+jwt":
	default:
		return nil, deny(ReasonTokenWrongType, "token header type is not an access token")
	}
	claims, err := iss.verifySignature(ctx, token, hdr)
	if err != nil {
		return nil, err
	}
	return iss.identity(claims, now)
}

// verifySignature checks a compact JWS whose header is hdr against the
// issuer's algorithm allowlist and keys (refreshing them, rate-limited,
// for an unknown kid) and returns its claims. Access tokens and, at login,
// ID tokens are both verified here.
func (iss *issuer) verifySignature(ctx context.Context, token string, hdr joseHeader) (map[string]any, error) {
	alg, ok := iss.algs[hdr.Alg]
	if !ok {
		return nil, deny(ReasonTokenAlgNotAllowed, "token signature algorithm is not allowed")
	}
	if hdr.Kid == "" {
		return nil, deny(ReasonTokenUnknownKey, "token names no signing key (kid)")
	}
	set := iss.keys.current()
	if set == nil {
		return nil, fmt.Errorf("authn: jwt: issuer %q: signing keys not loaded yet", iss.cfg.Name)
	}
	key, found := set.keys[hdr.Kid]
	if !found {
		set = iss.keys.refreshForKid(ctx)
		key, found = set.keys[hdr.Kid]
	}
	if !found {
		return nil, deny(ReasonTokenUnknownKey, "token is signed with a key the issuer does not publish")
	}
	if !key.fits(hdr.Alg) {
		return nil, deny(ReasonTokenAlgNotAllowed, "token signature algorithm does not match its key")
	}
	verified, err := jws.VerifyCompactFast(key.raw, []byte(token), alg)
	if err != nil {
		return nil, deny(ReasonTokenBadSignature, "token signature is invalid")
	}
	claims := map[string]any{}
	if err := json.Unmarshal(verified, &claims); err != nil {
		return nil, deny(ReasonTokenMalformed, "token claims are not a JSON object")
	}
	return claims, nil
}
