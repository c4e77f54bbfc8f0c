package extauthz_test

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// startGRPC serves opts on a fresh loopback port and returns its address.
func startGRPC(t testing.TB, opts extauthz.GRPCOptions) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := extauthz.NewGRPCServer(opts)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// dial connects like Envoy does: plaintext HTTP/2 (mTLS is the sidecar's
// job) and a keepalive ping every 10s.
func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestGRPCCheck(t *testing.T) {
	srv := extauthz.NewServer(newTestEngine(t), nil, nil)
	client := authv3.NewAuthorizationClient(dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv})))
	const expGet = "/api/2.0/mlflow/experiments/get?experiment_id=1"
	tests := []struct {
		name string
		req  *authv3.CheckRequest
		want want
	}{
		{
			name: "allow overwrites a spoofed identity header",
			req:  istioRequest("GET", mlflowHost, expGet, withBearer("alice"), withHeader("x-authz-user", "admin")),
			want: want{code: codes.OK, reason: authz.ReasonAllowed, set: map[string]string{"x-authz-user": "alice"}, remove: []string{"x-authz-groups"}},
		},
		{
			name: "allow with a body",
			req:  istioRequest("POST", mlflowHost, "/api/2.0/mlflow/runs/create", withBearer("alice"), withJSONBody(`{"experiment_id":"1"}`, false)),
			want: want{code: codes.OK, reason: authz.ReasonAllowed, set: map[string]string{"x-authz-user": "alice"}, remove: []string{"x-authz-groups"}},
		},
		{
			name: "anonymous allow removes spoofed identity headers",
			req:  istioRequest("GET", mlflowHost, "/health", withHeader("x-authz-user", "admin")),
			want: want{code: codes.OK, reason: authz.ReasonAllowed, set: map[string]string{}, remove: []string{"x-authz-user", "x-authz-groups"}},
		},
		{
			name: "deny 401",
			req:  istioRequest("GET", mlflowHost, expGet),
			want: want{code: codes.Unauthenticated, httpStatus: 401, reason: authz.ReasonUnauthenticated},
		},
		{
			name: "deny 403",
			req:  istioRequest("GET", mlflowHost, expGet, withBearer("bob")),
			want: want{code: codes.PermissionDenied, httpStatus: 403, reason: authz.ReasonPermissionDenied},
		},
		{
			name: "deny 400",
			req:  istioRequest("GET", mlflowHost, "/api/2.0/mlflow/experiments%2fget", withBearer("alice")),
			want: want{code: codes.PermissionDenied, httpStatus: 400, reason: authz.ReasonPathNotCanonical},
		},
		{
			name: "deny 503",
			req:  istioRequest("GET", mlflowHost, "/unavailable", withBearer("alice")),
			want: want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonUnavailable},
		},
		{
			name: "panic is a 503 deny, not an RPC error",
			req:  istioRequest("GET", mlflowHost, "/panic", withBearer("alice")),
			want: want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonInternal},
		},
		{
			name: "set and removed header conflict fails closed",
			req:  istioRequest("GET", "broken.example.com", expGet, withBearer("alice")),
			want: want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonInternal},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Check(t.Context(), tt.req)
			require.NoError(t, err, "every decision is a successful RPC")
			assertResponse(t, tt.want, resp)
		})
	}
}

func TestGRPCServerTimeoutDenies(t *testing.T) {
	srv := extauthz.NewServer(newTestEngine(t), nil, nil, extauthz.WithTimeout(50*time.Millisecond))
	client := authv3.NewAuthorizationClient(dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv})))
	resp, err := client.Check(t.Context(), istioRequest("GET", mlflowHost, "/slow", withBearer("alice")))
	require.NoError(t, err)
	assertResponse(t, want{code: codes.Unavailable, httpStatus: 503, reason: authz.ReasonDeadlineExceeded}, resp)
}

func TestGRPCHealth(t *testing.T) {
	health := extauthz.NewHealth()
	srv := extauthz.NewServer(newTestEngine(t), nil, nil)
	client := healthpb.NewHealthClient(dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv, Health: health})))
	assertStatus := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, svc := range []string{"", extauthz.AuthorizationService} {
			resp, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
			require.NoError(t, err)
			assert.Equal(t, want, resp.GetStatus(), "service %q", svc)
		}
	}
	assertStatus(healthpb.HealthCheckResponse_NOT_SERVING)
	health.SetServing(true)
	assertStatus(healthpb.HealthCheckResponse_SERVING)
	health.SetServing(false)
	assertStatus(healthpb.HealthCheckResponse_NOT_SERVING)

	t.Run("without a Health the server reports serving", func(t *testing.T) {
		client := healthpb.NewHealthClient(dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv})))
		resp, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: extauthz.AuthorizationService})
		require.NoError(t, err)
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	})
}

func TestGRPCServices(t *testing.T) {
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: extauthz.NewServer(newTestEngine(t), nil, nil)})
	t.Cleanup(gs.Stop)
	info := gs.GetServiceInfo()
	for _, name := range []string{extauthz.AuthorizationService, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		assert.Contains(t, info, name)
	}
}

func TestGRPCLargeBody(t *testing.T) {
	srv := extauthz.NewServer(newTestEngine(t), nil, nil)
	client := authv3.NewAuthorizationClient(dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv})))
	// Above grpc-go's 4 MiB default: must still be decided, or Envoy would
	// see ResourceExhausted and take its error (failOpen) path.
	body := `{"experiment_id":"1","pad":"` + strings.Repeat("x", 6<<20) + `"}`
	resp, err := client.Check(t.Context(), istioRequest("POST", mlflowHost, "/api/2.0/mlflow/runs/create", withBearer("alice"), withJSONBody(body, false)),
		grpc.MaxCallSendMsgSize(16<<20))
	require.NoError(t, err)
	assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
}

func TestGRPCKeepalive(t *testing.T) {
	t.Run("Envoy-style client keeps its connection", func(t *testing.T) {
		srv := extauthz.NewServer(newTestEngine(t), nil, nil)
		cc := dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv}))
		client := authv3.NewAuthorizationClient(cc)
		for range 5 {
			resp, err := client.Check(t.Context(), istioRequest("GET", mlflowHost, "/health"))
			require.NoError(t, err)
			assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
			time.Sleep(20 * time.Millisecond)
		}
		assert.Equal(t, connectivity.Ready, cc.GetState())
	})

	// A ping every 10s against MinTime 5s is the production case; it is
	// replayed here on a 100× faster clock so the test takes a second. The
	// control case proves the probe would see too_many_pings.
	tests := []struct {
		name       string
		minTime    time.Duration
		interval   time.Duration
		wantGoAway bool
	}{
		{name: "pings slower than MinTime, no stream open, are tolerated", minTime: 20 * time.Millisecond, interval: 100 * time.Millisecond},
		{name: "control: pings faster than MinTime get GOAWAY too_many_pings", minTime: extauthz.DefaultKeepaliveMinTime, interval: 20 * time.Millisecond, wantGoAway: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := extauthz.NewServer(newTestEngine(t), nil, nil)
			addr := startGRPC(t, extauthz.GRPCOptions{Server: srv, KeepaliveMinTime: tt.minTime})
			goAway := pingFor(t, addr, tt.interval, 10)
			if tt.wantGoAway {
				assert.Contains(t, goAway, "too_many_pings")
			} else {
				assert.Empty(t, goAway)
			}
		})
	}
}

// pingFor opens a raw HTTP/2 connection with no streams, sends n PINGs
// interval apart and returns the debug data of any GOAWAY the server sent.
func pingFor(t *testing.T, addr string, interval time.Duration, n int) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	fr := http2.NewFramer(conn, conn)
	require.NoError(t, fr.WriteSettings())
	// Wait for the server's SETTINGS and acknowledge it, then only read.
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err)
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			require.NoError(t, fr.WriteSettingsAck())
			break
		}
	}
	goAway := make(chan string, 1)
	go func() {
		defer close(goAway)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				goAway <- ga.ErrCode.String() + " " + string(ga.DebugData())
				return
			}
		}
	}()
	for i := range n {
		if fr.WritePing(false, [8]byte{byte(i)}) != nil {
			break
		}
		select {
		case msg := <-goAway:
			return msg
		case <-time.After(interval):
		}
	}
	_ = conn.Close()
	return <-goAway
}

func TestGRPCErrorsOnlyForTransport(t *testing.T) {
	// The only RPC errors a client can see are transport ones, such as a
	// message above MaxRecvMsgSize. Istio's maxRequestBytes must stay below
	// it, which is why the default is 8 MiB.
	srv := extauthz.NewServer(newTestEngine(t), nil, nil)
	client := authv3.NewAuthorizationClient(dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv, MaxRecvMsgSize: 1 << 10})))
	_, err := client.Check(t.Context(), istioRequest("POST", mlflowHost, "/x", withJSONBody(strings.Repeat("x", 2<<10), false)))
	require.Error(t, err)
	assert.Equal(t, codes.ResourceExhausted, grpcstatus.Code(err))
}

// goroutineRecorder answers every Check and records which goroutine ran it
// (the id runtime.Stack prints first: "goroutine 123 [running]:").
type goroutineRecorder struct {
	authv3.UnimplementedAuthorizationServer
	mu  sync.Mutex
	ids map[string]int
}

func (g *goroutineRecorder) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	g.mu.Lock()
	g.ids[id]++
	g.mu.Unlock()
	return &authv3.CheckResponse{}, nil
}

// TestGRPCStreamWorkers: with workers, calls run on the same few
// goroutines (whose stacks stay grown); with them off, each call gets a
// goroutine of its own, as grpc-go does by default.
func TestGRPCStreamWorkers(t *testing.T) {
	const calls = 40
	for _, tc := range []struct {
		name            string
		workers         int
		atMost, atLeast int
	}{
		{name: "four workers", workers: 4, atMost: 4, atLeast: 1},
		{name: "off", workers: -1, atMost: calls, atLeast: calls},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &goroutineRecorder{ids: map[string]int{}}
			client := authv3.NewAuthorizationClient(dial(t, startGRPC(t, extauthz.GRPCOptions{Server: rec, StreamWorkers: tc.workers})))
			for range calls { // one at a time: a worker is always free
				_, err := client.Check(t.Context(), &authv3.CheckRequest{})
				require.NoError(t, err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			assert.LessOrEqual(t, len(rec.ids), tc.atMost, "goroutines that ran %d calls: %v", calls, rec.ids)
			assert.GreaterOrEqual(t, len(rec.ids), tc.atLeast, "goroutines that ran %d calls: %v", calls, rec.ids)
		})
	}
}

// rawCodec sends a request's bytes as they are, so a test can put on the
// wire what no generated message would; responses decode as proto.
type rawCodec struct{ encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

type rawMessage []byte

// TestGRPCUnreadableRequestDenies: a CheckRequest the service cannot read
// is a 400 deny that says why, not an RPC error (Envoy's failOpen path).
func TestGRPCUnreadableRequestDenies(t *testing.T) {
	var logged storetest.LogBuffer
	srv := extauthz.NewServer(newTestEngine(t), slog.New(slog.NewJSONHandler(&logged, nil)), nil)
	cc := dial(t, startGRPC(t, extauthz.GRPCOptions{Server: srv}))
	// attributes.request.http with a host and a path, written by hand:
	// proto3 strings are UTF-8, and no generated message writes one that
	// is not.
	checkBytes := func(path string) rawMessage {
		nest := func(num protowire.Number, v []byte) []byte {
			return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
		}
		http := append(nest(5, []byte(mlflowHost)), nest(4, []byte(path))...)
		return nest(1, nest(4, nest(2, http)))
	}
	check := func(b rawMessage) *authv3.CheckResponse {
		var resp authv3.CheckResponse
		err := cc.Invoke(t.Context(), authv3.Authorization_Check_FullMethodName, b, &resp,
			grpc.ForceCodecV2(rawCodec{encoding.GetCodecV2(protocodec.Name)}))
		require.NoError(t, err, "every decision is a successful RPC")
		return &resp
	}
	resp := check(checkBytes("/api/2.0/mlflow/experiments/get?experiment_id=1\xff"))
	assertResponse(t, want{code: codes.PermissionDenied, httpStatus: 400, reason: authz.ReasonBadRequest}, resp)
	assert.Contains(t, resp.GetDeniedResponse().GetBody(), "the CheckRequest could not be read")
	assert.Contains(t, resp.GetDeniedResponse().GetBody(), "invalid UTF-8")
	assert.Contains(t, logged.String(), `"level":"WARN","msg":"unreadable CheckRequest","error":"the CheckRequest could not be read: string field contains invalid UTF-8"`)
	assert.Contains(t, logged.String(), `"decision":"deny","status":400,"reason":"bad_request"`)

	// The same request made valid is read and decided as usual.
	resp = check(checkBytes("/api/2.0/mlflow/experiments/get?experiment_id=1"))
	assertResponse(t, want{code: codes.Unauthenticated, httpStatus: 401, reason: authz.ReasonUnauthenticated}, resp)
}
