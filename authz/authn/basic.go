package authn

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Reasons for denying Basic credentials. A wrong password, an unknown
// username and a stored hash we cannot check all answer the same
// ReasonBasicInvalid, so the answer never tells which usernames exist.
const (
	ReasonBasicInvalid           authz.Reason = "basic_invalid_credentials"
	ReasonBasicMalformed         authz.Reason = "basic_malformed"
	ReasonBasicRateLimited       authz.Reason = "basic_rate_limited"
	ReasonBasicDisabled          authz.Reason = "basic_disabled"
	ReasonBasicTokenUserMismatch authz.Reason = "basic_token_user_mismatch"
)

// mlflowDefaultAdminPassword is the admin password MLflow's basic-auth app
// shipped in basic_auth.ini (admin_password) until 3.16.1; it is public, so
// it never signs anyone in.
const mlflowDefaultAdminPassword = "password1234"

// Basic defaults and limits.
const (
	// BasicDefaultCacheTTL is how long verified credentials are trusted
	// without recomputing the hash, when basic.cache_ttl is not set.
	BasicDefaultCacheTTL = 5 * time.Minute
	// BasicDefaultCacheSize bounds the verified-credentials cache.
	BasicDefaultCacheSize = 10000
	// BasicDefaultMaxFailures is the burst of wrong passwords a username
	// may send before it is refused unchecked.
	BasicDefaultMaxFailures = 5
	// BasicDefaultFailureWindow is how long a username takes to earn its
	// whole burst back.
	BasicDefaultFailureWindow = time.Minute
	// BasicMaxTrackedUsernames bounds the failure limiter's memory.
	BasicMaxTrackedUsernames = 10000
	// basicMaxCredentialSize bounds the base64 credential: room for a
	// username and a JWTMaxTokenSize access token as the password.
	basicMaxCredentialSize = JWTMaxTokenSize + 4<<10
	// basicMaxUsernameSize: MLflow's users.username is VARCHAR(255), at
	// most 4 bytes a character. A longer name cannot exist.
	basicMaxUsernameSize = 4 * 255
	// basicMethod is the Identity.Method of a password check, and
	// basicTokenMethod of an access token sent as the Basic password.
	basicMethod      = "basic"
	basicTokenMethod = "basic_token"
)

// BasicChallenge is the WWW-Authenticate of a refused Basic credential:
// MLflow's own basic-auth answers with the same realm
// (mlflow/server/auth/__init__.py, make_basic_auth_response).
const BasicChallenge = `Basic realm="mlflow"`

// BasicConfig tunes Basic authentication (the configuration's basic
// section). Zero values take the defaults.
type BasicConfig struct {
	// CacheTTL is how long a verified username and password are accepted
	// without running the password hash again. A password change or the
	// user's deletion ends it at once: every request re-reads the stored
	// hash through the store's cache, which change notifications flush.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// CacheSize bounds the verified-credentials cache.
	CacheSize int `yaml:"cache_size"`
	// MaxFailures is how many wrong passwords one username may send in a
	// burst; after that it is refused without a check until it earns
	// attempts back, one every FailureWindow/MaxFailures.
	MaxFailures int `yaml:"max_failures"`
	// FailureWindow is how long a username takes to earn its whole burst back.
	FailureWindow time.Duration `yaml:"failure_window"`
	// MaxConcurrent bounds password-hash computations running at once
	// (default GOMAXPROCS, at most 4): a default scrypt check holds 32 MiB
	// and tens of milliseconds of CPU.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// Validate checks c. Errors name the key relative to the section.
func (c BasicConfig) Validate() error {
	var errs []error
	if c.CacheTTL < 0 {
		errs = append(errs, errors.New("cache_ttl: must not be negative"))
	}
	if c.CacheSize < 0 {
		errs = append(errs, errors.New("cache_size: must not be negative"))
	}
	if c.MaxFailures < 0 {
		errs = append(errs, errors.New("max_failures: must not be negative"))
	}
	if c.FailureWindow < 0 {
		errs = append(errs, errors.New("failure_window: must not be negative"))
	}
	if c.MaxConcurrent < 0 {
		errs = append(errs, errors.New("max_concurrent: must not be negative"))
	}
	return errors.Join(errs...)
}

func (c BasicConfig) withDefaults() BasicConfig {
	if c.CacheTTL == 0 {
		c.CacheTTL = BasicDefaultCacheTTL
	}
	if c.CacheSize == 0 {
		c.CacheSize = BasicDefaultCacheSize
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = BasicDefaultMaxFailures
	}
	if c.FailureWindow == 0 {
		c.FailureWindow = BasicDefaultFailureWindow
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = min(runtime.GOMAXPROCS(0), 4)
	}
	return c
}

// BasicOption configures NewBasic.
type BasicOption func(*basicOptions)

type basicOptions struct {
	clock  func() time.Time
	logger *slog.Logger
	tokens *JWT
}

// WithBasicClock sets the clock of the cache and the failure limiter.
func WithBasicClock(now func() time.Time) BasicOption {
	return func(o *basicOptions) { o.clock = now }
}

// WithBasicLogger sets the logger for stored hashes that cannot be checked.
func WithBasicLogger(l *slog.Logger) BasicOption {
	return func(o *basicOptions) { o.logger = l }
}

// WithBasicTokens accepts, as the password, an access token of every issuer
// of j configured with basic_password, for tools that can send only a
// username and a password. The username must be the token's.
func WithBasicTokens(j *JWT) BasicOption {
	return func(o *basicOptions) { o.tokens = j }
}

// Basic authenticates "Authorization: Basic" credentials against MLflow's
// users.password_hash, as MLflow's Python client sends them when
// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are set
// (mlflow/utils/rest_utils.py, http_request). It is safe for concurrent use.
//
// A check runs the stored scrypt or PBKDF2 hash (tens of milliseconds), so
// successes are cached by an HMAC of the credentials under a key made per
// authenticator; failures are rate-limited per username; an unknown
// username costs one default scrypt check, like a wrong password; and at
// most MaxConcurrent checks run at once.
type Basic struct {
	creds   store.Credentials
	hosts   map[string]bool
	cfg     BasicConfig
	clock   func() time.Time
	logger  *slog.Logger
	tokens  *JWT
	macs    sync.Pool // of HMAC-SHA256 under a key made per authenticator
	cache   *basicCache
	limiter *failureLimiter
	slots   chan struct{}

	verifications, cacheHits, failures, rateLimited atomic.Uint64
}

// BasicStats counts what Basic did since it was made.
type BasicStats struct {
	// Verifications counts password-hash computations, dummy ones for
	// unknown usernames included.
	Verifications uint64
	// CacheHits counts credentials accepted from the cache.
	CacheHits uint64
	// Failures counts refused credentials (wrong, unknown, unusable).
	Failures uint64
	// RateLimited counts credentials refused unchecked.
	RateLimited uint64
}

// NewBasic returns a Basic authenticator that reads hashes from creds and
// accepts credentials only on hosts (the applications with Basic on); a
// Basic credential sent to another host is refused as one that is not ours.
// creds may be nil only when hosts is empty.
func NewBasic(creds store.Credentials, cfg BasicConfig, hosts []string, opts ...BasicOption) (*Basic, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authn: basic: %w", err)
	}
	if creds == nil && len(hosts) > 0 {
		return nil, errors.New("authn: basic: Basic needs a store that holds MLflow's users")
	}
	o := basicOptions{clock: time.Now, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	cfg = cfg.withDefaults()
	key := make([]byte, sha256.Size)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("authn: basic: %w", err)
	}
	b := &Basic{
		creds:   creds,
		hosts:   make(map[string]bool, len(hosts)),
		cfg:     cfg,
		clock:   o.clock,
		logger:  o.logger,
		tokens:  o.tokens,
		macs:    sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
		cache:   newBasicCache(cfg.CacheSize),
		limiter: newFailureLimiter(cfg.MaxFailures, cfg.FailureWindow, BasicMaxTrackedUsernames),
		slots:   make(chan struct{}, cfg.MaxConcurrent),
	}
	for _, h := range hosts {
		b.hosts[strings.ToLower(h)] = true
	}
	return b, nil
}

// Stats returns the counters.
func (b *Basic) Stats() BasicStats {
	return BasicStats{
		Verifications: b.verifications.Load(),
		CacheHits:     b.cacheHits.Load(),
		Failures:      b.failures.Load(),
		RateLimited:   b.rateLimited.Load(),
	}
}

// denyBasic is deny with the Basic challenge, so clients that speak Basic
// know to ask for a password again.
func denyBasic(reason authz.Reason, msg string) *authz.CredentialError {
	ce := deny(reason, msg)
	ce.Challenge = BasicChallenge
	return ce
}

// denyInvalid is the one answer for a wrong password, an unknown user and
// a hash we cannot check.
func denyInvalid() *authz.CredentialError {
	return denyBasic(ReasonBasicInvalid, "invalid username or password")
}

// Authenticate implements authz.Authenticator for Basic credentials. It
// returns (nil, nil) when the Authorization header is absent or another
// scheme.
func (b *Basic) Authenticate(ctx context.Context, r *authz.Request) (*authz.Identity, error) {
	h := strings.Trim(r.Header("authorization"), " \t")
	if !isBasic(h) {
		return nil, nil
	}
	if !b.hosts[r.Host] {
		return nil, denyForeign(ReasonBasicDisabled, "Basic authentication is not accepted by this application")
	}
	user, password, cerr := parseBasic(h)
	if cerr != nil {
		return nil, cerr
	}
	if id, ok, err := b.tokens.basicPasswordToken(ctx, password); ok {
		return b.tokenIdentity(ctx, user, id, err)
	}
	id, err := b.check(ctx, user, password)
	if tr := authz.TraceFrom(ctx); tr != nil {
		if err != nil {
			tr.Addf("identity", "basic: %v", err)
		} else {
			tr.Addf("identity", "basic: password of %s", user)
		}
	}
	return id, err
}

// tokenIdentity finishes a Basic credential whose password is an access
// token: the token decides, and its username must be the one sent.
func (b *Basic) tokenIdentity(ctx context.Context, user string, id *authz.Identity, err error) (*authz.Identity, error) {
	if err != nil {
		if ce, ok := authz.AsCredentialError(err); ok {
			cp := *ce
			cp.Challenge = BasicChallenge
			return nil, &cp
		}
		return nil, err
	}
	if id.Username != user {
		return nil, denyBasic(ReasonBasicTokenUserMismatch, "the username is not the access token's")
	}
	id.Method = basicTokenMethod
	if tr := authz.TraceFrom(ctx); tr != nil {
		tr.Addf("identity", "basic: access token of %s from %s as the password", id.Username, id.Issuer)
	}
	return id, nil
}

// check verifies a username and password against users.password_hash.
func (b *Basic) check(ctx context.Context, user, password string) (*authz.Identity, error) {
	now := b.clock()
	// The MAC covers "user:password" as sent: a username holds no colon,
	// so the pair is unambiguous.
	mac := b.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte(user))
	mac.Write([]byte{':'})
	mac.Write([]byte(password))
	var key [sha256.Size]byte
	mac.Sum(key[:0])
	b.macs.Put(mac)

	if e, ok := b.cache.get(key, now); ok {
		// The hash the cached success was checked against must still be
		// the stored one, and unexpired: a password change or deletion
		// flushes the store's cache, and this read then sees it.
		stored, err := b.creds.Password(ctx, user)
		switch {
		case err == nil && stored.Hash == e.hash && !stored.Expired(now):
			b.cacheHits.Add(1)
			return &authz.Identity{Kind: authz.KindUser, Username: user, Method: basicMethod}, nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		b.cache.remove(key)
	}

	if !b.limiter.take(user, now) {
		b.rateLimited.Add(1)
		return nil, denyBasic(ReasonBasicRateLimited, "too many failed sign-ins for this username; try again later")
	}
	// Unknown usernames are refused only after the same work as a wrong
	// password, so the answer's timing does not tell which names exist.
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		b.limiter.refund(user)
		return nil, ctx.Err()
	}
	ok, stored, err := b.verify(ctx, user, password, now)
	<-b.slots
	if err != nil {
		b.limiter.refund(user)
		return nil, err
	}
	if !ok {
		b.failures.Add(1)
		return nil, denyInvalid()
	}
	if password == mlflowDefaultAdminPassword {
		// A database that MLflow's basic-auth app created may still hold
		// its initial admin with this published password. It is checked
		// after the hash, so the refusal costs the same as any other.
		b.failures.Add(1)
		b.logger.LogAttrs(ctx, slog.LevelWarn, "basic: refused MLflow's published default admin password; set a new password for this user",
			slog.String("user", user))
		return nil, denyInvalid()
	}
	b.limiter.reset(user)
	b.cache.put(key, stored, now.Add(b.cfg.CacheTTL))
	return &authz.Identity{Kind: authz.KindUser, Username: user, Method: basicMethod}, nil
}

// verify reads the user's password and checks it, or checks against
// defaultScryptHash when there is no usable hash. An expired password
// (mlflow-oidc-auth's access tokens) is checked but refused. It returns
// the stored hash on success.
func (b *Basic) verify(ctx context.Context, user, password string, now time.Time) (ok bool, stored string, err error) {
	h := defaultScryptHash
	usable := false
	if len(user) <= basicMaxUsernameSize {
		var p store.Password
		p, err = b.creds.Password(ctx, user)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return false, "", err
		default:
			stored = p.Hash
			parsed, perr := parsePasswordHash(stored)
			if perr == nil {
				h, usable = parsed, !p.Expired(now)
			} else {
				b.logger.LogAttrs(ctx, slog.LevelWarn, "basic: the stored password hash cannot be checked; the user cannot sign in with a password",
					slog.String("user", user), slog.String("error", perr.Error()))
			}
		}
	}
	b.verifications.Add(1)
	match := h.verify(password)
	return match && usable, stored, nil
}

// isBasic reports whether h uses the Basic scheme (case-insensitive, RFC
// 9110 section 11.1), followed by whitespace or nothing.
func isBasic(h string) bool {
	const s = "basic"
	if len(h) < len(s) || !strings.EqualFold(h[:len(s)], s) {
		return false
	}
	return len(h) == len(s) || h[len(s)] == ' ' || h[len(s)] == '\t'
}

// parseBasic decodes a Basic credential (RFC 7617) as werkzeug, which
// MLflow's own basic-auth reads it with, does: standard base64, UTF-8, and
// the username ends at the first colon. Unlike werkzeug it refuses what it
// would have to guess at: non-alphabet characters, a second credential
// (Envoy joins repeated headers with ","), an empty username or password.
func parseBasic(h string) (user, password string, cerr *authz.CredentialError) {
	malformed := func(msg string) (string, string, *authz.CredentialError) {
		return "", "", denyBasic(ReasonBasicMalformed, msg)
	}
	cred := strings.Trim(h[len("basic"):], " \t")
	switch {
	case cred == "":
		return malformed("empty Basic credential")
	case len(cred) > basicMaxCredentialSize:
		return malformed("Basic credential too large")
	case strings.ContainsAny(cred, ", \t"):
		return malformed("more than one Authorization credential")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(cred)
	// Even Strict skips line breaks, which are not base64 either.
	if err != nil || strings.ContainsAny(cred, "\r\n") {
		return malformed("Basic credential is not base64")
	}
	if !utf8.Valid(raw) {
		return malformed("Basic credential is not UTF-8")
	}
	i := bytes.IndexByte(raw, ':')
	if i <= 0 || i == len(raw)-1 {
		return malformed("Basic credential needs a username and a password")
	}
	// Two strings, not one cut in two: the username is kept (the failure
	// limiter, the caches, creator-grant records) and the password must
	// not be kept with it.
	return string(raw[:i]), string(raw[i+1:]), nil
}

// basicPasswordToken verifies password as an access token when it is a JWT
// of an issuer configured with basic_password; ok is false otherwise (the
// password is then checked as a password). j may be nil.
func (j *JWT) basicPasswordToken(ctx context.Context, password string) (id *authz.Identity, ok bool, err error) {
	if j == nil || len(password) > JWTMaxTokenSize {
		return nil, false, nil
	}
	_, payload, isJWT := splitToken(password)
	if !isJWT {
		return nil, false, nil
	}
	var peek struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(payload, &peek) != nil {
		return nil, false, nil
	}
	s, _ := peek.Iss.(string)
	if iss := j.issuers[s]; iss == nil || !iss.cfg.BasicPassword {
		return nil, false, nil
	}
	id, err = j.authenticateToken(ctx, password)
	return id, true, err
}

// basicCache remembers credentials that verified, by their HMAC, with the
// stored hash they verified against. It is bounded; when full, an
// arbitrary entry makes room (every entry dies within the TTL anyway).
type basicCache struct {
	mu      sync.Mutex
	max     int
	entries map[[sha256.Size]byte]basicEntry
}

type basicEntry struct {
	hash  string
	until time.Time
}

func newBasicCache(size int) *basicCache {
	return &basicCache{max: size, entries: make(map[[sha256.Size]byte]basicEntry)}
}

func (c *basicCache) get(k [sha256.Size]byte, now time.Time) (basicEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return e, false
	}
	if !now.Before(e.until) {
		delete(c.entries, k)
		return e, false
	}
	return e, true
}

func (c *basicCache) put(k [sha256.Size]byte, hash string, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for victim := range c.entries { // map order is random
			delete(c.entries, victim)
			break
		}
	}
	c.entries[k] = basicEntry{hash: hash, until: until}
}

func (c *basicCache) remove(k [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
}
