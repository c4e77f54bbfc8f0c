package upstream_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/authz/upstream"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

var (
	alice   = &authz.Identity{Kind: authz.KindUser, Username: "alice", Groups: []string{"team-a"}, Roles: []string{"viewer"}, Method: "jwt"}
	nobody  = authz.Anonymous
	trainer = &authz.Identity{Kind: authz.KindWorkload, Username: "svc-trainer", SPIFFEID: "spiffe://cluster.local/ns/ml/sa/trainer", Method: "spiffe"}
)

func TestHeadersUpstream(t *testing.T) {
	up, err := upstream.New(upstream.Config{})
	require.NoError(t, err)
	spoof := map[string]string{
		"x-authz-user":         "admin",
		"x-authz-groups":       "admins",
		"x-authz-subject-kind": "user",
		"authorization":        "Bearer abc.def.ghi",
	}
	tests := []struct {
		name string
		id   *authz.Identity
		want map[string]string // identity headers the upstream sees; absent = removed
	}{
		{name: "user", id: alice, want: map[string]string{"x-authz-user": "alice", "x-authz-groups": "team-a", "x-authz-subject-kind": "user"}},
		{name: "several groups", id: &authz.Identity{Kind: authz.KindUser, Username: "c", Groups: []string{"a", "b", "x,y", "bad\r\nx", ""}, Method: "jwt"}, want: map[string]string{"x-authz-user": "c", "x-authz-groups": "a,b", "x-authz-subject-kind": "user"}},
		{name: "only unusable groups", id: &authz.Identity{Kind: authz.KindUser, Username: "c", Groups: []string{"x,y"}, Method: "jwt"}, want: map[string]string{"x-authz-user": "c", "x-authz-subject-kind": "user"}},
		{name: "workload without groups", id: trainer, want: map[string]string{"x-authz-user": "svc-trainer", "x-authz-subject-kind": "workload"}},
		{name: "anonymous", id: nobody, want: map[string]string{}},
		{name: "nil identity", id: nil, want: map[string]string{}},
		{name: "username with CRLF is removed, not sent", id: &authz.Identity{Kind: authz.KindUser, Username: "a\r\nx-authz-user: admin", Method: "jwt"}, want: map[string]string{"x-authz-subject-kind": "user"}},
		{name: "authenticated without username", id: &authz.Identity{Kind: authz.KindServiceAccount, Method: "jwt"}, want: map[string]string{"x-authz-subject-kind": "service_account"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := authztest.NewRequest(t, "GET", "/", "", spoof)
			set, remove := up.Headers(r, tt.id)
			got := authztest.UpstreamView(t, r, set, remove)
			for _, h := range []string{"x-authz-user", "x-authz-groups", "x-authz-subject-kind"} {
				want, ok := tt.want[h]
				if ok {
					assert.Equal(t, want, got[h], h)
				} else {
					assert.NotContains(t, got, h)
				}
			}
			// headers mode leaves credentials to the upstream.
			assert.Equal(t, "Bearer abc.def.ghi", got["authorization"])
		})
	}
}

func TestHeadersUpstreamCustomNames(t *testing.T) {
	up, err := upstream.New(upstream.Config{Mode: "headers", UserHeader: "x-user", GroupsHeader: "x-groups", KindHeader: "x-kind"})
	require.NoError(t, err)
	r := authztest.NewRequest(t, "GET", "/", "", map[string]string{"x-authz-user": "spoofed", "x-user": "spoofed"})
	set, remove := up.Headers(r, alice)
	got := authztest.UpstreamView(t, r, set, remove)
	assert.Equal(t, "alice", got["x-user"])
	assert.Equal(t, "team-a", got["x-groups"])
	assert.Equal(t, "user", got["x-kind"])
	assert.Equal(t, "spoofed", got["x-authz-user"], "only our own configured headers are managed")
}

func TestPhoenixUpstream(t *testing.T) {
	up, err := upstream.New(upstream.Config{Mode: "phoenix"})
	require.NoError(t, err)
	session := &authz.Identity{Kind: authz.KindUser, Username: "alice", Method: "session"}
	tests := []struct {
		name     string
		auth     string
		id       *authz.Identity
		wantAuth bool
		wantUser string
	}{
		{name: "verified Keycloak bearer is removed", auth: "Bearer eyJhbGciOi.x.y", id: alice, wantAuth: false, wantUser: "alice"},
		{name: "lower-case scheme is removed too", auth: "bearer eyJhbGciOi.x.y", id: alice, wantAuth: false, wantUser: "alice"},
		{name: "Phoenix API key with a session identity passes", auth: "Bearer phx-api-key", id: session, wantAuth: true, wantUser: "alice"},
		{name: "Phoenix API key from an anonymous caller passes", auth: "Bearer phx-api-key", id: nobody, wantAuth: true},
		{name: "Basic credentials with a jwt identity pass", auth: "Basic YTpi", id: alice, wantAuth: true, wantUser: "alice"},
		{name: "no authorization header", auth: "", id: alice, wantAuth: false, wantUser: "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"x-authz-user": "admin"}
			if tt.auth != "" {
				h["authorization"] = tt.auth
			}
			r := authztest.NewRequest(t, "GET", "/graphql", "", h)
			set, remove := up.Headers(r, tt.id)
			got := authztest.UpstreamView(t, r, set, remove)
			if tt.wantAuth {
				assert.Equal(t, tt.auth, got["authorization"])
			} else {
				assert.NotContains(t, got, "authorization")
			}
			if tt.wantUser != "" {
				assert.Equal(t, tt.wantUser, got["x-authz-user"])
			} else {
				assert.NotContains(t, got, "x-authz-user")
			}
		})
	}
}

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	// Kubernetes swaps projected tokens atomically; so do we.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(token), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestKialiUpstream(t *testing.T) {
	tokenPath := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenPath, "sa-token-1\n")
	clock := storetest.NewClock(time.Unix(1_800_000_000, 0))
	up, err := upstream.New(upstream.Config{Mode: "kiali", TokenFile: tokenPath}, upstream.WithClock(clock.Now))
	require.NoError(t, err)

	spoof := map[string]string{
		"authorization":            "Bearer client-k8s-token",
		"impersonate-user":         "system:admin",
		"impersonate-group":        "system:masters",
		"impersonate-uid":          "0",
		"impersonate-extra-scopes": "x",
		"x-other":                  "kept",
	}
	tests := []struct {
		name string
		id   *authz.Identity
		want map[string]string // authorization and impersonate-* the upstream sees
	}{
		{name: "user with one group", id: alice, want: map[string]string{"authorization": "Bearer sa-token-1", "impersonate-user": "alice", "impersonate-group": "team-a"}},
		{name: "user with several groups is comma-joined", id: &authz.Identity{Kind: authz.KindUser, Username: "c", Groups: []string{"a", "b"}, Method: "jwt"}, want: map[string]string{"authorization": "Bearer sa-token-1", "impersonate-user": "c", "impersonate-group": "a,b"}},
		{name: "workload without groups", id: trainer, want: map[string]string{"authorization": "Bearer sa-token-1", "impersonate-user": "svc-trainer"}},
		{name: "anonymous gets no token and no impersonation", id: nobody, want: map[string]string{}},
		{name: "authenticated without username is treated as anonymous", id: &authz.Identity{Kind: authz.KindServiceAccount, Method: "jwt"}, want: map[string]string{}},
		{name: "username with CRLF is not impersonated", id: &authz.Identity{Kind: authz.KindUser, Username: "a\r\nb", Method: "jwt"}, want: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := authztest.NewRequest(t, "GET", "/kiali/api/namespaces", "", spoof)
			set, remove := up.Headers(r, tt.id)
			got := authztest.UpstreamView(t, r, set, remove)
			for name, v := range got {
				if name == "authorization" || strings.HasPrefix(name, "impersonate-") {
					want, ok := tt.want[name]
					assert.True(t, ok, "client-sent %s: %q reaches Kiali", name, v)
					assert.Equal(t, want, v, name)
				}
			}
			for name, v := range tt.want {
				assert.Equal(t, v, got[name], name)
			}
			assert.Equal(t, "kept", got["x-other"])
		})
	}

	t.Run("token rotation", func(t *testing.T) {
		r := authztest.NewRequest(t, "GET", "/kiali/api/namespaces", "", nil)
		bearer := func() string {
			set, _ := up.Headers(r, alice)
			for _, h := range set {
				if h.Name == "authorization" {
					return h.Value
				}
			}
			return ""
		}
		writeToken(t, tokenPath, "sa-token-2")
		assert.Equal(t, "Bearer sa-token-1", bearer(), "re-read at most every 30 s")
		clock.Advance(upstream.TokenRefreshInterval - time.Second)
		assert.Equal(t, "Bearer sa-token-1", bearer())
		clock.Advance(time.Second)
		assert.Equal(t, "Bearer sa-token-2", bearer())

		// A broken or missing file keeps the last good token.
		writeToken(t, tokenPath, "   \n")
		clock.Advance(upstream.TokenRefreshInterval)
		assert.Equal(t, "Bearer sa-token-2", bearer())
		require.NoError(t, os.Remove(tokenPath))
		clock.Advance(upstream.TokenRefreshInterval)
		assert.Equal(t, "Bearer sa-token-2", bearer())

		writeToken(t, tokenPath, "sa-token-3")
		clock.Advance(upstream.TokenRefreshInterval)
		assert.Equal(t, "Bearer sa-token-3", bearer())
	})
}

func TestKialiUpstreamConcurrent(t *testing.T) {
	tokenPath := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenPath, "sa-token-1")
	clock := storetest.NewClock(time.Unix(1_800_000_000, 0))
	up, err := upstream.New(upstream.Config{Mode: "kiali", TokenFile: tokenPath}, upstream.WithClock(clock.Now))
	require.NoError(t, err)
	r := authztest.NewRequest(t, "GET", "/kiali/api/namespaces", "", nil)

	var wg sync.WaitGroup
	bad := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			for range 200 {
				set, _ := up.Headers(r, alice)
				if v := set[0].Value; v != "Bearer sa-token-1" && v != "Bearer sa-token-2" {
					bad <- v
					return
				}
			}
		})
	}
	for range 5 {
		clock.Advance(upstream.TokenRefreshInterval)
		writeToken(t, tokenPath, "sa-token-2")
	}
	wg.Wait()
	close(bad)
	for v := range bad {
		t.Errorf("unexpected authorization %q", v)
	}
}

func TestNewUpstreamErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	spaced := filepath.Join(dir, "spaced")
	require.NoError(t, os.WriteFile(spaced, []byte("a b"), 0o600))
	tests := []struct {
		name    string
		cfg     upstream.Config
		wantErr string
	}{
		{name: "unknown mode", cfg: upstream.Config{Mode: "oauth"}, wantErr: `upstream: upstream.mode: "oauth"`},
		{name: "kiali without token file", cfg: upstream.Config{Mode: "kiali"}, wantErr: "upstream: upstream.token_file: required"},
		{name: "kiali missing token file", cfg: upstream.Config{Mode: "kiali", TokenFile: filepath.Join(dir, "nope")}, wantErr: "upstream: upstream.token_file: "},
		{name: "kiali empty token file", cfg: upstream.Config{Mode: "kiali", TokenFile: empty}, wantErr: "is empty"},
		{name: "kiali token with spaces", cfg: upstream.Config{Mode: "kiali", TokenFile: spaced}, wantErr: "whitespace"},
		{name: "kiali with header names", cfg: upstream.Config{Mode: "kiali", TokenFile: empty, UserHeader: "x-u"}, wantErr: "not used in kiali mode"},
		{name: "token file in headers mode", cfg: upstream.Config{TokenFile: empty}, wantErr: "upstream: upstream.token_file: only used in kiali mode"},
		{name: "upper-case header", cfg: upstream.Config{UserHeader: "X-User"}, wantErr: "upstream: upstream.user_header: "},
		{name: "authorization as identity header", cfg: upstream.Config{Mode: "phoenix", GroupsHeader: "authorization"}, wantErr: `upstream: upstream.groups_header: "authorization" is reserved`},
		{name: "impersonation header", cfg: upstream.Config{KindHeader: "impersonate-user"}, wantErr: "upstream: upstream.kind_header: "},
		{name: "same header twice", cfg: upstream.Config{UserHeader: "x-authz-groups"}, wantErr: "must differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := upstream.New(tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func BenchmarkHeadersUpstream(b *testing.B) {
	up, err := upstream.New(upstream.Config{})
	require.NoError(b, err)
	r := authztest.NewRequest(b, "GET", "/", "", nil)
	b.ReportAllocs()
	for b.Loop() {
		up.Headers(r, alice)
	}
}
