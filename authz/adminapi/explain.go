package adminapi

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mlflow-authz/mlflow-authz/authz"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

// fixedIdentity is the authenticator of explain-as-user: it yields the
// named user for every request, so the rest of the pipeline runs unchanged.
type fixedIdentity struct{ id *authz.Identity }

func (f fixedIdentity) Authenticate(context.Context, *authz.Request) (*authz.Identity, error) {
	return f.id, nil
}

// Explain decides one request with a trace, through the same engine code as
// Check: as the bearer of req.Token through the live authenticators, or as
// req.User with req.Groups in place of authentication.
func (h *handlers) Explain(ctx context.Context, req *v1.ExplainRequest) (*v1.ExplainResponse, error) {
	if h.opts.Engine == nil {
		return nil, status.Error(codes.FailedPrecondition, "explain needs the engine: run it with --config, or through --server")
	}
	if req.GetUser() != "" && req.GetToken() != "" {
		return nil, status.Error(codes.InvalidArgument, "give a token or --user, not both")
	}
	headers := make(map[string]string, len(req.GetHeaders())+1)
	for k, v := range req.GetHeaders() {
		headers[strings.ToLower(k)] = v
	}
	if req.GetToken() != "" {
		headers["authorization"] = "Bearer " + req.GetToken()
	}
	if len(req.GetBody()) > 0 && headers["content-type"] == "" {
		headers["content-type"] = "application/json"
	}
	engine := h.opts.Engine
	if req.GetUser() != "" {
		if h.opts.EngineConfig == nil {
			return nil, status.Error(codes.FailedPrecondition, "explain as a named user is not available here")
		}
		groups := make([]string, 0, len(req.GetGroups()))
		for _, g := range req.GetGroups() {
			groups = append(groups, authz.NormalizeGroup(g))
		}
		cfg := h.opts.EngineConfig()
		cfg.Authenticators = []authz.Authenticator{fixedIdentity{&authz.Identity{
			Kind: authz.KindUser, Username: req.GetUser(), Groups: groups, Method: "explain",
		}}}
		var err error
		if engine, err = authz.NewEngine(cfg); err != nil {
			return nil, status.Errorf(codes.Internal, "adminapi: %v", err)
		}
	}
	var tr authz.Trace
	var d authz.Decision
	r, deny := authz.NewRequest(authz.RequestInput{
		ID: "explain", Method: req.GetMethod(), Host: req.GetHost(), Target: req.GetTarget(),
		Headers: headers, Body: req.GetBody(), Principal: req.GetPrincipal(),
	})
	if deny != nil {
		d = *deny
		tr.Addf("request", "%s %s refused before routing: %s", req.GetMethod(), req.GetTarget(), d.Message)
	} else {
		d = engine.Check(authz.WithTrace(ctx, &tr), r)
	}
	out := &v1.ExplainResponse{Allowed: d.Allowed, Status: int32(d.Status), Reason: string(d.Reason), Message: d.Message, App: d.App}
	for _, st := range tr.Steps {
		out.Steps = append(out.Steps, &v1.Step{Stage: st.Stage, Detail: st.Detail})
	}
	return out, nil
}
