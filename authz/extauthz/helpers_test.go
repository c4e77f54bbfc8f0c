package extauthz_test

import (
	"context"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Identities as Istio would present them.
const (
	ingressPrincipal = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	mlflowPrincipal  = "spiffe://cluster.local/ns/mlflow/sa/mlflow"
	testRequestID    = "7f8c2b1e-3d4a-4b6c-9e8f-0a1b2c3d4e5f"
)

type requestOption func(*authv3.CheckRequest)

// istioRequest builds a CheckRequest shaped as a sidecar's ext_authz filter
// sends it under Istio's CUSTOM provider: the pseudo-headers duplicated in
// the headers map, Envoy's x-forwarded-*/x-request-id, the XFCC that the
// sidecar appends, the mTLS peer as source.principal and the workload's own
// identity as destination.principal. http.path is the raw target with query.
func istioRequest(method, host, target string, opts ...requestOption) *authv3.CheckRequest {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   socketAddress("10.244.1.17", 51234),
			Principal: ingressPrincipal,
		},
		Destination: &authv3.AttributeContext_Peer{
			Address:   socketAddress("10.244.2.9", 5000),
			Principal: mlflowPrincipal,
		},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "9187263548172635481",
				Method:   method,
				Host:     host,
				Path:     target,
				Scheme:   "https",
				Protocol: "HTTP/2",
				Size:     -1,
				Headers: map[string]string{
					":authority":            host,
					":method":               method,
					":path":                 target,
					":scheme":               "https",
					"accept":                "application/json",
					"user-agent":            "mlflow-python-client/3.4.0",
					"x-forwarded-proto":     "https",
					"x-forwarded-for":       "203.0.113.9",
					"x-request-id":          testRequestID,
					"x-envoy-attempt-count": "1",
					"x-forwarded-client-cert": "By=" + mlflowPrincipal +
						";Hash=3f1e0b8f6c2d4a9e8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a;Subject=\"\";URI=" + ingressPrincipal,
				},
			},
		},
	}}
	for _, o := range opts {
		o(req)
	}
	return req
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// withJSONBody attaches a body as Istio's includeRequestBodyInCheck with
// packAsBytes and allowPartialMessage sends it.
func withJSONBody(body string, partial bool) requestOption {
	return func(r *authv3.CheckRequest) {
		h := r.Attributes.Request.Http
		h.RawBody = []byte(body)
		h.Size = int64(len(body))
		h.Headers["content-type"] = "application/json"
		h.Headers["content-length"] = "0"
		h.Headers["x-envoy-auth-partial-body"] = "false"
		if partial {
			h.Headers["x-envoy-auth-partial-body"] = "true"
		}
	}
}

func withHeader(name, value string) requestOption {
	return func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Headers[name] = value }
}

func withBearer(token string) requestOption {
	return withHeader("authorization", "Bearer "+token)
}

// Hosts of the test applications.
const (
	mlflowHost = "mlflow.example.com"
	dryRunHost = "phoenix.example.com"
)

// tokenAuthenticator is a small but real authz.Authenticator: the bearer
// token is the username. "bad" is a present-but-invalid token (401), and
// "foreign" is someone else's well-formed credential.
type tokenAuthenticator struct{}

func (tokenAuthenticator) Authenticate(_ context.Context, r *authz.Request) (*authz.Identity, error) {
	tok, ok := strings.CutPrefix(r.Header("authorization"), "Bearer ")
	switch {
	case !ok:
		return nil, nil
	case tok == "bad":
		return nil, &authz.CredentialError{Reason: authz.ReasonInvalidToken, Message: "the token signature is invalid"}
	case tok == "foreign":
		return nil, &authz.CredentialError{Reason: authz.ReasonForeignCredentials, Message: "not our token", Foreign: true}
	}
	return &authz.Identity{Kind: authz.KindUser, Username: tok, Method: "jwt", Groups: []string{"team-" + tok}}, nil
}

// identityHeaders sets x-authz-user for a named caller and removes every
// identity header it does not set, so client-sent values never survive.
type identityHeaders struct{}

func (identityHeaders) Headers(_ *authz.Request, id *authz.Identity) ([]authz.Header, []string) {
	if id.Username == "" {
		return nil, []string{"x-authz-user", "x-authz-groups"}
	}
	return []authz.Header{{Name: "x-authz-user", Value: id.Username}}, []string{"x-authz-groups"}
}

// conflictingHeaders breaks the Decision contract on purpose.
type conflictingHeaders struct{}

func (conflictingHeaders) Headers(*authz.Request, *authz.Identity) ([]authz.Header, []string) {
	return []authz.Header{{Name: "x-authz-user", Value: "alice"}}, []string{"X-Authz-User"}
}

// testPolicy is a tiny MLflow-like policy with one path per outcome.
func testPolicy(_ context.Context, r *authz.Request, id *authz.Identity) authz.Decision {
	switch r.Path {
	case "/health":
		return authz.Allow(authz.ReasonAllowed)
	case "/panic":
		panic("policy bug")
	case "/unavailable":
		return authz.Deny(http.StatusServiceUnavailable, authz.ReasonUnavailable, "the permission store is unavailable; retry")
	case "/login":
		d := authz.Deny(http.StatusFound, authz.ReasonLoginRequired, "log in first")
		d.ResponseHeaders = []authz.Header{{Name: "location", Value: "https://mlflow.example.com/oauth2/start"}}
		return d
	}
	if !id.Authenticated() {
		d := authz.Deny(http.StatusUnauthorized, authz.ReasonUnauthenticated, "a credential is required")
		d.ResponseHeaders = []authz.Header{{Name: "www-authenticate", Value: `Bearer realm="mlflow"`}}
		return d
	}
	if id.Username == "alice" {
		return authz.Allow(authz.ReasonAllowed)
	}
	return authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, "READ permission on experiment 1 is required")
}

// slowPolicy waits for the deadline, then (wrongly) allows: the server must
// still deny.
func slowPolicy(ctx context.Context, r *authz.Request, id *authz.Identity) authz.Decision {
	if r.Path == "/slow" {
		<-ctx.Done()
		return authz.Allow(authz.ReasonAllowed)
	}
	return testPolicy(ctx, r, id)
}

func newTestEngine(tb interface{ Fatalf(string, ...any) }) *authz.Engine {
	e, err := authz.NewEngine(authz.Config{
		Apps: []*authz.App{
			{Name: "mlflow", Hosts: []string{mlflowHost}, Policy: authz.PolicyFunc(slowPolicy), Upstream: identityHeaders{}},
			{Name: "phoenix", Hosts: []string{dryRunHost}, Policy: authz.PolicyFunc(slowPolicy), Upstream: identityHeaders{}, DryRun: true},
			{Name: "broken", Hosts: []string{"broken.example.com"}, Policy: authz.PolicyFunc(testPolicy), Upstream: conflictingHeaders{}},
		},
		Authenticators: []authz.Authenticator{tokenAuthenticator{}},
	})
	if err != nil {
		tb.Fatalf("engine: %v", err)
	}
	return e
}
