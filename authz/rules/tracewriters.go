package rules

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// OTLPTracesPath is the OTLP/HTTP trace export path that MLflow and Phoenix
// both serve.
const OTLPTracesPath = "/v1/traces"

// TraceWriters lets listed mTLS workloads (typically the OpenTelemetry
// collector) export traces without a token, and hands every other request to
// the policy it wraps. Collectors authenticate with their mesh certificate;
// giving them a long-lived bearer token would only add a secret to leak.
//
// Only exactly "POST /v1/traces" qualifies: no other method, no trailing
// slash, no sub-path, so the exception can never open anything else.
type TraceWriters struct {
	principals []string
	next       authz.Policy
}

// NewTraceWriters returns next, with principals allowed to POST /v1/traces.
// With no principals it returns next unchanged.
func NewTraceWriters(principals []string, next authz.Policy) (authz.Policy, error) {
	if next == nil {
		return nil, fmt.Errorf("rules: trace_writers: no policy to wrap")
	}
	if len(principals) == 0 {
		return next, nil
	}
	tw := &TraceWriters{next: next}
	for i, p := range principals {
		if !strings.HasPrefix(p, "spiffe://") || len(p) == len("spiffe://") || strings.ContainsAny(p, " \t\r\n") {
			return nil, fmt.Errorf("rules: trace_writers[%d]: %q is not a full SPIFFE ID (spiffe://<trust domain>/ns/<namespace>/sa/<service account>)", i, p)
		}
		tw.principals = append(tw.principals, p)
	}
	return tw, nil
}

// Decide allows a listed peer's trace export and defers everything else.
func (tw *TraceWriters) Decide(ctx context.Context, r *authz.Request, id *authz.Identity) authz.Decision {
	if r.Method == http.MethodPost && r.Path == OTLPTracesPath && r.Principal != "" {
		for _, p := range tw.principals {
			if r.Principal == p {
				if tr := authz.TraceFrom(ctx); tr != nil {
					tr.Addf("decision", "mTLS peer %s is a trace writer", r.Principal)
				}
				return authz.Allow(authz.ReasonTraceWriter)
			}
		}
	}
	return tw.next.Decide(ctx, r, id)
}

// Unwrap returns the policy that decides everything but the exception, for
// code that needs the application's own policy (the ext_proc filter).
func (tw *TraceWriters) Unwrap() authz.Policy { return tw.next }
