package extproc

import (
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

// ServiceName is the full gRPC name of Envoy's ext_proc service, as health
// checks name it.
const ServiceName = "envoy.service.ext_proc.v3.ExternalProcessor"

// Register serves s on gs, beside Check on the same port.
func (s *Server) Register(gs *grpc.Server) {
	extprocv3.RegisterExternalProcessorServer(gs, s)
}
