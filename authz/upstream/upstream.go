// Package upstream shapes what a protected application receives on an
// allow: the identity headers it trusts (headers mode, Phoenix's
// X-Phoenix-* headers, Kiali's impersonation with a projected token), set
// to overwrite anything the client sent, and the client-sent identity
// headers removed.
//
//	up, err := upstream.New(upstream.Config{Mode: upstream.ModeHeaders})
//	set, remove := up.Headers(req, id)
package upstream

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Upstream modes of Config.Mode.
const (
	ModeHeaders = "headers"
	ModePhoenix = "phoenix"
	ModeKiali   = "kiali"
)

// Default identity header names of the headers and phoenix modes.
const (
	DefaultUserHeader   = "x-authz-user"
	DefaultGroupsHeader = "x-authz-groups"
	DefaultKindHeader   = "x-authz-subject-kind"
)

// TokenRefreshInterval bounds how often the kiali mode re-reads its token
// file. Kubernetes rotates projected service-account tokens well before they
// expire (at 80% of their lifetime, an hour at the least), so 30 s is ample.
const TokenRefreshInterval = 30 * time.Second

// Config says how an application learns who the caller is, as the
// `upstream:` block of an application.
type Config struct {
	// Mode is "headers" (the default), "phoenix" or "kiali".
	Mode string `yaml:"mode"`
	// UserHeader, GroupsHeader and KindHeader name the identity headers of
	// the headers and phoenix modes (defaults x-authz-user, x-authz-groups,
	// x-authz-subject-kind).
	UserHeader   string `yaml:"user_header"`
	GroupsHeader string `yaml:"groups_header"`
	KindHeader   string `yaml:"kind_header"`
	// TokenFile is the kiali mode's service-account token, typically a
	// projected token at /var/run/secrets/tokens/kiali-token.
	TokenFile string `yaml:"token_file"`
}

// Option adjusts New.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock replaces time.Now, so tests can step over the token refresh
// interval.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// New validates cfg and returns the upstream it describes. In kiali
// mode it reads the token file now and fails if it is missing or empty.
func New(cfg Config, opts ...Option) (authz.Upstream, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	switch cfg.Mode {
	case "", ModeHeaders, ModePhoenix:
		if cfg.TokenFile != "" {
			return nil, fmt.Errorf("upstream: upstream.token_file: only used in kiali mode")
		}
		u := &headerUpstream{
			user:        orDefault(cfg.UserHeader, DefaultUserHeader),
			groups:      orDefault(cfg.GroupsHeader, DefaultGroupsHeader),
			kind:        orDefault(cfg.KindHeader, DefaultKindHeader),
			stripBearer: cfg.Mode == ModePhoenix,
		}
		for _, h := range []struct{ key, name string }{{"user_header", u.user}, {"groups_header", u.groups}, {"kind_header", u.kind}} {
			if err := checkHeaderName(h.name); err != nil {
				return nil, fmt.Errorf("upstream: upstream.%s: %w", h.key, err)
			}
		}
		if u.user == u.groups || u.user == u.kind || u.groups == u.kind {
			return nil, fmt.Errorf("upstream: upstream: user_header, groups_header and kind_header must differ")
		}
		u.removeAll = []string{u.user, u.groups, u.kind}[:3:3]
		return u, nil
	case ModeKiali:
		if cfg.UserHeader != "" || cfg.GroupsHeader != "" || cfg.KindHeader != "" {
			return nil, fmt.Errorf("upstream: upstream: user_header, groups_header and kind_header are not used in kiali mode (it impersonates)")
		}
		if cfg.TokenFile == "" {
			return nil, fmt.Errorf("upstream: upstream.token_file: required in kiali mode")
		}
		tf := &tokenFile{path: cfg.TokenFile, now: o.now}
		if err := tf.load(); err != nil {
			return nil, fmt.Errorf("upstream: upstream.token_file: %w", err)
		}
		tf.next.Store(o.now().Add(TokenRefreshInterval).UnixNano())
		return &kialiUpstream{token: tf}, nil
	default:
		return nil, fmt.Errorf("upstream: upstream.mode: %q is not one of headers, phoenix, kiali", cfg.Mode)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkHeaderName refuses names Envoy would reject or that carry meaning of
// their own: overwriting authorization, cookie or host, or an impersonate-*
// header, from an identity header setting would be a security bug.
func checkHeaderName(name string) error {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%q: header names are lower-case letters, digits, '-' and '_'", name)
		}
	}
	switch {
	case name == "authorization", name == "cookie", name == "host", name == "content-length",
		name == "content-type", name == "transfer-encoding", name == "x-forwarded-client-cert",
		strings.HasPrefix(name, "impersonate-"), strings.HasPrefix(name, "x-envoy-"):
		return fmt.Errorf("%q is reserved", name)
	}
	return nil
}

// headerUpstream tells the upstream who the caller is in plain headers,
// overwriting any client-sent value; headers it has no value for are removed,
// so a client can never smuggle its own.
type headerUpstream struct {
	user, groups, kind string
	// stripBearer removes a bearer token that we verified (phoenix mode).
	// Phoenix honours only its own tokens, and any Authorization header
	// hides its session cookie, so our Keycloak token would log the user out.
	stripBearer bool
	// removeAll is the anonymous caller's remove list, shared by every
	// request (cap == len, so an append copies).
	removeAll []string
}

// Headers implements authz.Upstream.
func (u *headerUpstream) Headers(r *authz.Request, id *authz.Identity) (set []authz.Header, remove []string) {
	strip := u.stripBearer && id != nil && id.Method == "jwt" && isBearer(r.Header("authorization"))
	if !id.Authenticated() {
		if strip {
			return nil, append(u.removeAll, "authorization")
		}
		return nil, u.removeAll
	}
	// Both lists in one allocation: this runs on every allowed check.
	lists := &struct {
		set    [3]authz.Header
		remove [4]string
	}{}
	set, remove = lists.set[:0], lists.remove[:0]
	if validHeaderValue(id.Username) && id.Username != "" {
		set = append(set, authz.Header{Name: u.user, Value: id.Username})
	} else {
		remove = append(remove, u.user)
	}
	if g := joinGroups(id.Groups); g != "" {
		set = append(set, authz.Header{Name: u.groups, Value: g})
	} else {
		remove = append(remove, u.groups)
	}
	set = append(set, authz.Header{Name: u.kind, Value: string(id.Kind)})
	if strip {
		remove = append(remove, "authorization")
	}
	return set, remove
}

// isBearer reports whether an Authorization value uses the Bearer scheme
// (case-insensitive, as RFC 9110 says of schemes).
func isBearer(v string) bool {
	return len(v) > len("bearer ") && strings.EqualFold(v[:len("bearer ")], "bearer ")
}

// joinGroups comma-joins the groups that can travel in a comma-separated
// header: a group whose name holds a comma or a control character would
// split or break the header, so it is left out rather than mangled.
func joinGroups(groups []string) string {
	n, ok := 0, 0
	for _, g := range groups {
		if g != "" && validHeaderValue(g) && strings.IndexByte(g, ',') < 0 {
			n += len(g) + 1
			ok++
		}
	}
	if ok == 0 {
		return ""
	}
	if ok == 1 {
		for _, g := range groups {
			if g != "" && validHeaderValue(g) && strings.IndexByte(g, ',') < 0 {
				return g
			}
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, g := range groups {
		if g != "" && validHeaderValue(g) && strings.IndexByte(g, ',') < 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(g)
		}
	}
	return b.String()
}

// validHeaderValue refuses control characters (CR and LF above all) and
// surrounding spaces, which Envoy would reject or trim.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

// kialiUpstream drives Kiali's "header" auth strategy: Kiali passes our
// service-account token and the Impersonate-* headers to the Kubernetes API,
// so Kubernetes RBAC sees the real user.
//
// Limitation: Envoy's OkHttpResponse sets each header once (setCopy), so all
// groups travel comma-joined in a single impersonate-group value, and the
// Kubernetes API server reads that as ONE group named "a,b". Group-based
// RBAC therefore works only for callers with a single group; callers with
// several get user-based RBAC only (fewer rights, never more).
type kialiUpstream struct {
	token *tokenFile
}

const impersonatePrefix = "impersonate-"

// Headers implements authz.Upstream.
func (u *kialiUpstream) Headers(r *authz.Request, id *authz.Identity) (set []authz.Header, remove []string) {
	if id.Authenticated() && id.Username != "" && validHeaderValue(id.Username) {
		set = make([]authz.Header, 0, 3)
		set = append(set,
			authz.Header{Name: "authorization", Value: u.token.bearer()},
			authz.Header{Name: "impersonate-user", Value: id.Username})
		if g := joinGroups(id.Groups); g != "" {
			set = append(set, authz.Header{Name: "impersonate-group", Value: g})
		}
	} else {
		// Without a user to impersonate our token would act as Kiali's own
		// (powerful) service account: send no token at all, and drop the
		// client's, so Kiali answers 401.
		if _, ok := r.Headers["authorization"]; ok {
			remove = append(remove, "authorization")
		}
	}
	for name := range r.Headers {
		if !strings.HasPrefix(name, impersonatePrefix) || isSet(set, name) {
			continue
		}
		remove = append(remove, name)
	}
	return set, remove
}

func isSet(set []authz.Header, name string) bool {
	for _, h := range set {
		if h.Name == name {
			return true
		}
	}
	return false
}

// tokenFile holds a service-account token read from disk, re-read at most
// every TokenRefreshInterval. Kubernetes replaces projected tokens by
// swapping a symlink, so a plain re-read sees the new one.
type tokenFile struct {
	path string
	now  func() time.Time

	value atomic.Pointer[string] // "Bearer <token>"
	next  atomic.Int64           // UnixNano of the next re-read
	mu    sync.Mutex             // one re-reader at a time
}

// bearer returns the Authorization value. On the hot path it costs a clock
// read and two atomic loads; one request per interval pays a file read.
// A failed re-read keeps the previous token: it may still be valid, and an
// expired one fails closed at the Kubernetes API.
func (t *tokenFile) bearer() string {
	if now := t.now(); now.UnixNano() >= t.next.Load() && t.mu.TryLock() {
		t.next.Store(now.Add(TokenRefreshInterval).UnixNano())
		_ = t.load()
		t.mu.Unlock()
	}
	return *t.value.Load()
}

func (t *tokenFile) load() error {
	b, err := os.ReadFile(t.path)
	if err != nil {
		return err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("%s is empty", t.path)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= 0x20 || c == 0x7f {
			return fmt.Errorf("%s holds whitespace or control characters inside the token", t.path)
		}
	}
	if old := t.value.Load(); old != nil && (*old)[len("Bearer "):] == tok {
		return nil
	}
	v := "Bearer " + tok
	t.value.Store(&v)
	return nil
}
