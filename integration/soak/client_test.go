package soak

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcClient is one gRPC connection to the service for the decision checks
// made outside the load.
type grpcClient struct {
	authv3.AuthorizationClient
	conn *grpc.ClientConn
}

func dialClient(addr string) (*grpcClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &grpcClient{AuthorizationClient: authv3.NewAuthorizationClient(conn), conn: conn}, nil
}

func (c *grpcClient) close() { _ = c.conn.Close() }
