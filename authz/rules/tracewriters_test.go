package rules_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/authz/rules"
)

func TestTraceWriters(t *testing.T) {
	rs, err := rules.New([]rules.Config{
		{PathPrefixes: []string{"/v1/"}, Allow: "authenticated"},
	})
	require.NoError(t, err)
	tw, err := rules.NewTraceWriters([]string{collector}, rs)
	require.NoError(t, err)

	tests := []struct {
		name      string
		method    string
		target    string
		principal string
		id        *authz.Identity
		reason    authz.Reason
		status    int
	}{
		{name: "collector exports traces", method: "POST", target: "/v1/traces", principal: collector, id: nobody, reason: authz.ReasonTraceWriter, status: 200},
		{name: "collector with query string", method: "POST", target: "/v1/traces?x=1", principal: collector, id: nobody, reason: authz.ReasonTraceWriter, status: 200},
		{name: "wrong method falls through", method: "GET", target: "/v1/traces", principal: collector, id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "PUT falls through", method: "PUT", target: "/v1/traces", principal: collector, id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "wrong path falls through", method: "POST", target: "/v1/spans", principal: collector, id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "trailing slash falls through", method: "POST", target: "/v1/traces/", principal: collector, id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "sub-path falls through", method: "POST", target: "/v1/traces/x", principal: collector, id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "other principal falls through", method: "POST", target: "/v1/traces", principal: gateway, id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "principal with a suffix falls through", method: "POST", target: "/v1/traces", principal: collector + "x", id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "no principal falls through", method: "POST", target: "/v1/traces", id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "forged XFCC is not a principal", method: "POST", target: "/v1/traces", id: nobody, reason: authz.ReasonUnauthenticated, status: 401},
		{name: "authenticated user falls through to rules", method: "POST", target: "/v1/traces", principal: gateway, id: alice, reason: authz.ReasonAllowed, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{"x-forwarded-client-cert": "URI=" + collector}
			d := tw.Decide(t.Context(), authztest.NewRequest(t, tt.method, tt.target, tt.principal, headers), tt.id)
			assert.Equal(t, tt.status == 200, d.Allowed)
			assert.Equal(t, tt.status, d.Status)
			assert.Equal(t, tt.reason, d.Reason)
		})
	}
}

func TestNewTraceWriters(t *testing.T) {
	next := authz.PolicyFunc(func(context.Context, *authz.Request, *authz.Identity) authz.Decision {
		return authz.Deny(http.StatusForbidden, authz.ReasonNoRuleMatched, "x")
	})
	p, err := rules.NewTraceWriters(nil, next)
	require.NoError(t, err)
	d := p.Decide(t.Context(), authztest.NewRequest(t, "POST", "/v1/traces", collector, nil), nobody)
	assert.Equal(t, http.StatusForbidden, d.Status)
	assert.Equal(t, authz.ReasonNoRuleMatched, d.Reason)

	_, err = rules.NewTraceWriters([]string{"cluster.local/ns/observability/sa/otel-collector"}, next)
	require.ErrorContains(t, err, "rules: trace_writers[0]: ")
	_, err = rules.NewTraceWriters([]string{collector}, nil)
	require.ErrorContains(t, err, "rules: trace_writers: no policy")
}
