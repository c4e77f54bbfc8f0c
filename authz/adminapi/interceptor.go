package adminapi

import (
	"cmp"
	"context"
	"net/http"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

// Register serves the admin API on r, every method behind the interceptor.
//
// grpc-go installs interceptors for a whole server, and the server that runs
// the admin API also answers Envoy's Check, which must never pass through
// it: a refusal there would be an RPC error, and Envoy answers RPC errors
// with its failure mode (failOpen), not with a deny. So the interceptor goes
// into each admin method's handler instead, through the interceptor argument
// grpc-go hands every grpc.MethodHandler: Check never meets it, and the
// server's own interceptors, if it ever gets some, still run first.
//
// The handlers are unexported, so Register is the only way to serve them:
// none can run unauthenticated or unaudited.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	sd := v1.AdminService_ServiceDesc
	sd.Methods = slices.Clone(sd.Methods)
	for i := range sd.Methods {
		sd.Methods[i].Handler = s.guard(sd.Methods[i].Handler)
	}
	// The interceptor guards unary calls; a streaming method would bypass
	// it, so none is served (the service has none today).
	sd.Streams = nil
	r.RegisterService(&sd, &handlers{opts: s.opts})
}

// guard runs one generated method handler with the server's interceptor
// (if any) outermost and the admin interceptor innermost.
func (s *Service) guard(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, outer grpc.UnaryServerInterceptor) (any, error) {
		in := s.intercept
		if outer != nil {
			in = func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				return outer(ctx, req, info, func(ctx context.Context, req any) (any, error) {
					return s.intercept(ctx, req, info, handler)
				})
			}
		}
		return h(srv, ctx, dec, in)
	}
}

// intercept authenticates and audits one admin call, as go-grpc-middleware's
// auth interceptor does (one function authenticates every call, so handlers
// hold only their own logic): remote callers must be admins; every call,
// allowed or refused, writes one audit line, whose change the handler's
// response describes (auditChange).
func (s *Service) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	l := auditLine{actor: s.opts.LocalActor, via: "local", action: info.FullMethod, target: auditTarget(req)}
	action, ok := actions[info.FullMethod]
	if !ok {
		// A method added to the service but not to actions: refuse it
		// rather than serve it unaudited.
		return nil, s.audit(ctx, l, status.Errorf(codes.PermissionDenied, "adminapi: %s has no audit action; refused", info.FullMethod))
	}
	l.action = action
	if s.opts.Remote {
		l.via = "grpc"
		actx, actor, err := s.authorize(ctx, info.FullMethod, req)
		l.actor = actor
		if err != nil {
			return nil, s.audit(ctx, l, err)
		}
		ctx = actx
	}
	resp, err := handler(ctx, req)
	if err == nil {
		l.before, l.after, l.changed = auditChange(req, resp)
	}
	return resp, s.audit(ctx, l, err)
}

// authorize applies Check's identity rules to an admin call: the same
// authenticator chain on the call's authorization metadata and mTLS peer,
// then admin by token (admin group or role) or by users.is_admin, or, for a
// workspace-scoped method, the admin of the workspace req names (the
// returned context then carries that limit; see workspace.go).
func (s *Service) authorize(ctx context.Context, method string, req any) (_ context.Context, actor string, err error) {
	id, actor, err := s.authenticate(ctx, method)
	if err != nil {
		return ctx, actor, err
	}
	if id.Admin {
		return ctx, actor, nil
	}
	if id.Username != "" {
		_, admin, err := s.opts.Store.User(ctx, id.Username)
		if err != nil {
			return ctx, actor, status.Error(codes.Unavailable, "could not read users.is_admin; retry")
		}
		if admin {
			return ctx, actor, nil
		}
	}
	wctx, ok, err := s.authorizeWorkspaceAdmin(ctx, method, req, id)
	switch {
	case err != nil:
		return ctx, actor, err
	case ok:
		return wctx, actor, nil
	}
	msg := "%s is not an admin: the admin API needs an admin group or role in the token, or users.is_admin (mlflow-authz users set-admin)"
	if workspaceScoped[method] && s.opts.Resolution.Workspaces() {
		msg += ", or for this call a workspace-wide MANAGE in the workspace it names"
	}
	return ctx, actor, status.Errorf(codes.PermissionDenied, msg, actor)
}

// authenticate runs the engine's authenticator chain on the call; an
// unauthenticated caller is refused.
func (s *Service) authenticate(ctx context.Context, method string) (id *authz.Identity, actor string, err error) {
	if s.opts.Engine == nil {
		return nil, "", status.Error(codes.Unavailable, "adminapi: no engine to authenticate with")
	}
	headers := map[string]string{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) == 1 {
			headers["authorization"] = v[0]
		} else if len(v) > 1 {
			// Two credentials are ambiguous: refuse rather than pick one.
			return nil, "", status.Error(codes.Unauthenticated, "more than one authorization value")
		}
	}
	r, deny := authz.NewRequest(authz.RequestInput{
		ID: "admin-api", Method: http.MethodPost, Host: "mlflow-authz-admin", Target: method,
		Headers: headers, Principal: peerSPIFFEID(ctx),
	})
	if deny != nil {
		return nil, "", status.Error(codes.InvalidArgument, deny.Message)
	}
	id, d := s.opts.Engine.Authenticate(ctx, r)
	if d != nil {
		code := codes.Unauthenticated
		if d.Status == http.StatusServiceUnavailable {
			code = codes.Unavailable
		}
		return nil, "", status.Errorf(code, "%s: %s", d.Reason, d.Message)
	}
	if !id.Authenticated() {
		return nil, "anonymous", status.Error(codes.Unauthenticated,
			"the admin API needs a Bearer token: set MLFLOW_AUTHZ_TOKEN or pass --token-file")
	}
	actor = id.Username
	if actor == "" {
		actor = cmp.Or(id.SPIFFEID, id.Subject)
	}
	return id, actor, nil
}

// peerSPIFFEID returns the URI SAN of a TLS peer's leaf certificate. Without
// TLS there is no verified peer identity, and none is assumed.
func peerSPIFFEID(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range ti.State.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}
