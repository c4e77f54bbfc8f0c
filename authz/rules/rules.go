package rules

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Config is one rule of a rule-based application, as written in YAML.
// A rule matches when the method and the path match; it then needs exactly
// one of Allow, Groups, Roles or Principals.
type Config struct {
	// Methods the rule applies to (upper case); empty means any method.
	Methods []string `yaml:"methods"`
	// Paths are exact, decoded request paths.
	Paths []string `yaml:"paths"`
	// PathPrefixes match whole path segments: "/kiali/api/" matches itself
	// and everything below it; "/static" matches "/static" and "/static/…",
	// never "/staticX".
	PathPrefixes []string `yaml:"path_prefixes"`
	// Allow is "anyone", "authenticated" or "deny".
	Allow string `yaml:"allow"`
	// Groups allows members of any of these groups (a leading "/" is
	// ignored).
	Groups []string `yaml:"groups"`
	// Roles allows holders of any of these roles.
	Roles []string `yaml:"roles"`
	// Principals allows these mTLS peers, compared exactly with Envoy's
	// source.principal (full "spiffe://…" IDs).
	Principals []string `yaml:"principals"`
}

// Allow values of Config.
const (
	AllowAnyone        = "anyone"
	AllowAuthenticated = "authenticated"
	AllowDeny          = "deny"
)

type need uint8

const (
	needAnyone need = iota + 1
	needAuthenticated
	needDeny
	needGroup
	needRole
	needPrincipal
)

// methodBit gives each method we accept in a rule one bit, so that a rule's
// method set is a mask and matching a method is a switch, not a search.
func methodBit(m string) uint16 {
	switch m {
	case http.MethodGet:
		return 1 << 0
	case http.MethodHead:
		return 1 << 1
	case http.MethodPost:
		return 1 << 2
	case http.MethodPut:
		return 1 << 3
	case http.MethodPatch:
		return 1 << 4
	case http.MethodDelete:
		return 1 << 5
	case http.MethodOptions:
		return 1 << 6
	case http.MethodConnect:
		return 1 << 7
	case http.MethodTrace:
		return 1 << 8
	}
	return 0
}

type rule struct {
	index    int
	methods  uint16 // 0: any method
	paths    []string
	prefixes []string
	need     need
	values   []string // groups, roles or principals
	// message is the deny message, built once so a deny allocates nothing.
	message string
}

// Rules is an ordered rule list, an authz.Policy: the first rule whose method
// and path match decides; a request no rule matches is denied.
type Rules struct {
	rules []rule
}

// bearerChallenge is shared by every 401; its capacity is its length, so an
// append by a caller copies instead of writing into it.
var bearerChallenge = []authz.Header{{Name: "www-authenticate", Value: "Bearer"}}[:1:1]

// New validates and compiles cfg. Errors name the rule's index and the
// offending key.
func New(cfg []Config) (*Rules, error) {
	if len(cfg) == 0 {
		return nil, fmt.Errorf("rules: rules: at least one rule is required (a policy with none denies everything)")
	}
	rs := &Rules{rules: make([]rule, 0, len(cfg))}
	for i, c := range cfg {
		ru, err := compileRule(i, c)
		if err != nil {
			return nil, fmt.Errorf("rules: rules[%d].%w", i, err)
		}
		rs.rules = append(rs.rules, ru)
	}
	return rs, nil
}

func compileRule(i int, c Config) (rule, error) {
	ru := rule{index: i}
	for j, m := range c.Methods {
		b := methodBit(m)
		if b == 0 {
			return rule{}, fmt.Errorf("methods[%d]: %q is not an upper-case HTTP method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE)", j, m)
		}
		if ru.methods&b != 0 {
			return rule{}, fmt.Errorf("methods[%d]: %q is listed twice", j, m)
		}
		ru.methods |= b
	}
	if len(c.Paths)+len(c.PathPrefixes) == 0 {
		return rule{}, fmt.Errorf("paths: a rule needs paths or path_prefixes (use path_prefixes: [/] for every path)")
	}
	for j, p := range c.Paths {
		if err := checkRulePath(p); err != nil {
			return rule{}, fmt.Errorf("paths[%d]: %w", j, err)
		}
	}
	for j, p := range c.PathPrefixes {
		if err := checkRulePath(p); err != nil {
			return rule{}, fmt.Errorf("path_prefixes[%d]: %w", j, err)
		}
	}
	ru.paths = append([]string(nil), c.Paths...)
	ru.prefixes = append([]string(nil), c.PathPrefixes...)

	set := 0
	if c.Allow != "" {
		set++
	}
	if len(c.Groups) > 0 {
		set++
	}
	if len(c.Roles) > 0 {
		set++
	}
	if len(c.Principals) > 0 {
		set++
	}
	if set != 1 {
		return rule{}, fmt.Errorf("allow: a rule needs exactly one of allow, groups, roles or principals (found %d)", set)
	}
	switch {
	case c.Allow != "":
		switch c.Allow {
		case AllowAnyone:
			ru.need = needAnyone
		case AllowAuthenticated:
			ru.need = needAuthenticated
		case AllowDeny:
			ru.need = needDeny
			ru.message = fmt.Sprintf("this path is closed by policy (rule %d)", i)
		default:
			return rule{}, fmt.Errorf("allow: %q is not one of anyone, authenticated, deny", c.Allow)
		}
	case len(c.Groups) > 0:
		ru.need = needGroup
		for j, g := range c.Groups {
			g = authz.NormalizeGroup(g)
			if g == "" {
				return rule{}, fmt.Errorf("groups[%d]: empty group name", j)
			}
			ru.values = append(ru.values, g)
		}
		ru.message = "this path requires membership in one of the groups: " + strings.Join(ru.values, ", ")
	case len(c.Roles) > 0:
		ru.need = needRole
		for j, r := range c.Roles {
			if r == "" {
				return rule{}, fmt.Errorf("roles[%d]: empty role name", j)
			}
			ru.values = append(ru.values, r)
		}
		ru.message = "this path requires one of the roles: " + strings.Join(ru.values, ", ")
	default:
		ru.need = needPrincipal
		for j, p := range c.Principals {
			// Istio's AuthorizationPolicy writes principals without the
			// scheme; Envoy's source.principal has it. Refuse the Istio form
			// rather than silently never matching.
			if !strings.HasPrefix(p, "spiffe://") || len(p) == len("spiffe://") || strings.ContainsAny(p, " \t\r\n") {
				return rule{}, fmt.Errorf("principals[%d]: %q is not a full SPIFFE ID (spiffe://<trust domain>/ns/<namespace>/sa/<service account>)", j, p)
			}
			ru.values = append(ru.values, p)
		}
		ru.message = "this path is open only to the mTLS workloads: " + strings.Join(ru.values, ", ")
	}
	return ru, nil
}

// checkRulePath requires a path exactly as authz.CanonicalPath hands it to
// us (decoded, no dot or empty segments): any other spelling could never
// match, and a rule that silently never matches is a configuration bug.
func checkRulePath(p string) error {
	if p == "" || p[0] != '/' {
		return fmt.Errorf("%q does not start with \"/\"", p)
	}
	if strings.IndexByte(p, '%') >= 0 {
		return fmt.Errorf("%q: write paths decoded, without percent-encoding", p)
	}
	if strings.IndexByte(p, '?') >= 0 {
		return fmt.Errorf("%q: a path cannot carry a query", p)
	}
	canon, reason := authz.CanonicalPath(p)
	if reason != "" {
		return fmt.Errorf("%q: %s", p, reason)
	}
	if canon != p {
		return fmt.Errorf("%q is not canonical", p)
	}
	return nil
}

// MatchPrefix reports whether path lies under prefix, on a segment boundary:
// a prefix ending in "/" matches itself and everything below it; any other
// prefix matches itself and paths continuing with "/". An empty prefix
// matches nothing.
func MatchPrefix(prefix, path string) bool {
	if prefix == "" || !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

func (ru *rule) matches(r *authz.Request) bool {
	if ru.methods != 0 && ru.methods&methodBit(r.Method) == 0 {
		return false
	}
	for _, p := range ru.paths {
		if r.Path == p {
			return true
		}
	}
	for _, p := range ru.prefixes {
		if MatchPrefix(p, r.Path) {
			return true
		}
	}
	return false
}

// Decide applies the first matching rule.
func (rs *Rules) Decide(ctx context.Context, r *authz.Request, id *authz.Identity) authz.Decision {
	tr := authz.TraceFrom(ctx)
	for i := range rs.rules {
		ru := &rs.rules[i]
		if !ru.matches(r) {
			continue
		}
		if tr != nil {
			tr.Addf("route", "rule %d matches %s %s", ru.index, r.Method, r.Path)
		}
		return ru.decide(r, id)
	}
	if tr != nil {
		tr.Addf("route", "no rule matches %s %s", r.Method, r.Path)
	}
	return authz.Deny(http.StatusForbidden, authz.ReasonNoRuleMatched, "no rule allows this request")
}

func (ru *rule) decide(r *authz.Request, id *authz.Identity) authz.Decision {
	switch ru.need {
	case needAnyone:
		return authz.Allow(authz.ReasonAllowed)
	case needDeny:
		return authz.Deny(http.StatusForbidden, authz.ReasonForbidden, ru.message)
	case needPrincipal:
		// The credential here is the peer certificate: a bearer token would
		// not help, so a mismatch is a 403 without a challenge.
		for _, p := range ru.values {
			if r.Principal == p {
				return authz.Allow(authz.ReasonAllowed)
			}
		}
		return authz.Deny(http.StatusForbidden, authz.ReasonForbidden, ru.message)
	}
	if !id.Authenticated() {
		d := authz.Deny(http.StatusUnauthorized, authz.ReasonUnauthenticated, "this path requires an authenticated caller")
		d.ResponseHeaders = bearerChallenge
		return d
	}
	switch ru.need {
	case needAuthenticated:
		return authz.Allow(authz.ReasonAllowed)
	case needGroup:
		for _, g := range ru.values {
			if id.InGroup(g) {
				return authz.Allow(authz.ReasonAllowed)
			}
		}
	case needRole:
		for _, role := range ru.values {
			if id.HasRole(role) {
				return authz.Allow(authz.ReasonAllowed)
			}
		}
	}
	return authz.Deny(http.StatusForbidden, authz.ReasonForbidden, ru.message)
}
