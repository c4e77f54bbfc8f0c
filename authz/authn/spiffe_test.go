package authn_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
)

func TestParseSPIFFEID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		td      string
		path    string
		wantErr string
	}{
		{name: "istio workload", in: "spiffe://cluster.local/ns/foo/sa/curl", td: "cluster.local", path: "/ns/foo/sa/curl"},
		{name: "trust domain only", in: "spiffe://cluster.local", td: "cluster.local", path: ""},
		{name: "allowed punctuation", in: "spiffe://a-b_c.9/x.y/Z-_", td: "a-b_c.9", path: "/x.y/Z-_"},
		{name: "upper-case scheme", in: "SPIFFE://cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{name: "other scheme", in: "https://cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{name: "istio policy form without scheme", in: "cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{name: "empty", in: "", wantErr: "scheme"},
		{name: "empty trust domain", in: "spiffe:///ns/a", wantErr: "empty trust domain"},
		{name: "upper-case trust domain", in: "spiffe://Cluster.local/ns/a/sa/b", wantErr: "trust domain"},
		{name: "port", in: "spiffe://cluster.local:443/ns/a", wantErr: "trust domain"},
		{name: "user info", in: "spiffe://u@cluster.local/ns/a", wantErr: "trust domain"},
		{name: "trailing slash", in: "spiffe://cluster.local/ns/a/", wantErr: "empty path segment"},
		{name: "root path", in: "spiffe://cluster.local/", wantErr: "empty path segment"},
		{name: "double slash", in: "spiffe://cluster.local/ns//sa/b", wantErr: "empty path segment"},
		{name: "dot segment", in: "spiffe://cluster.local/ns/./sa/b", wantErr: "dot segment"},
		{name: "dot dot segment", in: "spiffe://cluster.local/ns/../sa/b", wantErr: "dot segment"},
		{name: "percent encoding", in: "spiffe://cluster.local/ns/a%2Fb", wantErr: "not allowed in path"},
		{name: "query", in: "spiffe://cluster.local/ns/a?x=1", wantErr: "not allowed in path"},
		{name: "fragment", in: "spiffe://cluster.local/ns/a#x", wantErr: "not allowed in path"},
		{name: "space", in: "spiffe://cluster.local/ns/a b", wantErr: "not allowed in path"},
		{name: "too long", in: "spiffe://cluster.local/" + strings.Repeat("a", 2048), wantErr: "longer than"},
		{name: "exactly max length", in: "spiffe://cluster.local/" + strings.Repeat("a", 2048-len("spiffe://cluster.local/")), td: "cluster.local", path: "/" + strings.Repeat("a", 2048-len("spiffe://cluster.local/"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td, path, err := authn.ParseSPIFFEID(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, authn.ErrInvalidSPIFFEID)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.True(t, strings.HasPrefix(err.Error(), "authn: "), err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.td, td)
			assert.Equal(t, tt.path, path)
		})
	}
}

func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://cluster.local/ns/foo/sa/bar",
		"spiffe://cluster.local",
		"spiffe://td/a/./b",
		"spiffe://td//a",
		"spiffe://TD/a",
		"spiffe://td/a%2f",
		"spiffe://td/a?b#c",
		"cluster.local/ns/a/sa/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		td, path, err := authn.ParseSPIFFEID(s)
		if err != nil {
			return
		}
		if got := "spiffe://" + td + path; got != s {
			t.Fatalf("ParseSPIFFEID(%q) = %q, %q; re-serializes to %q", s, td, path, got)
		}
		if len(s) > 2048 || td == "" || (path != "" && path[0] != '/') {
			t.Fatalf("ParseSPIFFEID(%q) accepted an invalid ID: td=%q path=%q", s, td, path)
		}
		if strings.ContainsAny(td+path, "%?#@: \\") {
			t.Fatalf("ParseSPIFFEID(%q) accepted a delimiter or escape", s)
		}
		if path != "" {
			for _, seg := range strings.Split(path[1:], "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("ParseSPIFFEID(%q) accepted segment %q", s, seg)
				}
			}
		}
		if strings.ToLower(td) != td {
			t.Fatalf("ParseSPIFFEID(%q) accepted upper-case trust domain %q", s, td)
		}
	})
}

func testSPIFFEConfig() authn.SPIFFEConfig {
	return authn.SPIFFEConfig{
		TrustDomain:        "cluster.local",
		TrustDomainAliases: []string{"old.example.org"},
		Workloads: []authn.SPIFFEWorkloadConfig{
			{ID: "ns/ml/sa/trainer", Username: "svc-trainer", Groups: []string{"/ml-team", "batch"}},
			{ID: "spiffe://cluster.local/ns/ci/sa/runner", Username: "svc-ci"},
		},
	}
}

func TestNewSPIFFEConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*authn.SPIFFEConfig)
		wantErr string
	}{
		{name: "missing trust domain", edit: func(c *authn.SPIFFEConfig) { c.TrustDomain = "" }, wantErr: "trust_domain: "},
		{name: "aliases without trust domain", edit: func(c *authn.SPIFFEConfig) { c.TrustDomain, c.Workloads = "", nil }, wantErr: "trust_domain: "},
		{name: "upper-case trust domain", edit: func(c *authn.SPIFFEConfig) { c.TrustDomain = "Cluster.Local" }, wantErr: "trust_domain: "},
		{name: "bad alias", edit: func(c *authn.SPIFFEConfig) { c.TrustDomainAliases = []string{"a/b"} }, wantErr: "trust_domain_aliases[0]"},
		{name: "alias equals trust domain", edit: func(c *authn.SPIFFEConfig) { c.TrustDomainAliases = []string{"cluster.local"} }, wantErr: "listed twice"},
		{name: "duplicate id", edit: func(c *authn.SPIFFEConfig) {
			c.Workloads = append(c.Workloads, authn.SPIFFEWorkloadConfig{ID: "ns/ml/sa/trainer", Username: "x"})
		}, wantErr: "workloads[2].id: \"ns/ml/sa/trainer\" names the same workload as workloads[0]"},
		{name: "duplicate id across relative and full alias form", edit: func(c *authn.SPIFFEConfig) {
			c.Workloads = append(c.Workloads, authn.SPIFFEWorkloadConfig{ID: "spiffe://old.example.org/ns/ml/sa/trainer", Username: "x"})
		}, wantErr: "names the same workload as workloads[0]"},
		{name: "foreign trust domain", edit: func(c *authn.SPIFFEConfig) {
			c.Workloads[1].ID = "spiffe://evil.example/ns/ci/sa/runner"
		}, wantErr: "workloads[1].id: \"spiffe://evil.example/ns/ci/sa/runner\" is outside trust domain"},
		{name: "trust domain id as workload", edit: func(c *authn.SPIFFEConfig) { c.Workloads[1].ID = "spiffe://cluster.local" }, wantErr: "not a workload"},
		{name: "relative id of wrong shape", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].ID = "ns/ml/trainer" }, wantErr: "workloads[0].id: "},
		{name: "relative id with leading slash", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].ID = "/ns/ml/sa/trainer" }, wantErr: "workloads[0].id: "},
		{name: "relative id with istio trust domain prefix", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].ID = "cluster.local/ns/ml/sa/trainer" }, wantErr: "workloads[0].id: "},
		{name: "relative id with bad characters", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].ID = "ns/ml/sa/tr%41iner" }, wantErr: "not allowed in path"},
		{name: "relative id with dot segment", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].ID = "ns/../sa/x" }, wantErr: "dot segment"},
		{name: "missing username", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].Username = "" }, wantErr: "workloads[0].username: required"},
		{name: "username with newline", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].Username = "a\nb" }, wantErr: "workloads[0].username"},
		{name: "empty group", edit: func(c *authn.SPIFFEConfig) { c.Workloads[0].Groups = []string{"/"} }, wantErr: "workloads[0].groups[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testSPIFFEConfig()
			tt.edit(&cfg)
			_, err := authn.NewSPIFFE(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.True(t, strings.HasPrefix(err.Error(), "authn: spiffe: "), err.Error())
		})
	}
}

func TestSPIFFEEmptyConfig(t *testing.T) {
	s, err := authn.NewSPIFFE(authn.SPIFFEConfig{})
	require.NoError(t, err)
	id, err := s.Authenticate(t.Context(), newRequest(t, "spiffe://cluster.local/ns/ml/sa/trainer", nil))
	require.NoError(t, err)
	assert.Nil(t, id)
}

func newRequest(t *testing.T, principal string, headers map[string]string) *authz.Request {
	t.Helper()
	r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "mlflow.example.com", Target: "/api/2.0/mlflow/experiments/get", Headers: headers, Principal: principal})
	require.Nil(t, d)
	return r
}

func TestSPIFFEAuthenticate(t *testing.T) {
	s, err := authn.NewSPIFFE(testSPIFFEConfig())
	require.NoError(t, err)

	tests := []struct {
		name      string
		principal string
		headers   map[string]string
		wantUser  string // empty: no identity
		wantID    string
		groups    []string
	}{
		{name: "mapped relative id", principal: "spiffe://cluster.local/ns/ml/sa/trainer", wantUser: "svc-trainer", wantID: "spiffe://cluster.local/ns/ml/sa/trainer", groups: []string{"ml-team", "batch"}},
		{name: "mapped full id", principal: "spiffe://cluster.local/ns/ci/sa/runner", wantUser: "svc-ci", wantID: "spiffe://cluster.local/ns/ci/sa/runner"},
		{name: "alias trust domain maps to the same workload", principal: "spiffe://old.example.org/ns/ml/sa/trainer", wantUser: "svc-trainer", wantID: "spiffe://old.example.org/ns/ml/sa/trainer", groups: []string{"ml-team", "batch"}},
		{name: "full id in main domain also maps in alias", principal: "spiffe://old.example.org/ns/ci/sa/runner", wantUser: "svc-ci", wantID: "spiffe://old.example.org/ns/ci/sa/runner"},
		{name: "unmapped principal in our domain: the ingress gateway", principal: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"},
		{name: "foreign trust domain with a mapped path", principal: "spiffe://evil.example/ns/ml/sa/trainer"},
		{name: "unparsable principal", principal: "spiffe://cluster.local/ns/ml/sa/trainer/"},
		{name: "non-canonical case", principal: "spiffe://CLUSTER.local/ns/ml/sa/trainer"},
		{name: "istio policy form is not a principal", principal: "cluster.local/ns/ml/sa/trainer"},
		{name: "DNS SAN principal", principal: "trainer.ml.svc.cluster.local"},
		{name: "no peer", principal: ""},
		{name: "forged XFCC on a plaintext connection is ignored", principal: "", headers: map[string]string{
			"x-forwarded-client-cert": `By=spiffe://cluster.local/ns/mlflow/sa/mlflow;Hash=abc;Subject="";URI=spiffe://cluster.local/ns/ml/sa/trainer`,
		}},
		{name: "XFCC naming another workload does not override the peer", principal: "spiffe://cluster.local/ns/ci/sa/runner", headers: map[string]string{
			"x-forwarded-client-cert": `By=spiffe://cluster.local/ns/mlflow/sa/mlflow;URI=spiffe://cluster.local/ns/ml/sa/trainer`,
		}, wantUser: "svc-ci", wantID: "spiffe://cluster.local/ns/ci/sa/runner"},
		{name: "forged XFCC behind the gateway is ignored", principal: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account", headers: map[string]string{
			"x-forwarded-client-cert": `URI=spiffe://cluster.local/ns/ml/sa/trainer`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := s.Authenticate(t.Context(), newRequest(t, tt.principal, tt.headers))
			require.NoError(t, err)
			if tt.wantUser == "" {
				assert.Nil(t, id)
				return
			}
			require.NotNil(t, id)
			assert.Equal(t, authz.KindWorkload, id.Kind)
			assert.Equal(t, tt.wantUser, id.Username)
			assert.Equal(t, tt.wantID, id.SPIFFEID)
			assert.Equal(t, "spiffe", id.Method)
			assert.Equal(t, len(tt.groups), len(id.Groups))
			for _, g := range tt.groups {
				assert.True(t, id.InGroup(g), g)
			}
			assert.True(t, id.Authenticated())
		})
	}
}

// TestSPIFFEInEngine runs the authenticator through the real engine: an
// unmapped peer stays anonymous, so a policy needing a user denies it.
func TestSPIFFEInEngine(t *testing.T) {
	s, err := authn.NewSPIFFE(testSPIFFEConfig())
	require.NoError(t, err)
	needUser := authz.PolicyFunc(func(_ context.Context, _ *authz.Request, id *authz.Identity) authz.Decision {
		if !id.Authenticated() {
			return authz.Deny(http.StatusUnauthorized, authz.ReasonUnauthenticated, "log in")
		}
		return authz.Allow(authz.ReasonAllowed)
	})
	e, err := authz.NewEngine(authz.Config{
		Apps:           []*authz.App{{Name: "mlflow", Hosts: []string{"mlflow.example.com"}, Policy: needUser}},
		Authenticators: []authz.Authenticator{s},
	})
	require.NoError(t, err)

	d := e.Check(t.Context(), newRequest(t, "spiffe://cluster.local/ns/ml/sa/trainer", nil))
	assert.True(t, d.Allowed)
	require.NotNil(t, d.Identity)
	assert.Equal(t, "svc-trainer", d.Identity.Username)

	d = e.Check(t.Context(), newRequest(t, "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account", map[string]string{
		"x-forwarded-client-cert": `URI=spiffe://cluster.local/ns/ml/sa/trainer`,
	}))
	assert.False(t, d.Allowed)
	assert.Equal(t, http.StatusUnauthorized, d.Status)
	assert.Equal(t, authz.ReasonUnauthenticated, d.Reason)
	assert.Equal(t, authz.KindAnonymous, d.Identity.Kind)
}

func BenchmarkSPIFFEAuthenticate(b *testing.B) {
	s, err := authn.NewSPIFFE(testSPIFFEConfig())
	require.NoError(b, err)
	r, _ := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "h", Target: "/", Principal: "spiffe://cluster.local/ns/ml/sa/trainer"})
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if id, _ := s.Authenticate(ctx, r); id == nil {
			b.Fatal("no identity")
		}
	}
}
