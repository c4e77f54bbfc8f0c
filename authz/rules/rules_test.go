package rules_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/authz/rules"
)

const (
	collector = "spiffe://cluster.local/ns/observability/sa/otel-collector"
	gateway   = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
)

var (
	alice   = &authz.Identity{Kind: authz.KindUser, Username: "alice", Groups: []string{"team-a"}, Roles: []string{"viewer"}, Method: "jwt"}
	bob     = &authz.Identity{Kind: authz.KindUser, Username: "bob", Groups: []string{"team-b"}, Roles: []string{"phoenix-admin"}, Method: "jwt"}
	nobody  = authz.Anonymous
	trainer = &authz.Identity{Kind: authz.KindWorkload, Username: "svc-trainer", SPIFFEID: "spiffe://cluster.local/ns/ml/sa/trainer", Method: "spiffe"}
)

func TestNewRulesErrors(t *testing.T) {
	tests := []struct {
		name    string
		rules   []rules.Config
		wantErr string
	}{
		{name: "no rules", rules: nil, wantErr: "rules: rules: at least one rule"},
		{name: "empty rule", rules: []rules.Config{{}}, wantErr: "rules: rules[0].paths: a rule needs paths or path_prefixes"},
		{name: "no decision", rules: []rules.Config{{Paths: []string{"/"}}}, wantErr: "rules[0].allow: a rule needs exactly one of"},
		{name: "two decisions", rules: []rules.Config{{Paths: []string{"/"}, Allow: "anyone", Groups: []string{"a"}}}, wantErr: "rules[0].allow: a rule needs exactly one of allow, groups, roles or principals (found 2)"},
		{name: "unknown allow", rules: []rules.Config{{Paths: []string{"/"}, Allow: "everyone"}}, wantErr: `rules[0].allow: "everyone" is not one of`},
		{name: "bad method", rules: []rules.Config{{Methods: []string{"GETT"}, Paths: []string{"/"}, Allow: "anyone"}}, wantErr: `rules[0].methods[0]: "GETT"`},
		{name: "lower-case method", rules: []rules.Config{{Methods: []string{"get"}, Paths: []string{"/"}, Allow: "anyone"}}, wantErr: `rules[0].methods[0]: "get"`},
		{name: "duplicate method", rules: []rules.Config{{Methods: []string{"GET", "GET"}, Paths: []string{"/"}, Allow: "anyone"}}, wantErr: `rules[0].methods[1]: "GET" is listed twice`},
		{name: "relative path", rules: []rules.Config{{Paths: []string{"healthz"}, Allow: "anyone"}}, wantErr: `rules[0].paths[0]: "healthz" does not start with "/"`},
		{name: "empty path", rules: []rules.Config{{Paths: []string{""}, Allow: "anyone"}}, wantErr: `rules[0].paths[0]`},
		{name: "relative prefix in second rule", rules: []rules.Config{{Paths: []string{"/"}, Allow: "anyone"}, {PathPrefixes: []string{"kiali/"}, Allow: "anyone"}}, wantErr: `rules[1].path_prefixes[0]: "kiali/" does not start`},
		{name: "encoded path", rules: []rules.Config{{Paths: []string{"/a%20b"}, Allow: "anyone"}}, wantErr: "rules[0].paths[0]: \"/a%20b\": write paths decoded"},
		{name: "dot segment", rules: []rules.Config{{PathPrefixes: []string{"/a/../b"}, Allow: "anyone"}}, wantErr: "rules[0].path_prefixes[0]: \"/a/../b\": dot segment"},
		{name: "double slash", rules: []rules.Config{{PathPrefixes: []string{"//a"}, Allow: "anyone"}}, wantErr: "rules[0].path_prefixes[0]"},
		{name: "query in path", rules: []rules.Config{{Paths: []string{"/a?b=c"}, Allow: "anyone"}}, wantErr: "rules[0].paths[0]: \"/a?b=c\": a path cannot carry a query"},
		{name: "empty group", rules: []rules.Config{{Paths: []string{"/"}, Groups: []string{"/"}}}, wantErr: "rules[0].groups[0]: empty group name"},
		{name: "empty role", rules: []rules.Config{{Paths: []string{"/"}, Roles: []string{""}}}, wantErr: "rules[0].roles[0]: empty role name"},
		{name: "istio-style principal", rules: []rules.Config{{Paths: []string{"/"}, Principals: []string{"cluster.local/ns/a/sa/b"}}}, wantErr: "rules[0].principals[0]: \"cluster.local/ns/a/sa/b\" is not a full SPIFFE ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rules.New(tt.rules)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.True(t, strings.HasPrefix(err.Error(), "rules: rules"), err.Error())
		})
	}
}

func testRules(t testing.TB) *rules.Rules {
	t.Helper()
	rs, err := rules.New([]rules.Config{
		{Methods: []string{"GET", "HEAD"}, Paths: []string{"/healthz"}, Allow: "anyone"},         // 0
		{PathPrefixes: []string{"/admin"}, Roles: []string{"phoenix-admin"}},                     // 1
		{PathPrefixes: []string{"/closed/"}, Allow: "deny"},                                      // 2
		{Methods: []string{"POST"}, Paths: []string{"/ingest"}, Principals: []string{collector}}, // 3
		{PathPrefixes: []string{"/team/"}, Groups: []string{"/team-a", "team-c"}},                // 4
		{Methods: []string{"GET"}, PathPrefixes: []string{"/static"}, Allow: "anyone"},           // 5
		{PathPrefixes: []string{"/api/"}, Allow: "authenticated"},                                // 6
	})
	require.NoError(t, err)
	return rs
}

func TestRulesDecide(t *testing.T) {
	rs := testRules(t)
	tests := []struct {
		name      string
		method    string
		target    string
		principal string
		id        *authz.Identity
		allowed   bool
		status    int
		reason    authz.Reason
		message   string // substring of the deny message
	}{
		{name: "health check anonymous", method: "GET", target: "/healthz", id: nobody, allowed: true},
		{name: "health check HEAD", method: "HEAD", target: "/healthz", id: nobody, allowed: true},
		{name: "health check wrong method", method: "POST", target: "/healthz", id: alice, status: 403, reason: authz.ReasonNoRuleMatched},
		{name: "health check exact only", method: "GET", target: "/healthz/x", id: alice, status: 403, reason: authz.ReasonNoRuleMatched},
		{name: "admin role holder", method: "DELETE", target: "/admin/users/1", id: bob, allowed: true},
		{name: "admin prefix itself", method: "GET", target: "/admin", id: bob, allowed: true},
		{name: "admin lacks role", method: "GET", target: "/admin", id: alice, status: 403, reason: authz.ReasonForbidden, message: "requires one of the roles: phoenix-admin"},
		{name: "admin anonymous", method: "GET", target: "/admin", id: nobody, status: 401, reason: authz.ReasonUnauthenticated},
		{name: "admin nil identity", method: "GET", target: "/admin", id: nil, status: 401, reason: authz.ReasonUnauthenticated},
		{name: "adminX is not under /admin", method: "GET", target: "/adminX", id: bob, status: 403, reason: authz.ReasonNoRuleMatched},
		{name: "explicit deny", method: "GET", target: "/closed/x", id: bob, status: 403, reason: authz.ReasonForbidden, message: "closed by policy (rule 2)"},
		{name: "explicit deny prefix itself", method: "GET", target: "/closed/", id: nobody, status: 403, reason: authz.ReasonForbidden},
		{name: "slash prefix does not match without slash", method: "GET", target: "/closed", id: bob, status: 403, reason: authz.ReasonNoRuleMatched},
		{name: "principal allowed without identity", method: "POST", target: "/ingest", principal: collector, id: nobody, allowed: true},
		{name: "other principal", method: "POST", target: "/ingest", principal: gateway, id: alice, status: 403, reason: authz.ReasonForbidden, message: "open only to the mTLS workloads: " + collector},
		{name: "no principal", method: "POST", target: "/ingest", id: nobody, status: 403, reason: authz.ReasonForbidden},
		{name: "workload identity is not its principal", method: "POST", target: "/ingest", principal: trainer.SPIFFEID, id: trainer, status: 403, reason: authz.ReasonForbidden},
		{name: "group member with slash in config", method: "GET", target: "/team/x", id: alice, allowed: true},
		{name: "group non-member", method: "GET", target: "/team/x", id: bob, status: 403, reason: authz.ReasonForbidden, message: "membership in one of the groups: team-a, team-c"},
		{name: "group anonymous", method: "GET", target: "/team/x", id: nobody, status: 401, reason: authz.ReasonUnauthenticated},
		{name: "group workload without groups", method: "GET", target: "/team/x", id: trainer, status: 403, reason: authz.ReasonForbidden},
		{name: "static segment", method: "GET", target: "/static/app.js", id: nobody, allowed: true},
		{name: "static itself", method: "GET", target: "/static", id: nobody, allowed: true},
		{name: "staticX not static", method: "GET", target: "/staticX/app.js", id: nobody, status: 403, reason: authz.ReasonNoRuleMatched},
		{name: "encoded path decodes before matching", method: "GET", target: "/st%61tic/app.js", id: nobody, allowed: true},
		{name: "api authenticated", method: "POST", target: "/api/x", id: alice, allowed: true},
		{name: "api workload", method: "POST", target: "/api/x", id: trainer, allowed: true},
		{name: "api anonymous", method: "POST", target: "/api/x", id: nobody, status: 401, reason: authz.ReasonUnauthenticated},
		{name: "unknown method only matches any-method rules", method: "PROPFIND", target: "/api/x", id: alice, allowed: true},
		{name: "unknown method on method rule", method: "PROPFIND", target: "/healthz", id: alice, status: 403, reason: authz.ReasonNoRuleMatched},
		{name: "no rule", method: "GET", target: "/", id: bob, status: 403, reason: authz.ReasonNoRuleMatched},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rs.Decide(t.Context(), authztest.NewRequest(t, tt.method, tt.target, tt.principal, nil), tt.id)
			if tt.allowed {
				assert.True(t, d.Allowed, "denied: %s %s", d.Reason, d.Message)
				assert.Equal(t, authz.ReasonAllowed, d.Reason)
				return
			}
			assert.False(t, d.Allowed)
			assert.Equal(t, tt.status, d.Status)
			assert.Equal(t, tt.reason, d.Reason)
			assert.NotEmpty(t, d.Message)
			assert.Contains(t, d.Message, tt.message)
			if tt.status == http.StatusUnauthorized {
				assert.Equal(t, []authz.Header{{Name: "www-authenticate", Value: "Bearer"}}, d.ResponseHeaders)
			} else {
				assert.Empty(t, d.ResponseHeaders)
			}
		})
	}
}

func TestRulesTrace(t *testing.T) {
	rs := testRules(t)
	tr := &authz.Trace{}
	ctx := authz.WithTrace(t.Context(), tr)
	rs.Decide(ctx, authztest.NewRequest(t, "GET", "/static/x", "", nil), nobody)
	rs.Decide(ctx, authztest.NewRequest(t, "GET", "/nowhere", "", nil), nobody)
	require.Len(t, tr.Steps, 2)
	assert.Contains(t, tr.Steps[0].Detail, "rule 5")
	assert.Contains(t, tr.Steps[1].Detail, "no rule")
}

func TestRulesDecideDoesNotAllocate(t *testing.T) {
	rs := testRules(t)
	ctx := t.Context()
	cases := []struct {
		r  *authz.Request
		id *authz.Identity
	}{
		{authztest.NewRequest(t, "GET", "/static/app.js", "", nil), nobody},
		{authztest.NewRequest(t, "GET", "/team/x", "", nil), bob},
		{authztest.NewRequest(t, "GET", "/api/x", "", nil), nobody},
		{authztest.NewRequest(t, "GET", "/nowhere", "", nil), alice},
		{authztest.NewRequest(t, "POST", "/ingest", gateway, nil), alice},
	}
	for _, c := range cases {
		allocs := testing.AllocsPerRun(100, func() { rs.Decide(ctx, c.r, c.id) })
		assert.Zero(t, allocs, "%s %s", c.r.Method, c.r.Path)
	}
}

func TestMatchPrefix(t *testing.T) {
	tests := []struct {
		prefix, path string
		want         bool
	}{
		{"/", "/", true},
		{"/", "/anything/below", true},
		{"/static", "/static", true},
		{"/static", "/static/", true},
		{"/static", "/static/a.js", true},
		{"/static", "/staticX", false},
		{"/static", "/stati", false},
		{"/static", "/", false},
		{"/kiali/api/", "/kiali/api/", true},
		{"/kiali/api/", "/kiali/api/status", true},
		{"/kiali/api/", "/kiali/api", false},
		{"/kiali/api/", "/kiali/apix", false},
		{"/kiali", "/kiali-other", false},
		{"", "/", false},
		{"", "0", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, rules.MatchPrefix(tt.prefix, tt.path), "MatchPrefix(%q, %q)", tt.prefix, tt.path)
	}
}

// FuzzMatchPrefix checks that a prefix match is always a segment-boundary
// match: every whole segment of the prefix equals the path's segment at the
// same position, and a last partial segment can only come from a prefix
// ending in "/". It also checks that a compiled rule agrees with MatchPrefix.
func FuzzMatchPrefix(f *testing.F) {
	for _, s := range [][2]string{
		{"/static", "/staticX"}, {"/static", "/static/x"}, {"/a/", "/a/b"}, {"/a/", "/a"},
		{"/", "/x"}, {"/kiali/api/", "/kiali/api/status"}, {"/a", "/a"}, {"/a/b", "/a/bc/d"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, prefix, path string) {
		match := rules.MatchPrefix(prefix, path)

		// A compiled rule must agree with MatchPrefix, both ways, for every
		// prefix and path that the configuration and NewRequest accept.
		if rs, err := rules.New([]rules.Config{{PathPrefixes: []string{prefix}, Allow: "anyone"}}); err == nil {
			if r, deny := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "h", Target: path}); deny == nil && r.Path == path {
				if d := rs.Decide(t.Context(), r, authz.Anonymous); d.Allowed != match {
					t.Fatalf("rule with prefix %q on %q: allowed=%v, MatchPrefix=%v", prefix, path, d.Allowed, match)
				}
			}
		}

		if !match {
			return
		}
		if !strings.HasPrefix(path, prefix) {
			t.Fatalf("MatchPrefix(%q, %q) without a string prefix", prefix, path)
		}
		pre := strings.Split(prefix, "/")
		segs := strings.Split(path, "/")
		whole := pre
		if strings.HasSuffix(prefix, "/") {
			whole = pre[:len(pre)-1] // the last, empty element marks "and below"
		}
		if len(whole) > len(segs) {
			t.Fatalf("MatchPrefix(%q, %q): prefix has more segments than the path", prefix, path)
		}
		for i, s := range whole {
			if segs[i] != s {
				t.Fatalf("MatchPrefix(%q, %q): segment %d is %q in the path, %q in the prefix", prefix, path, i, segs[i], s)
			}
		}
	})
}

func BenchmarkRulesDecide(b *testing.B) {
	rs := testRules(b)
	r := authztest.NewRequest(b, "POST", "/api/experiments/x", "", nil)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if d := rs.Decide(ctx, r, alice); !d.Allowed {
			b.Fatal(d.Reason)
		}
	}
}
