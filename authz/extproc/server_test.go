package extproc_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/authz/extproc"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/authz/rules"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// Workloads of the test mesh: identities by mTLS peer, the way the filter
// receives them (the connection.uri_san_peer_certificate attribute), so the
// protocol is tested through a real engine and store without a token
// issuer. The end-to-end tests (integration) run the same with tokens.
const (
	peerAlice = "spiffe://cluster.local/ns/team/sa/alice"
	peerRoot  = "spiffe://cluster.local/ns/ops/sa/root"
	peerNone  = "spiffe://cluster.local/ns/x/sa/nobody"
	host      = "mlflow.test"
)

type fixture struct {
	client extprocv3.ExternalProcessorClient
	store  *sqlite.Store
}

// start runs the filter on a real gRPC socket, in front of an engine with a
// SQLite store: alice reads experiment 1 and model m1; root is an admin.
func start(t *testing.T, opts extproc.Options) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mlflow.db")
	require.NoError(t, sqlite.Migrate(t.Context(), path))
	exec := storetest.SQLiteExec(t, path)
	require.NoError(t, storetest.CreateTrackingSchema(t.Context(), store.SQLite, exec))
	storetest.Must(t, exec,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', false), (2, 'root', true)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'READ')`,
		`INSERT INTO registered_model_permissions (name, user_id, permission, workspace) VALUES ('m1', 1, 'READ', 'default')`,
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) VALUES (1, 'one', 'active', 'default'), (2, 'two', 'active', 'default')`,
		`INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status) VALUES ('tr-1', 1, 0, 'OK'), ('tr-2', 2, 0, 'OK')`,
	)
	st, err := sqlite.Open(t.Context(), sqlite.Config{TrackingPath: path})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	spiffe, err := authn.NewSPIFFE(authn.SPIFFEConfig{TrustDomain: "cluster.local", Workloads: []authn.SPIFFEWorkloadConfig{
		{ID: "ns/team/sa/alice", Username: "alice"}, {ID: "ns/ops/sa/root", Username: "root"}, {ID: "ns/x/sa/nobody", Username: "nobody"},
	}})
	require.NoError(t, err)
	policy, err := mlflow.New(st, mlflow.Config{ExtProcFilter: true}, nil)
	require.NoError(t, err)
	wrapped, err := rules.NewTraceWriters([]string{"spiffe://cluster.local/ns/o/sa/collector"}, policy)
	require.NoError(t, err)
	engine, err := authz.NewEngine(authz.Config{
		Apps: []*authz.App{{Name: "mlflow", Hosts: []string{host}, Policy: wrapped}, {Name: "kiali", Hosts: []string{"kiali.test"}, Policy: authz.PolicyFunc(func(_ context.Context, _ *authz.Request, _ *authz.Identity) authz.Decision {
			return authz.Allow(authz.ReasonAllowed)
		})}},
		Authenticators: []authz.Authenticator{spiffe},
	})
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := extproc.NewServer(engine, nil, nil, opts)
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: extauthz.NewServer(engine, nil, nil), Register: srv.Register})
	go func() { _ = gs.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(); gs.Stop() })
	return &fixture{client: extprocv3.NewExternalProcessorClient(conn), store: st}
}

// conversation is one ext_proc stream, driven as Envoy drives it.
type conversation struct {
	t *testing.T
	s extprocv3.ExternalProcessor_ProcessClient
}

func (f *fixture) open(t *testing.T) *conversation {
	t.Helper()
	s, err := f.client.Process(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.CloseSend() })
	return &conversation{t: t, s: s}
}

// send sends one message and returns the server's one answer.
func (c *conversation) send(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	c.t.Helper()
	require.NoError(c.t, c.s.Send(req))
	resp, err := c.s.Recv()
	require.NoError(c.t, err)
	return resp
}

func headerList(h map[string]string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for k, v := range h {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	return m
}

// requestHeaders is what Envoy sends first: every header (pseudo-headers
// included) in raw_value, and the peer attribute the manifests ask for.
func requestHeaders(method, target, peer string) *extprocv3.ProcessingRequest {
	return requestHeadersOn(host, method, target, peer)
}

func requestHeadersOn(authority, method, target, peer string) *extprocv3.ProcessingRequest {
	h := map[string]string{":method": method, ":path": target, ":authority": authority, ":scheme": "https",
		"x-request-id": "rid-1", "accept-encoding": "gzip, br"}
	attrs := map[string]*structpb.Struct{}
	if peer != "" {
		attrs["envoy.filters.http.ext_proc"] = &structpb.Struct{Fields: map[string]*structpb.Value{
			"connection.uri_san_peer_certificate": structpb.NewStringValue(peer)}}
	}
	return &extprocv3.ProcessingRequest{
		Request:    &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: headerList(h), EndOfStream: method == "GET"}},
		Attributes: attrs,
	}
}

func responseHeaders(status string, h map[string]string) *extprocv3.ProcessingRequest {
	all := map[string]string{":status": status}
	for k, v := range h {
		all[k] = v
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerList(all)}}}
}

func responseBody(body string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos}}}
}

func requestBody(body string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}}
}

var jsonHeaders = map[string]string{"content-type": "application/json"}

// assertSkipped checks the answer that ends the filter's part in a request:
// no immediate response, and nothing more asked for.
func assertSkipped(t *testing.T, resp *extprocv3.ProcessingResponse) {
	t.Helper()
	require.NotNil(t, resp.GetRequestHeaders(), "%v", resp)
	m := resp.GetModeOverride()
	require.NotNil(t, m)
	assert.Equal(t, procmodev3.ProcessingMode_SKIP, m.GetResponseHeaderMode())
	assert.Equal(t, procmodev3.ProcessingMode_NONE, m.GetResponseBodyMode())
	assert.Equal(t, procmodev3.ProcessingMode_NONE, m.GetRequestBodyMode())
}

// assertImmediate checks a local reply: its status, its reason, and the
// body in MLflow's error shape.
func assertImmediate(t *testing.T, resp *extprocv3.ProcessingResponse, status int, reason authz.Reason) {
	t.Helper()
	ir := resp.GetImmediateResponse()
	require.NotNil(t, ir, "no immediate response: %v", resp)
	assert.Equal(t, status, int(ir.GetStatus().GetCode()))
	var body struct {
		ErrorCode string `json:"error_code"`
		Reason    string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal(ir.GetBody(), &body), string(ir.GetBody()))
	assert.Equal(t, string(reason), body.Reason)
	assert.NotEmpty(t, body.ErrorCode)
	var ct, rh string
	for _, h := range ir.GetHeaders().GetSetHeaders() {
		switch h.GetHeader().GetKey() {
		case "content-type":
			ct = string(h.GetHeader().GetRawValue())
		case "x-authz-reason":
			rh = string(h.GetHeader().GetRawValue())
		}
	}
	assert.Equal(t, "application/json", ct)
	assert.Equal(t, string(reason), rh)
}

func mutatedBody(t *testing.T, common *extprocv3.CommonResponse) string {
	t.Helper()
	b := common.GetBodyMutation().GetBody()
	require.NotNil(t, b, "no body mutation")
	return string(b)
}

const searchPath = "/ajax-api/2.0/mlflow/experiments/search?max_results=3"

const twoRows = `{"experiments":[{"experiment_id":"1","name":"one"},{"experiment_id":"2","name":"two"}],"next_page_token":"t2"}`

func TestProtocol(t *testing.T) {
	f := start(t, extproc.Options{MaxBodyBytes: 64 << 10})

	t.Run("an unfiltered route: one round trip, nothing more", func(t *testing.T) {
		assertSkipped(t, f.open(t).send(requestHeaders("GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", peerAlice)))
	})
	t.Run("an admin pays nothing", func(t *testing.T) {
		assertSkipped(t, f.open(t).send(requestHeaders("GET", searchPath, peerRoot)))
	})
	t.Run("another application", func(t *testing.T) {
		assertSkipped(t, f.open(t).send(requestHeadersOn("kiali.test", "GET", "/kiali/api", peerAlice)))
	})
	t.Run("an unknown host is refused", func(t *testing.T) {
		assertImmediate(t, f.open(t).send(requestHeadersOn("other.test", "GET", searchPath, peerAlice)), 403, authz.ReasonUnknownHost)
	})
	t.Run("a path Check would refuse is refused", func(t *testing.T) {
		assertImmediate(t, f.open(t).send(requestHeaders("GET", "/ajax-api/2.0/mlflow/experiments/%2e%2e/search", peerAlice)), 400, authz.ReasonPathNotCanonical)
	})
	t.Run("a search is filtered row by row", func(t *testing.T) {
		c := f.open(t)
		resp := c.send(requestHeaders("GET", searchPath, peerAlice))
		m := resp.GetModeOverride()
		assert.Equal(t, procmodev3.ProcessingMode_SEND, m.GetResponseHeaderMode())
		assert.Equal(t, procmodev3.ProcessingMode_BUFFERED_PARTIAL, m.GetResponseBodyMode())
		assert.Equal(t, []string{"accept-encoding"}, resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders(), "ask for an uncompressed answer")
		resp = c.send(responseHeaders("200", jsonHeaders))
		require.NotNil(t, resp.GetResponseHeaders())
		resp = c.send(responseBody(twoRows, true))
		assert.JSONEq(t, `{"experiments":[{"experiment_id":"1","name":"one"}],"next_page_token":"t2"}`, mutatedBody(t, resp.GetResponseBody().GetResponse()))
	})
	t.Run("a page of readable rows passes unchanged", func(t *testing.T) {
		c := f.open(t)
		c.send(requestHeaders("GET", searchPath, peerAlice))
		c.send(responseHeaders("200", jsonHeaders))
		resp := c.send(responseBody(`{"experiments":[{"experiment_id":"1"}]}`, true))
		require.NotNil(t, resp.GetResponseBody())
		assert.Nil(t, resp.GetResponseBody().GetResponse().GetBodyMutation())
	})
	t.Run("an error answer passes untouched", func(t *testing.T) {
		c := f.open(t)
		c.send(requestHeaders("GET", searchPath, peerAlice))
		resp := c.send(responseHeaders("400", jsonHeaders))
		assert.Equal(t, procmodev3.ProcessingMode_NONE, resp.GetModeOverride().GetResponseBodyMode())
	})
	t.Run("runs/search is narrowed", func(t *testing.T) {
		c := f.open(t)
		resp := c.send(requestHeaders("POST", "/api/2.0/mlflow/runs/search", peerAlice))
		assert.Equal(t, procmodev3.ProcessingMode_BUFFERED, resp.GetModeOverride().GetRequestBodyMode())
		assert.Equal(t, procmodev3.ProcessingMode_SKIP, resp.GetModeOverride().GetResponseHeaderMode())
		resp = c.send(requestBody(`{"experiment_ids":["2","1"],"max_results":10}`))
		common := resp.GetRequestBody().GetResponse()
		body := mutatedBody(t, common)
		assert.JSONEq(t, `{"experiment_ids":["1"],"max_results":10}`, body)
		set := common.GetHeaderMutation().GetSetHeaders()
		require.Len(t, set, 1)
		assert.Equal(t, "content-length", set[0].GetHeader().GetKey())
		assert.Equal(t, []byte(strconv.Itoa(len(body))), set[0].GetHeader().GetRawValue())
	})
	t.Run("runs/search with nothing readable is a 403", func(t *testing.T) {
		c := f.open(t)
		c.send(requestHeaders("POST", "/api/2.0/mlflow/runs/search", peerAlice))
		assertImmediate(t, c.send(requestBody(`{"experiment_ids":["2"]}`)), 403, extproc.ReasonNothingReadable)
	})
	t.Run("GetRegisteredModel of a readable model: nothing to redact", func(t *testing.T) {
		assertSkipped(t, f.open(t).send(requestHeaders("GET", "/api/2.0/mlflow/registered-models/get?name=m1", peerAlice)))
	})
	t.Run("GetTrace of a readable trace: nothing to redact", func(t *testing.T) {
		assertSkipped(t, f.open(t).send(requestHeaders("GET", "/api/3.0/mlflow/traces/get?trace_id=tr-1", peerAlice)))
		assertSkipped(t, f.open(t).send(requestHeaders("GET", "/api/3.0/mlflow/traces/tr-1", peerAlice)))
	})
	t.Run("GetTrace of another trace is redacted", func(t *testing.T) {
		c := f.open(t)
		resp := c.send(requestHeaders("GET", "/api/3.0/mlflow/traces/get?trace_id=tr-2", peerAlice))
		assert.Equal(t, procmodev3.ProcessingMode_BUFFERED_PARTIAL, resp.GetModeOverride().GetResponseBodyMode())
	})
	t.Run("an unexpected message ends the stream with an error, never a clean close", func(t *testing.T) {
		c := f.open(t)
		require.NoError(t, c.s.Send(&extprocv3.ProcessingRequest{}))
		_, err := c.s.Recv()
		require.Error(t, err)
	})
}

func TestProtocolFailsClosed(t *testing.T) {
	f := start(t, extproc.Options{MaxBodyBytes: 1024})
	filtered := func(t *testing.T) *conversation {
		c := f.open(t)
		c.send(requestHeaders("GET", searchPath, peerAlice))
		return c
	}
	tests := []struct {
		name    string
		headers map[string]string
		status  string
		body    string
		eos     bool
		code    int
		reason  authz.Reason
	}{
		{"gzip", map[string]string{"content-type": "application/json", "content-encoding": "gzip"}, "200", "", true, 503, extproc.ReasonResponseEncoded},
		{"non-JSON 200", map[string]string{"content-type": "text/html"}, "200", "", true, 503, extproc.ReasonResponseNotJSON},
		{"unexpected 2xx", jsonHeaders, "206", "", true, 503, extproc.ReasonResponseNotJSON},
		{"truncated body", jsonHeaders, "200", `{"experiments":[{"experiment_id":"1"},{"exper`, true, 503, extproc.ReasonResponseMalformed},
		{"JSON content type, HTML body", jsonHeaders, "200", `<html></html>`, true, 503, extproc.ReasonResponseMalformed},
		{"cut at Envoy's buffer limit", jsonHeaders, "200", twoRows, false, 503, extproc.ReasonResponseTooLarge},
		{"above max_body_bytes", jsonHeaders, "200", `{"experiments":[` + strings.Repeat(`{"experiment_id":"2"},`, 60) + `{"experiment_id":"1"}]}`, true, 503, extproc.ReasonResponseTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := filtered(t)
			resp := c.send(responseHeaders(tt.status, tt.headers))
			if tt.body != "" {
				require.NotNil(t, resp.GetResponseHeaders(), "%v", resp)
				resp = c.send(responseBody(tt.body, tt.eos))
			}
			assertImmediate(t, resp, tt.code, tt.reason)
		})
	}
	t.Run("store outage in the middle of a response", func(t *testing.T) {
		c := filtered(t)
		c.send(responseHeaders("200", jsonHeaders))
		f.store.Close()
		assertImmediate(t, c.send(responseBody(twoRows, true)), http.StatusServiceUnavailable, authz.ReasonUnavailable)
	})
}
