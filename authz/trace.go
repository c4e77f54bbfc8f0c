package authz

import (
	"context"
	"fmt"
)

// Trace records the steps of one decision for `mlflow-authz explain`. The
// engine and the applications write to it only when the context carries one,
// so the hot path pays a single context lookup.
type Trace struct {
	Steps []Step
}

// Step is one line of an explanation.
type Step struct {
	Stage  string `json:"stage"` // request, identity, route, params, resource, permission, decision
	Detail string `json:"detail"`
}

type traceKey struct{}

// WithTrace returns a context whose decision steps are recorded into t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom returns the trace carried by ctx, or nil.
func TraceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// Addf appends a step. It is safe to call on a nil *Trace.
func (t *Trace) Addf(stage, format string, args ...any) {
	if t == nil {
		return
	}
	t.Steps = append(t.Steps, Step{Stage: stage, Detail: fmt.Sprintf(format, args...)})
}
