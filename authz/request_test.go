package authz_test

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// canonicalPathCases are shared with the fuzz seed corpus. want is the
// decoded path, or "" when the path must be refused.
var canonicalPathCases = []struct {
	name string
	raw  string
	want string
}{
	{"root", "/", "/"},
	{"simple", "/api/2.0/mlflow/experiments/get", "/api/2.0/mlflow/experiments/get"},
	{"trailing slash allowed", "/ajax-api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"},
	{"%20 decoded", "/artifacts/my%20file.txt", "/artifacts/my file.txt"},
	{"UTF-8 decoded", "/caf%C3%A9/caf\u00e9", "/caf\u00e9/caf\u00e9"},
	{"lower-case hex", "/a%3ab", "/a:b"},
	{"plus kept", "/a+b", "/a+b"},
	{"three dots is a name", "/a/.../b", "/a/.../b"},
	{"dot inside a name", "/model.json/.hidden", "/model.json/.hidden"},
	{"exactly max length", "/" + strings.Repeat("a", authz.MaxPathLength-1), "/" + strings.Repeat("a", authz.MaxPathLength-1)},

	{"empty", "", ""},
	{"relative", "api/2.0", ""},
	{"absolute-form", "http://mlflow.example.com/api/2.0", ""},
	{"asterisk-form", "*", ""},
	{"encoded slash", "/a%2Fb", ""},
	{"encoded slash lower case", "/a%2fb", ""},
	{"encoded backslash", "/a%5Cb", ""},
	{"encoded backslash lower case", "/a%5cb", ""},
	{"backslash", "/a\\b", ""},
	{"encoded dot dot", "/a/%2e%2e/b", ""},
	{"encoded dot dot upper case", "/a/%2E%2E/b", ""},
	{"half encoded dot dot", "/a/.%2e/b", ""},
	{"encoded dot anywhere (stricter than needed)", "/a%2ejson", ""},
	{"dot segment", "/a/./b", ""},
	{"dot dot segment", "/a/../b", ""},
	{"dot dot at end", "/a/..", ""},
	{"dot at end", "/a/.", ""},
	{"dot dot at start", "/../etc/passwd", ""},
	{"empty segment", "/a//b", ""},
	{"leading double slash", "//evil.example.com/a", ""},
	{"trailing double slash", "/a//", ""},
	{"NUL", "/a\x00b", ""},
	{"encoded NUL", "/a%00b", ""},
	{"tab", "/a\tb", ""},
	{"newline", "/a\nb", ""},
	{"DEL", "/a\x7fb", ""},
	{"encoded escape", "/a%1bb", ""},
	{"encoded DEL", "/a%7Fb", ""},
	{"C1 control (NEL)", "/a\u0085b", ""},
	{"encoded C1 control", "/a%C2%85b", ""},
	{"invalid UTF-8 raw", "/a\xffb", ""},
	{"invalid UTF-8 encoded", "/a%ffb", ""},
	{"truncated UTF-8 encoded", "/a%C3", ""},
	{"overlong UTF-8 dot", "/a/%C0%AE%C0%AE/b", ""},
	{"path parameter", "/a;jsessionid=1/b", ""},
	{"encoded semicolon", "/a%3Bb", ""},
	{"fragment", "/a#frag", ""},
	{"encoded fragment", "/a%23frag", ""},
	{"query delimiter", "/a?b", ""},
	{"encoded query delimiter", "/a%3Fb", ""},
	{"encoded percent", "/a%252Fb", ""},
	{"malformed escape", "/a%zzb", ""},
	{"short escape", "/a%4", ""},
	{"bare percent", "/a%", ""},
	{"overlong path", "/" + strings.Repeat("a", authz.MaxPathLength), ""},
}

func TestCanonicalPath(t *testing.T) {
	for _, tt := range canonicalPathCases {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := authz.CanonicalPath(tt.raw)
			if tt.want == "" {
				assert.NotEmpty(t, reason, "must be refused")
				assert.Empty(t, got)
				return
			}
			assert.Empty(t, reason)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestNewRequestRefusesNonCanonicalPaths(t *testing.T) {
	for _, tt := range canonicalPathCases {
		if tt.want != "" || strings.Contains(tt.raw, "?") {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "mlflow.example.com", Target: tt.raw + "?x=1"})
			assert.Nil(t, r)
			require.NotNil(t, d)
			assert.False(t, d.Allowed)
			assert.Equal(t, http.StatusBadRequest, d.Status)
			assert.Equal(t, authz.ReasonPathNotCanonical, d.Reason)
		})
	}
}

// TestNewRequestRefusesHeaderNamesThatDifferOnlyInCase: Envoy sends every
// name in lower case and joins repeated headers, so two names that lower to
// one did not come from it, and which value the upstream would read cannot
// be known. Lowering them used to keep one by map order.
func TestNewRequestRefusesHeaderNamesThatDifferOnlyInCase(t *testing.T) {
	for _, h := range []map[string]string{
		{"authorization": "Bearer a", "Authorization": "Bearer b"},
		{"X-Envoy-Auth-Partial-Body": "true", "x-envoy-auth-partial-body": "false"},
		{"Cookie": "a=1", "COOKIE": "a=2"},
		{"\u212aey": "1", "key": "2"}, // the Kelvin sign lowers to k
	} {
		r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "mlflow.example.com", Target: "/api/2.0/mlflow/experiments/get?experiment_id=1", Headers: h})
		assert.Nil(t, r, "%q", h)
		require.NotNil(t, d, "%q", h)
		assert.False(t, d.Allowed)
		assert.Equal(t, http.StatusBadRequest, d.Status)
		assert.Equal(t, authz.ReasonBadRequest, d.Reason)
		assert.Contains(t, d.Message, "differ only in case")
	}
	r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "mlflow.example.com", Target: "/a",
		Headers: map[string]string{"Authorization": "Bearer a", "X-Request-Id": "1"}})
	require.Nil(t, d, "mixed case alone is lowered, not refused")
	assert.Equal(t, map[string]string{"authorization": "Bearer a", "x-request-id": "1"}, r.Headers)
}

func TestNewRequest(t *testing.T) {
	tests := []struct {
		name      string
		in        authz.RequestInput
		wantHost  string
		wantPath  string
		wantQuery string
		wantVals  url.Values
		queryErr  bool
	}{
		{name: "port stripped", in: authz.RequestInput{Host: "mlflow.example.com:443", Target: "/a"}, wantHost: "mlflow.example.com", wantPath: "/a"},
		{name: "upper case host", in: authz.RequestInput{Host: "MLflow.Example.COM", Target: "/a"}, wantHost: "mlflow.example.com", wantPath: "/a"},
		{name: "trailing dot", in: authz.RequestInput{Host: "mlflow.example.com.:8443", Target: "/a"}, wantHost: "mlflow.example.com", wantPath: "/a"},
		{name: "IPv6 with port", in: authz.RequestInput{Host: "[2001:DB8::1]:8080", Target: "/a"}, wantHost: "[2001:db8::1]", wantPath: "/a"},
		{name: "IPv6 without port", in: authz.RequestInput{Host: "[::1]", Target: "/a"}, wantHost: "[::1]", wantPath: "/a"},
		{
			name: "path and query split", in: authz.RequestInput{Host: "h", Target: "/api/2.0/mlflow/runs/get?run_id=abc&x=%2F"},
			wantHost: "h", wantPath: "/api/2.0/mlflow/runs/get", wantQuery: "run_id=abc&x=%2F",
			wantVals: url.Values{"run_id": {"abc"}, "x": {"/"}},
		},
		{name: "%2F in the query is fine", in: authz.RequestInput{Host: "h", Target: "/a?path=x%2F..%2Fy"}, wantHost: "h", wantPath: "/a", wantQuery: "path=x%2F..%2Fy", wantVals: url.Values{"path": {"x/../y"}}},
		{name: "empty query", in: authz.RequestInput{Host: "h", Target: "/a?"}, wantHost: "h", wantPath: "/a"},
		{name: "second ? belongs to the query", in: authz.RequestInput{Host: "h", Target: "/a?b=c?d"}, wantHost: "h", wantPath: "/a", wantQuery: "b=c?d", wantVals: url.Values{"b": {"c?d"}}},
		{name: "repeated key", in: authz.RequestInput{Host: "h", Target: "/a?id=1&id=2"}, wantHost: "h", wantPath: "/a", wantQuery: "id=1&id=2", wantVals: url.Values{"id": {"1", "2"}}},
		{name: "semicolon in query is an error", in: authz.RequestInput{Host: "h", Target: "/a?a=1;b=2"}, wantHost: "h", wantPath: "/a", wantQuery: "a=1;b=2", queryErr: true},
		{name: "bad escape in query is an error", in: authz.RequestInput{Host: "h", Target: "/a?a=%zz"}, wantHost: "h", wantPath: "/a", wantQuery: "a=%zz", queryErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, d := authz.NewRequest(tt.in)
			require.Nil(t, d)
			assert.Equal(t, tt.wantHost, r.Host)
			assert.Equal(t, tt.wantPath, r.Path)
			assert.Equal(t, tt.wantQuery, r.RawQuery)
			q, err := r.Query()
			if tt.queryErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			if tt.wantVals == nil {
				assert.True(t, q.Empty())
			} else {
				assert.Equal(t, tt.wantVals, q.URLValues())
			}
		})
	}
}

func TestNewRequestFields(t *testing.T) {
	r, d := authz.NewRequest(authz.RequestInput{
		ID:        "rid",
		Method:    "post",
		Host:      "h",
		Target:    "/a",
		Headers:   map[string]string{"Authorization": "Bearer x", "X-Envoy-Auth-Partial-Body": "true"},
		Body:      []byte("{}"),
		Principal: "spiffe://cluster.local/ns/a/sa/b",
	})
	require.Nil(t, d)
	assert.Equal(t, "rid", r.ID)
	assert.Equal(t, "POST", r.Method)
	assert.Equal(t, "Bearer x", r.Header("authorization"), "header names are lower-cased")
	assert.True(t, r.BodyTruncated)
	assert.Equal(t, "{}", string(r.Body))
	assert.Equal(t, "spiffe://cluster.local/ns/a/sa/b", r.Principal)

	r, d = authz.NewRequest(authz.RequestInput{Method: "GET", Host: "h", Target: "/a", Headers: map[string]string{"x-envoy-auth-partial-body": "false"}})
	require.Nil(t, d)
	assert.False(t, r.BodyTruncated)
}

func TestRequestLogValueRedacts(t *testing.T) {
	r, d := authz.NewRequest(authz.RequestInput{
		Method: "GET", Host: "h", Target: "/a?token=s3cret",
		Headers: map[string]string{"authorization": "Bearer s3cret", "cookie": "s=s3cret"},
		Body:    []byte("s3cret"),
	})
	require.Nil(t, d)
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("x", "request", r)
	assert.NotContains(t, sb.String(), "s3cret")
	assert.Contains(t, sb.String(), `"path":"/a"`)
}
