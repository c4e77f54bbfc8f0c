package authn

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Reasons for refusing a browser session cookie. A refused cookie is a 401
// (on a navigation the login turns it into a fresh login), and the answer
// clears the cookie.
const (
	ReasonSessionInvalid       authz.Reason = "session_invalid"
	ReasonSessionUnknownKey    authz.Reason = "session_unknown_key"
	ReasonSessionExpired       authz.Reason = "session_expired"
	ReasonSessionRefreshFailed authz.Reason = "session_refresh_failed"
	// ReasonCSRFOriginMismatch is a 403: a state-changing request that only
	// the cookie authenticates, sent from a page of another host.
	ReasonCSRFOriginMismatch authz.Reason = "csrf_origin_mismatch"
)

// Session defaults and limits.
const (
	// SessionDefaultCookieName is the session cookie's name. The __Host-
	// prefix makes browsers refuse it unless it is Secure, has Path=/ and no
	// Domain, so no other host (a sibling subdomain) can set or shadow it
	// (RFC 6265bis section 4.1.3.2).
	SessionDefaultCookieName = "__Host-mlflow-authz"
	// SessionDefaultMaxAge bounds a session however often it is refreshed,
	// like Keycloak's "SSO Session Max" (10 hours by default).
	SessionDefaultMaxAge = 10 * time.Hour
	// SessionDefaultLoginTimeout is how long a started login may take
	// before its callback is refused.
	SessionDefaultLoginTimeout = 10 * time.Minute
	// SessionMaxCookieSize is the most a browser stores for one cookie,
	// name and value together (RFC 6265 section 6.1 asks for at least 4096
	// bytes, and browsers keep to exactly that). A session that would not
	// fit is refused at login, never split across cookies.
	SessionMaxCookieSize = 4096
	// sessionMaxPlaintext bounds what a cookie may inflate to, so even a
	// cookie we sealed ourselves cannot make us allocate much.
	sessionMaxPlaintext = 64 << 10
	// sessionMethod is the Identity.Method of a session cookie.
	sessionMethod = "session"
)

// SessionConfig configures the browser session cookie, shared by every
// application with login enabled (config key session).
type SessionConfig struct {
	// KeysFile holds the cookie keys, one per line: the base64 of 32 random
	// bytes each. The first line seals new cookies; every line opens them,
	// so a key is rotated in by adding it below, promoting it to the top,
	// and removing the old one after MaxAge. Every replica reads the same
	// file (a Kubernetes Secret).
	KeysFile string `yaml:"keys_file"`
	// CookieName must start with __Host-. Defaults to SessionDefaultCookieName.
	CookieName string `yaml:"cookie_name"`
	// MaxAge ends a session this long after its login, refreshes or not.
	MaxAge time.Duration `yaml:"max_age"`
	// LoginTimeout is how long a login may take, from the redirect to the
	// identity provider to the callback.
	LoginTimeout time.Duration `yaml:"login_timeout"`
}

// compile validates c and fills in its defaults.
func (c SessionConfig) compile() (SessionConfig, error) {
	if c.KeysFile == "" {
		return c, errors.New("keys_file: required when an application has login enabled")
	}
	if c.CookieName == "" {
		c.CookieName = SessionDefaultCookieName
	}
	if !strings.HasPrefix(c.CookieName, "__Host-") || !isCookieName(c.CookieName) {
		return c, fmt.Errorf("cookie_name: %q must start with __Host- and be a cookie token", c.CookieName)
	}
	if c.MaxAge == 0 {
		c.MaxAge = SessionDefaultMaxAge
	}
	if c.LoginTimeout == 0 {
		c.LoginTimeout = SessionDefaultLoginTimeout
	}
	if c.MaxAge < time.Minute || c.LoginTimeout < 10*time.Second {
		return c, errors.New("max_age must be at least 1m and login_timeout at least 10s")
	}
	return c, nil
}

// Validate checks c without reading the keys file.
func (c SessionConfig) Validate() error {
	_, err := c.compile()
	return err
}

// isCookieName reports whether s is an RFC 6265 cookie-name (an RFC 7230
// token) of sane length.
func isCookieName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// sessionKeys are the cookie keys and settings that every application's
// login shares.
type sessionKeys struct {
	cfg  SessionConfig
	ring *keyRing
}

// loadSessionKeys validates cfg and reads its keys file.
func loadSessionKeys(cfg SessionConfig) (*sessionKeys, error) {
	cfg, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(cfg.KeysFile)
	if err != nil {
		return nil, fmt.Errorf("keys_file: %w", err)
	}
	ring, err := parseKeyRing(data)
	if err != nil {
		return nil, fmt.Errorf("keys_file %s: %w", cfg.KeysFile, err)
	}
	return &sessionKeys{cfg: cfg, ring: ring}, nil
}

// keyRing seals cookies with AES-256-GCM under its first key and opens
// them with whichever key sealed them. A sealed value is
//
//	base64url( version | key id (4) | nonce (12) | ciphertext and tag )
//
// and the additional data binds it to its purpose (session or login
// state) and host, so a login-state cookie never passes for a session and
// a cookie of one host is refused on another even under the same keys.
type keyRing struct {
	keys []ringKey
}

type ringKey struct {
	id   [4]byte
	aead cipher.AEAD
}

const (
	sealVersion  = 1
	sealKeyID    = 4
	sealOverhead = 1 + sealKeyID + 12 + 16
)

// Errors of keyRing.open; the authenticator maps them to reasons.
var (
	errSealMalformed  = errors.New("authn: session: cookie is malformed")
	errSealUnknownKey = errors.New("authn: session: cookie was sealed with a key we do not have")
	errSealForged     = errors.New("authn: session: cookie does not authenticate")
)

// parseKeyRing reads one base64 key of 32 bytes per line; blank lines and
// lines starting with # are skipped.
func parseKeyRing(data []byte) (*keyRing, error) {
	ring := &keyRing{}
	seen := map[[4]byte]bool{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		key, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		// The id is a hash of the key, not the key's position, so reordering
		// the file (promoting a new key) keeps every cookie readable.
		sum := sha256.Sum256(append([]byte("mlflow-authz cookie key id\x00"), key...))
		id := [4]byte(sum[:4])
		if seen[id] {
			return nil, fmt.Errorf("line %d: the same key is listed twice", n+1)
		}
		seen[id] = true
		ring.keys = append(ring.keys, ringKey{id: id, aead: aead})
	}
	if len(ring.keys) == 0 {
		return nil, errors.New("no keys (one base64-encoded 32-byte key per line)")
	}
	return ring, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != 32 {
				return nil, fmt.Errorf("a key must be 32 bytes, this one is %d", len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("not base64")
}

func additionalData(purpose, host string) []byte {
	return []byte("mlflow-authz " + purpose + "\x00" + host)
}

// seal encrypts plaintext for purpose on host.
func (k *keyRing) seal(purpose, host string, plaintext []byte) string {
	key := k.keys[0]
	out := make([]byte, 1+sealKeyID+12, sealOverhead+len(plaintext))
	out[0] = sealVersion
	copy(out[1:], key.id[:])
	nonce := out[1+sealKeyID:]
	// crypto/rand.Read never fails (Go 1.24+); random 96-bit nonces are
	// safe far beyond the number of logins and refreshes one key sees.
	_, _ = rand.Read(nonce)
	out = key.aead.Seal(out, nonce, plaintext, additionalData(purpose, host))
	return base64.RawURLEncoding.EncodeToString(out)
}

// open reverses seal. Its errors say only what kind of failure it was.
func (k *keyRing) open(purpose, host, value string) ([]byte, error) {
	if len(value) > base64.RawURLEncoding.EncodedLen(SessionMaxCookieSize) {
		return nil, errSealMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < sealOverhead || raw[0] != sealVersion {
		return nil, errSealMalformed
	}
	id := [4]byte(raw[1 : 1+sealKeyID])
	for _, key := range k.keys {
		if key.id != id {
			continue
		}
		plain, err := key.aead.Open(nil, raw[1+sealKeyID:1+sealKeyID+12], raw[1+sealKeyID+12:], additionalData(purpose, host))
		if err != nil {
			return nil, errSealForged
		}
		return plain, nil
	}
	return nil, errSealUnknownKey
}

// sealState marshals v, compresses it and seals it. A Keycloak group list
// with full paths repeats long prefixes, so DEFLATE roughly halves a large
// session. Compressing before encrypting leaks nothing here: all that
// goes into one cookie comes from the identity provider about one user, so
// no attacker can mix chosen text with another user's secret in it.
func (k *keyRing) sealState(purpose, host string, v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("authn: session: %w", err)
	}
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		return "", fmt.Errorf("authn: session: %w", err)
	}
	_, _ = w.Write(raw) // writes to a bytes.Buffer do not fail
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("authn: session: %w", err)
	}
	return k.seal(purpose, host, buf.Bytes()), nil
}

// openState reverses sealState into v.
func (k *keyRing) openState(purpose, host, value string, v any) error {
	plain, err := k.open(purpose, host, value)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(plain)), sessionMaxPlaintext+1))
	if err != nil || len(raw) > sessionMaxPlaintext {
		return errSealMalformed
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errSealMalformed
	}
	return nil
}

// Purposes of sealed values (part of the additional data).
const (
	purposeSession = "session"
	purposeLogin   = "login"
)

// sessionState is what a session cookie holds: only what checks need, so
// it stays small. The access and ID tokens are not kept; the access
// token's expiry says when to refresh.
type sessionState struct {
	Issuer  string   `json:"i"`
	User    string   `json:"u"`
	Groups  []string `json:"g,omitempty"`
	Roles   []string `json:"r,omitempty"`
	Admin   bool     `json:"a,omitempty"`
	Expiry  int64    `json:"e"`           // the access token's exp: refresh after it
	End     int64    `json:"x"`           // the session's absolute end
	Refresh string   `json:"t,omitempty"` // the refresh token
}

// identity is the caller a session stands for, until its access expiry.
func (st *sessionState) identity(clientID string) *authz.Identity {
	return &authz.Identity{
		Kind:     authz.KindUser,
		Username: st.User,
		Groups:   st.Groups,
		Roles:    st.Roles,
		Admin:    st.Admin,
		ClientID: clientID,
		Issuer:   st.Issuer,
		Expiry:   time.Unix(st.Expiry, 0),
		Method:   sessionMethod,
	}
}

// decodeSessionCookie opens a session cookie sealed for host and checks
// what needs no clock or identity provider. It is the parser the session
// fuzz target drives.
func decodeSessionCookie(ring *keyRing, host, value string) (*sessionState, error) {
	var st sessionState
	switch err := ring.openState(purposeSession, host, value, &st); {
	case errors.Is(err, errSealUnknownKey):
		return nil, deny(ReasonSessionUnknownKey, "the session was sealed with a key this service no longer has; log in again")
	case err != nil:
		return nil, deny(ReasonSessionInvalid, "the session cookie is not valid; log in again")
	}
	if st.User == "" || st.Issuer == "" || st.End <= 0 {
		return nil, deny(ReasonSessionInvalid, "the session cookie is not valid; log in again")
	}
	return &st, nil
}

// Sessions authenticates browser session cookies for every application
// with login enabled, choosing the application's login by host. It sits in
// the chain after the bearer authenticators (a request carrying both is
// decided by its Authorization header) and before the mTLS peer.
type Sessions struct {
	byHost map[string]*Login
}

// NewSessions returns the authenticator for logins, each answering the
// (lower-case) hosts it is listed under.
func NewSessions(logins map[string]*Login) *Sessions {
	return &Sessions{byHost: logins}
}

// Authenticate implements authz.Authenticator for the session cookie. It
// returns (nil, nil) when the host has no login or the request carries no
// session cookie.
func (s *Sessions) Authenticate(ctx context.Context, r *authz.Request) (*authz.Identity, error) {
	l := s.byHost[r.Host]
	if l == nil {
		return nil, nil
	}
	value, n := findCookie(r.Header("cookie"), l.CookieName())
	switch {
	case n == 0:
		return nil, nil
	case n > 1:
		// __Host- cookies cannot be shadowed by another path or domain, so
		// two of them mean something we do not understand.
		return nil, deny(ReasonSessionInvalid, "more than one session cookie")
	}
	id, err := l.session(ctx, r, value)
	if err != nil {
		return nil, err
	}
	if !safeMethod(r.Method) && crossSite(r) {
		return nil, &authz.CredentialError{Reason: ReasonCSRFOriginMismatch, Status: http.StatusForbidden,
			Message: "a request that changes something must come from a page of this site"}
	}
	return id, nil
}

// safeMethod reports the methods RFC 9110 section 9.2.1 calls safe: they
// change nothing, so a cross-site one is no forgery.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// crossSite reports whether the request says it comes from a page of
// another origin: Origin when the browser sent one, else Referer. A
// request with neither is not refused (SameSite=Lax already keeps the
// cookie off cross-site subrequests in current browsers); an Origin of
// "null" (a sandboxed or privacy-sensitive context) is refused.
func crossSite(r *authz.Request) bool {
	src := r.Header("origin")
	if src == "" {
		src = r.Header("referer")
		if src == "" {
			return false
		}
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return true
	}
	return originAuthority(u.Scheme, u.Host) != originAuthority(requestScheme(r), requestAuthority(r))
}

// originAuthority is host:port in lower case with the scheme's default
// port made explicit, so that https://h and h:443 compare equal.
func originAuthority(scheme, hostport string) string {
	hostport = strings.ToLower(hostport)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil { // no port
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), "443"
		if strings.EqualFold(scheme, "http") {
			port = "80"
		}
	}
	return net.JoinHostPort(host, port)
}

// requestAuthority is the host (and port) the client addressed, as Envoy
// passes it in :authority; the canonical host when a hand-built request
// has none.
func requestAuthority(r *authz.Request) string {
	if a := r.Header(":authority"); a != "" {
		return a
	}
	return r.Host
}

// requestScheme is the scheme the client used. Istio's sidecars see
// plain HTTP behind a TLS-terminating gateway, so x-forwarded-proto (set
// by the gateway) wins over :scheme.
func requestScheme(r *authz.Request) string {
	for _, h := range []string{"x-forwarded-proto", ":scheme"} {
		switch v := strings.ToLower(r.Header(h)); v {
		case "http", "https":
			return v
		}
	}
	return "https"
}

// findCookie returns the value of the cookie called name in a Cookie
// header and how many cookies of that name it holds. Envoy joins repeated
// Cookie headers (HTTP/2 sends one per cookie), so both ";" and "," are
// taken as separators: neither can occur in a cookie-value (RFC 6265
// section 4.1.1). It does not allocate.
func findCookie(header, name string) (value string, n int) {
	for header != "" {
		var part string
		if i := strings.IndexAny(header, ";,"); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, ""
		}
		k, v, ok := strings.Cut(strings.Trim(part, " \t"), "=")
		if ok && k == name {
			value, n = v, n+1
		}
	}
	return value, n
}

// cookieNames returns the names of the cookies in a Cookie header that
// start with prefix.
func cookieNames(header, prefix string) []string {
	var names []string
	for part := range strings.FieldsFuncSeq(header, func(r rune) bool { return r == ';' || r == ',' }) {
		k, _, ok := strings.Cut(strings.Trim(part, " \t"), "=")
		if ok && strings.HasPrefix(k, prefix) {
			names = append(names, k)
		}
	}
	return names
}

// setCookie is a Set-Cookie value for one of our cookies: host-only,
// Secure, HttpOnly, SameSite=Lax (so the identity provider's redirect back
// to the callback, a top-level cross-site GET, still carries the login
// state, while cross-site subrequests and POSTs carry nothing).
func setCookie(name, value string, maxAge time.Duration) string {
	secs := int64(maxAge / time.Second)
	if secs <= 0 {
		// Max-Age=0 deletes it now (RFC 6265 section 5.2.2).
		return name + "=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"
	}
	return name + "=" + value + "; Path=/; Max-Age=" + strconv.FormatInt(secs, 10) + "; Secure; HttpOnly; SameSite=Lax"
}
