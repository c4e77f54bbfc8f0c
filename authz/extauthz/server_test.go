package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

// want describes the CheckResponse a case must produce.
type want struct {
	code       codes.Code
	httpStatus int // deny only
	reason     authz.Reason
	set        map[string]string // allow: upstream headers set
	remove     []string          // allow: headers_to_remove
	respHeader map[string]string // deny: extra response headers
}

func TestCheckResponses(t *testing.T) {
	srv := extauthz.NewServer(newTestEngine(t), nil, nil)
	const expGet = "/api/2.0/mlflow/experiments/get?experiment_id=1"
	tests := []struct {
		name   string
		req    *authv3.CheckRequest
		want   want
		golden string
	}{
		{
			name:   "allow sets identity and overwrites a spoofed header",
			req:    istioRequest("GET", mlflowHost, expGet, withBearer("alice"), withHeader("x-authz-user", "admin")),
			want:   want{code: codes.OK, reason: authz.ReasonAllowed, set: map[string]string{"x-authz-user": "alice"}, remove: []string{"x-authz-groups"}},
			golden: "allow",
		},
		{
			name: "allow anonymous removes identity headers",
			req:  istioRequest("GET", mlflowHost, "/health", withHeader("x-authz-user", "admin"), withHeader("x-authz-groups", "admins")),
			want: want{code: codes.OK, reason: authz.ReasonAllowed, set: map[string]string{}, remove: []string{"x-authz-user", "x-authz-groups"}},
		},
		{
			name: "host with port and upper case selects the app",
			req:  istioRequest("GET", "MLflow.Example.com:443", expGet, withBearer("alice")),
			want: want{code: codes.OK, reason: authz.ReasonAllowed, set: map[string]string{"x-authz-user": "alice"}, remove: []string{"x-authz-groups"}},
		},
		{
			name: "allow with a JSON body",
			req:  istioRequest("POST", mlflowHost, "/api/2.0/mlflow/runs/create", withBearer("alice"), withJSONBody(`{"experiment_id":"1"}`, false)),
			want: want{code: codes.OK, reason: authz.ReasonAllowed, set: map[string]string{"x-authz-user": "alice"}, remove: []string{"x-authz-groups"}},
		},
		{
			name:   "deny 401 without a credential",
			req:    istioRequest("GET", mlflowHost, expGet),
			want:   want{code: codes.Unauthenticated, httpStatus: 401, reason: authz.ReasonUnauthenticated, respHeader: map[string]string{"www-authenticate": `Bearer realm="mlflow"`}},
			golden: "deny_401",
		},
		{
			name: "deny 401 with an invalid token",
			req:  istioRequest("GET", mlflowHost, expGet, withBearer("bad")),
			want: want{code: codes.Unauthenticated, httpStatus: 401, reason: authz.ReasonInvalidToken, respHeader: map[string]string{"www-authenticate": `Bearer error="invalid_token"`}},
		},
		{
			name:   "deny 403 without permission",
			req:    istioRequest("GET", mlflowHost, expGet, withBearer("bob")),
			want:   want{code: codes.PermissionDenied, httpStatus: 403, reason: authz.ReasonPermissionDenied},
			golden: "deny_403",
		},
		{
			name: "deny 403 on an unknown host",
			req:  istioRequest("GET", "evil.example.com", expGet, withBearer("alice")),
			want: want{code: codes.PermissionDenied, httpStatus: 403, reason: authz.ReasonUnknownHost},
		},
		{
			name:   "deny 400 on an encoded slash",
			req:    istioRequest("GET", mlflowHost, "/api/2.0/mlflow%2Fexperiments/get?experiment_id=1", withBearer("alice")),
			want:   want{code: codes.PermissionDenied, httpStatus: 400, reason: authz.ReasonPathNotCanonical},
			golden: "deny_400",
		},
		{
			name: "deny 400 on a dot segment",
			req:  istioRequest("GET", mlflowHost, "/static/../api/2.0/mlflow/experiments/get", withBearer("alice")),
			want: want{code: codes.PermissionDenied, httpStatus: 400, reason: authz.ReasonPathNotCanonical},
		},
		{
			name:   "deny 503 when the store is unavailable",
			req:    istioRequest("GET", mlflowHost, "/unavailable", withBearer("alice")),
			want:   want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonUnavailable},
			golden: "deny_503",
		},
		{
			name: "panic in the policy is a 503 deny",
			req:  istioRequest("GET", mlflowHost, "/panic", withBearer("alice")),
			want: want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonInternal},
		},
		{
			name: "login redirect",
			req:  istioRequest("GET", mlflowHost, "/login"),
			want: want{code: codes.PermissionDenied, httpStatus: 302, reason: authz.ReasonLoginRequired, respHeader: map[string]string{"location": "https://mlflow.example.com/oauth2/start"}},
		},
		{
			name: "dry-run app allows a deny and still sets identity headers",
			req:  istioRequest("GET", dryRunHost, expGet, withBearer("bob"), withHeader("x-authz-user", "admin")),
			want: want{code: codes.OK, reason: authz.ReasonPermissionDenied, set: map[string]string{"x-authz-user": "bob"}, remove: []string{"x-authz-groups"}},
		},
		{
			name: "a header both set and removed fails closed",
			req:  istioRequest("GET", "broken.example.com", expGet, withBearer("alice")),
			want: want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonInternal},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := srv.Check(t.Context(), tt.req)
			require.NoError(t, err, "a decision is never an RPC error")
			assertResponse(t, tt.want, resp)
			if tt.golden != "" {
				assertGolden(t, tt.golden, resp)
			}
		})
	}
}

// assertResponse checks every field of the response shape that Envoy acts on.
func assertResponse(t *testing.T, w want, resp *authv3.CheckResponse) {
	t.Helper()
	require.NotNil(t, resp.GetStatus(), "status must be set explicitly: unset means allow")
	assert.Equal(t, int32(w.code), resp.GetStatus().GetCode())
	if w.code == codes.OK {
		require.NotNil(t, resp.GetOkResponse(), "an allow carries an OkHttpResponse")
		assert.Nil(t, resp.GetDeniedResponse())
		ok := resp.GetOkResponse()
		got := map[string]string{}
		for _, h := range ok.GetHeaders() {
			assert.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, h.GetAppendAction(), "identity headers overwrite")
			//lint:ignore SA1019 older Envoys read only the deprecated field, so it must stay false
			assert.False(t, h.GetAppend().GetValue(), "deprecated append must stay false (overwrite on old Envoys)")
			got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if w.set != nil {
			assert.Equal(t, w.set, got)
		}
		assert.ElementsMatch(t, w.remove, ok.GetHeadersToRemove())
		for _, rm := range ok.GetHeadersToRemove() {
			_, isSet := got[strings.ToLower(rm)]
			assert.False(t, isSet, "header %q is both set and removed: Envoy removes after setting", rm)
		}
		return
	}
	denied := resp.GetDeniedResponse()
	require.NotNil(t, denied, "a deny carries a DeniedHttpResponse")
	assert.Equal(t, w.httpStatus, int(denied.GetStatus().GetCode()))
	headers := map[string]string{}
	for _, h := range denied.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	assert.Equal(t, "application/json", headers["content-type"])
	assert.Equal(t, string(w.reason), headers[extauthz.ReasonHeader])
	for k, v := range w.respHeader {
		assert.Equal(t, v, headers[k], "response header %s", k)
	}
	var body map[string]string
	require.NoError(t, json.Unmarshal([]byte(denied.GetBody()), &body))
	assert.Equal(t, string(w.reason), body["reason"])
	assert.Equal(t, authz.Decision{Status: w.httpStatus}.ErrorCode(), body["error_code"])
	assert.NotEmpty(t, body["message"])
	assert.NotContains(t, denied.GetBody(), "policy bug", "internal error text never reaches the client")
}

func assertGolden(t *testing.T, name string, resp *authv3.CheckResponse) {
	t.Helper()
	raw, err := protojson.Marshal(resp)
	require.NoError(t, err)
	// protojson randomises whitespace on purpose; normalise before storing.
	var compact, got bytes.Buffer
	require.NoError(t, json.Compact(&compact, raw))
	require.NoError(t, json.Indent(&got, compact.Bytes(), "", "  "))
	got.WriteByte('\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		require.NoError(t, os.WriteFile(path, got.Bytes(), 0o644))
	}
	wantJSON, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	assert.JSONEq(t, string(wantJSON), got.String())
}

// countingChecker counts calls, to prove a check was skipped.
type countingChecker struct {
	calls int
	next  extauthz.Checker
}

func (c *countingChecker) Check(ctx context.Context, r *authz.Request) authz.Decision {
	c.calls++
	return c.next.Check(ctx, r)
}

func TestCheckDeadline(t *testing.T) {
	t.Run("context already done is denied without checking", func(t *testing.T) {
		cc := &countingChecker{next: newTestEngine(t)}
		srv := extauthz.NewServer(cc, nil, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		resp, err := srv.Check(ctx, istioRequest("GET", mlflowHost, "/health"))
		require.NoError(t, err)
		assertResponse(t, want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonDeadlineExceeded}, resp)
		assert.Zero(t, cc.calls)
	})
	t.Run("deadline passing during the policy turns its allow into a deny", func(t *testing.T) {
		srv := extauthz.NewServer(newTestEngine(t), nil, nil, extauthz.WithTimeout(20*time.Millisecond))
		resp, err := srv.Check(t.Context(), istioRequest("GET", mlflowHost, "/slow", withBearer("alice")))
		require.NoError(t, err)
		assertResponse(t, want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonDeadlineExceeded}, resp)
	})
	t.Run("even in dry-run", func(t *testing.T) {
		srv := extauthz.NewServer(newTestEngine(t), nil, nil, extauthz.WithTimeout(20*time.Millisecond))
		resp, err := srv.Check(t.Context(), istioRequest("GET", dryRunHost, "/slow", withBearer("alice")))
		require.NoError(t, err)
		assertResponse(t, want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonDeadlineExceeded}, resp)
	})
}

// staticChecker returns one decision, for shapes the engine cannot produce.
type staticChecker authz.Decision

func (s staticChecker) Check(context.Context, *authz.Request) authz.Decision {
	return authz.Decision(s)
}

func TestCheckDenyStatusIsAlwaysADeny(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		wantHTTP int
		wantCode codes.Code
	}{
		{"zero status", 0, 403, codes.PermissionDenied},
		{"2xx status", 200, 403, codes.PermissionDenied},
		{"not an Envoy StatusCode", 499, 403, codes.PermissionDenied},
		{"404 kept", 404, 404, codes.PermissionDenied},
		{"413 kept", 413, 413, codes.PermissionDenied},
		{"504 is unavailable", 504, 504, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := extauthz.NewServer(staticChecker(authz.Deny(tt.status, authz.ReasonForbidden, "no")), nil, nil)
			resp, err := srv.Check(t.Context(), istioRequest("GET", mlflowHost, "/x"))
			require.NoError(t, err)
			assert.Equal(t, int32(tt.wantCode), resp.GetStatus().GetCode())
			assert.Equal(t, tt.wantHTTP, int(resp.GetDeniedResponse().GetStatus().GetCode()))
			assert.Equal(t, "forbidden", resp.GetStatus().GetMessage())
		})
	}
}

// recordingChecker keeps the last request it saw.
type recordingChecker struct{ last *authz.Request }

func (c *recordingChecker) Check(_ context.Context, r *authz.Request) authz.Decision {
	c.last = r
	return authz.Allow(authz.ReasonAllowed)
}

func TestCheckBuildsRequest(t *testing.T) {
	tests := []struct {
		name  string
		req   *authv3.CheckRequest
		check func(t *testing.T, r *authz.Request)
	}{
		{
			name: "Istio request",
			req:  istioRequest("post", "MLflow.example.com:443", "/api/2.0/mlflow/runs/create?x=1", withJSONBody(`{"experiment_id":"1"}`, true)),
			check: func(t *testing.T, r *authz.Request) {
				assert.Equal(t, testRequestID, r.ID, "x-request-id is preferred to Envoy's stream id")
				assert.Equal(t, "POST", r.Method)
				assert.Equal(t, "mlflow.example.com", r.Host)
				assert.Equal(t, "/api/2.0/mlflow/runs/create", r.Path)
				assert.Equal(t, "x=1", r.RawQuery)
				assert.Equal(t, `{"experiment_id":"1"}`, string(r.Body))
				assert.True(t, r.BodyTruncated)
				assert.Equal(t, ingressPrincipal, r.Principal, "identity comes from source.principal, never XFCC")
				assert.Equal(t, "https", r.Header("x-forwarded-proto"))
			},
		},
		{
			name: "raw_body wins over body",
			req: istioRequest("POST", mlflowHost, "/x", func(r *authv3.CheckRequest) {
				r.Attributes.Request.Http.Body = "sanitised!"
				r.Attributes.Request.Http.RawBody = []byte("raw\xff")
			}),
			check: func(t *testing.T, r *authz.Request) { assert.Equal(t, "raw\xff", string(r.Body)) },
		},
		{
			name: "string body when not packed as bytes",
			req:  istioRequest("POST", mlflowHost, "/x", func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Body = `{"a":1}` }),
			check: func(t *testing.T, r *authz.Request) {
				assert.Equal(t, `{"a":1}`, string(r.Body))
				assert.False(t, r.BodyTruncated)
			},
		},
		{
			name: "pseudo-headers and http.id as fallbacks",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id:      "42",
				Headers: map[string]string{":method": "GET", ":authority": mlflowHost, ":path": "/a/b?c=d"},
			}}}},
			check: func(t *testing.T, r *authz.Request) {
				assert.Equal(t, "42", r.ID)
				assert.Equal(t, "GET", r.Method)
				assert.Equal(t, mlflowHost, r.Host)
				assert.Equal(t, "/a/b", r.Path)
				assert.Empty(t, r.Principal)
			},
		},
		{
			name: "encode_raw_headers header_map is joined like Envoy's map",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: mlflowHost, Path: "/",
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "X-Request-Id", RawValue: []byte("rid")},
					{Key: "accept", RawValue: []byte("a")},
					{Key: "accept", RawValue: []byte("b")},
				}},
			}}}},
			check: func(t *testing.T, r *authz.Request) {
				assert.Equal(t, "rid", r.ID)
				assert.Equal(t, "a,b", r.Header("accept"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recordingChecker{}
			_, err := extauthz.NewServer(rc, nil, nil).Check(t.Context(), tt.req)
			require.NoError(t, err)
			require.NotNil(t, rc.last)
			tt.check(t, rc.last)
		})
	}
}

func TestCheckEmptyRequestIsDenied(t *testing.T) {
	srv := extauthz.NewServer(newTestEngine(t), nil, nil)
	for _, req := range []*authv3.CheckRequest{nil, {}, {Attributes: &authv3.AttributeContext{}}} {
		resp, err := srv.Check(t.Context(), req)
		require.NoError(t, err)
		assertResponse(t, want{code: codes.PermissionDenied, httpStatus: 400, reason: authz.ReasonPathNotCanonical}, resp)
	}
}

func TestDecisionLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := extauthz.NewServer(newTestEngine(t), log, nil)
	secrets := []requestOption{
		withHeader("cookie", "mlflow_session=s3cret-cookie"),
		withJSONBody(`{"password":"s3cret-body"}`, false),
	}
	tests := []struct {
		name  string
		req   *authv3.CheckRequest
		level string
		want  map[string]any
	}{
		{
			name:  "allow",
			req:   istioRequest("POST", mlflowHost, "/api/2.0/mlflow/runs/create?token=s3cret-query", append(secrets, withBearer("alice"))...),
			level: "INFO",
			want: map[string]any{"request_id": testRequestID, "app": "mlflow", "host": mlflowHost, "method": "POST",
				"path": "/api/2.0/mlflow/runs/create", "decision": "allow", "status": 200.0, "reason": "allowed",
				"identity": map[string]any{"kind": "user", "method": "jwt", "user": "alice"}},
		},
		{
			name:  "policy deny",
			req:   istioRequest("GET", mlflowHost, "/x?token=s3cret-query", append(secrets, withBearer("bob"))...),
			level: "INFO",
			want:  map[string]any{"decision": "deny", "status": 403.0, "reason": "permission_denied"},
		},
		{
			name:  "dry-run deny",
			req:   istioRequest("GET", dryRunHost, "/x?token=s3cret-query", append(secrets, withBearer("bob"))...),
			level: "INFO",
			want:  map[string]any{"app": "phoenix", "decision": "dry_run_deny", "status": 403.0, "reason": "permission_denied"},
		},
		{
			name:  "refused path",
			req:   istioRequest("GET", mlflowHost, "/a/%2e%2e/b?token=s3cret-query", secrets...),
			level: "INFO",
			want:  map[string]any{"app": "", "path": "/a/%2e%2e/b", "decision": "deny", "status": 400.0, "reason": "path_not_canonical", "identity": ""},
		},
		{
			name:  "unavailable is a warning",
			req:   istioRequest("GET", mlflowHost, "/unavailable?token=s3cret-query", append(secrets, withBearer("alice"))...),
			level: "WARN",
			want:  map[string]any{"decision": "deny", "status": 503.0, "reason": "unavailable"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			_, err := srv.Check(t.Context(), tt.req)
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			require.Len(t, lines, 1, "one log line per decision")
			assert.NotContains(t, lines[0], "s3cret", "no tokens, cookies, queries or bodies in the log")
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
			assert.Equal(t, tt.level, rec["level"])
			for _, k := range []string{"request_id", "app", "host", "method", "path", "identity", "decision", "status", "reason", "latency_us"} {
				assert.Contains(t, rec, k)
			}
			for k, v := range tt.want {
				assert.Equal(t, v, rec[k], k)
			}
		})
	}
}

func TestPanicIsLogged(t *testing.T) {
	var buf bytes.Buffer
	srv := extauthz.NewServer(newTestEngine(t), slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	resp, err := srv.Check(t.Context(), istioRequest("GET", mlflowHost, "/panic", withBearer("alice")))
	require.NoError(t, err)
	assertResponse(t, want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonInternal}, resp)
	assert.Contains(t, buf.String(), `"level":"ERROR"`)
	assert.Contains(t, buf.String(), "policy bug")
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := extauthz.NewMetrics(reg)
	require.NoError(t, err)
	srv := extauthz.NewServer(newTestEngine(t), nil, m)
	reqs := []*authv3.CheckRequest{
		istioRequest("GET", mlflowHost, "/x", withBearer("alice")),
		istioRequest("GET", mlflowHost, "/x", withBearer("alice")),
		istioRequest("GET", mlflowHost, "/x", withBearer("bob")),
		istioRequest("GET", dryRunHost, "/x", withBearer("bob")),
		istioRequest("GET", mlflowHost, "/a//b"),
	}
	for _, r := range reqs {
		_, err := srv.Check(t.Context(), r)
		require.NoError(t, err)
	}
	families, err := reg.Gather()
	require.NoError(t, err)
	counts := map[string]float64{}
	histCounts := map[string]uint64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			switch f.GetName() {
			case "mlflow_authz_decisions_total":
				counts[labels(mt, "app", "decision", "reason")] = mt.GetCounter().GetValue()
			case "mlflow_authz_check_duration_seconds":
				histCounts[labels(mt, "app", "decision")] = mt.GetHistogram().GetSampleCount()
			}
		}
	}
	assert.Equal(t, map[string]float64{
		"mlflow/allow/allowed":                   2,
		"mlflow/deny/permission_denied":          1,
		"phoenix/dry_run_deny/permission_denied": 1,
		"/deny/path_not_canonical":               1,
	}, counts)
	assert.Equal(t, map[string]uint64{"mlflow/allow": 2, "mlflow/deny": 1, "phoenix/dry_run_deny": 1, "/deny": 1}, histCounts)

	_, err = extauthz.NewMetrics(reg)
	require.Error(t, err, "registering twice is reported, not a panic")
}

func labels(m *dto.Metric, names ...string) string {
	vals := make([]string, len(names))
	for i, n := range names {
		for _, l := range m.GetLabel() {
			if l.GetName() == n {
				vals[i] = l.GetValue()
			}
		}
	}
	return strings.Join(vals, "/")
}
