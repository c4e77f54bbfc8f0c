package extauthz

import (
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// AuthorizationService is the full gRPC name of Envoy's ext_authz service,
// as health checks name it.
const AuthorizationService = "envoy.service.auth.v3.Authorization"

// Defaults for GRPCOptions.
const (
	// DefaultMaxConnectionAge makes Envoy reconnect now and then, so new
	// replicas get traffic: Envoy otherwise keeps one HTTP/2 connection per
	// worker for ever and balances nothing.
	DefaultMaxConnectionAge = 5 * time.Minute
	// DefaultMaxRecvMsgSize is above any sane Istio maxRequestBytes plus
	// headers; grpc-go's own 4 MiB would turn a large body into
	// ResourceExhausted, which is Envoy's error (failOpen) path.
	DefaultMaxRecvMsgSize = 8 << 20
	// DefaultKeepaliveMinTime tolerates Envoy's keepalive pings; grpc-go's
	// default of 5 minutes answers frequent pings with GOAWAY too_many_pings.
	DefaultKeepaliveMinTime = 5 * time.Second
	// DefaultStreamWorkers is how many goroutines wait to run calls. A
	// check needs about 16 KB of stack (the classifier's and the policy's
	// frames); a goroutine started per call, as grpc-go does without
	// workers, starts small and grows to that size copy by copy, on every
	// call. Workers keep their grown stacks. With more calls in flight than
	// workers, grpc-go starts a goroutine for each of the rest, as without
	// them.
	DefaultStreamWorkers = 64
)

// GRPCOptions configures NewGRPCServer. Zero values take the defaults.
type GRPCOptions struct {
	// Server answers Check. Required. Usually a *Server, whose Check
	// requests are decoded from the wire by the service itself; the load
	// generator's benchmark floor passes a no-op implementation, which gets
	// them as generated messages, behind the same grpc-go settings.
	Server authv3.AuthorizationServer
	// Health reports serving status. Nil registers a health service that
	// always reports SERVING.
	Health *Health
	// MaxConnectionAge is how long a client connection lives before a
	// graceful GOAWAY. Jittered ±10% by grpc-go.
	MaxConnectionAge time.Duration
	// MaxRecvMsgSize bounds one CheckRequest, body included.
	MaxRecvMsgSize int
	// KeepaliveMinTime is the shortest client ping interval allowed.
	KeepaliveMinTime time.Duration
	// StreamWorkers is how many goroutines run calls (checks, and the
	// streams of the other services), each reused from call to call:
	// 0 takes DefaultStreamWorkers, a negative value starts a goroutine per
	// call (grpc-go's default). A long-lived stream (ext_proc) holds its
	// worker until it ends.
	StreamWorkers int
	// ServerOptions are appended, for TLS credentials or interceptors.
	ServerOptions []grpc.ServerOption
	// Register adds further services beside Check on the same server and
	// port (the ext_proc filter); nil adds none.
	Register func(*grpc.Server)
}

// NewGRPCServer returns a gRPC server with the Authorization service, the
// standard health service and server reflection registered, and keepalive
// settings that suit Envoy as the client.
func NewGRPCServer(opts GRPCOptions) *grpc.Server {
	if opts.MaxConnectionAge <= 0 {
		opts.MaxConnectionAge = DefaultMaxConnectionAge
	}
	if opts.MaxRecvMsgSize <= 0 {
		opts.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if opts.KeepaliveMinTime <= 0 {
		opts.KeepaliveMinTime = DefaultKeepaliveMinTime
	}
	if opts.StreamWorkers == 0 {
		opts.StreamWorkers = DefaultStreamWorkers
	}
	if opts.Health == nil {
		opts.Health = NewHealth()
		opts.Health.SetServing(true)
	}
	so := append([]grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             opts.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      opts.MaxConnectionAge,
			MaxConnectionAgeGrace: 30 * time.Second,
			Time:                  30 * time.Second,
			Timeout:               10 * time.Second,
		}),
		grpc.MaxRecvMsgSize(opts.MaxRecvMsgSize),
	}, opts.ServerOptions...)
	if opts.StreamWorkers > 0 {
		// Experimental in grpc-go; measured in docs/performance.md.
		so = append(so, grpc.NumStreamWorkers(uint32(opts.StreamWorkers)))
	}
	own, isOwn := opts.Server.(*Server)
	if isOwn {
		// Our Check reads its request off the wire itself (decodeCheck);
		// any other implementation (the benchmark floor) gets grpc-go's.
		so = append(so, grpc.ForceServerCodecV2(newServerCodec()))
	}
	gs := grpc.NewServer(so...)
	if isOwn {
		gs.RegisterService(&authorizationDesc, own)
	} else {
		authv3.RegisterAuthorizationServer(gs, opts.Server)
	}
	if opts.Register != nil {
		opts.Register(gs)
	}
	healthpb.RegisterHealthServer(gs, opts.Health.Server)
	reflection.Register(gs)
	return gs
}

// Health is the grpc.health.v1 service, reporting one status for the whole
// server ("") and for AuthorizationService (and any service added with
// Track) together: Kubernetes probes ask for the first, Envoy-style health
// checks may name the others.
type Health struct {
	*health.Server

	mu      sync.Mutex
	names   []string
	serving bool
}

// NewHealth returns a Health that reports NOT_SERVING until SetServing(true):
// a replica should take traffic only once its configuration is loaded.
func NewHealth() *Health {
	h := &Health{Server: health.NewServer(), names: []string{"", AuthorizationService}}
	h.SetServing(false)
	return h
}

// Track adds a service name (the ext_proc filter's) whose status follows
// the server's.
func (h *Health) Track(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names = append(h.names, name)
	h.SetServingStatus(name, servingStatus(h.serving))
}

// SetServing switches the overall and every service's status, for instance
// to NOT_SERVING on SIGTERM so load balancers drain us first.
func (h *Health) SetServing(serving bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serving = serving
	for _, n := range h.names {
		h.SetServingStatus(n, servingStatus(serving))
	}
}

func servingStatus(serving bool) healthpb.HealthCheckResponse_ServingStatus {
	if serving {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}
