package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
