package rules_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/authz/rules"
	"github.com/mlflow-authz/mlflow-authz/authz/upstream"
)

// exampleFile mirrors the keys the examples use. Decoding with KnownFields
// catches a misspelt key in an example.
type exampleFile struct {
	Issuers []authn.IssuerConfig `yaml:"issuers"`
	Session *authn.SessionConfig `yaml:"session"`
	SPIFFE  *authn.SPIFFEConfig  `yaml:"spiffe"`
	Apps    []struct {
		Name                   string            `yaml:"name"`
		Hosts                  []string          `yaml:"hosts"`
		Type                   string            `yaml:"type"`
		DryRun                 bool              `yaml:"dry_run"`
		PassForeignCredentials bool              `yaml:"pass_foreign_credentials"`
		MLflow                 yaml.Node         `yaml:"mlflow"`
		Rules                  []rules.Config    `yaml:"rules"`
		TraceWriters           []string          `yaml:"trace_writers"`
		Upstream               upstream.Config   `yaml:"upstream"`
		Login                  authn.LoginConfig `yaml:"login"`
	} `yaml:"apps"`
}

// compile builds a rule-based application as the configuration does.
func compile(rs []rules.Config, traceWriters []string, up upstream.Config) (authz.Policy, authz.Upstream, error) {
	r, err := rules.New(rs)
	if err != nil {
		return nil, nil, err
	}
	pol, err := rules.NewTraceWriters(traceWriters, r)
	if err != nil {
		return nil, nil, err
	}
	u, err := upstream.New(up)
	return pol, u, err
}

func loadExample(t *testing.T, name string) exampleFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f exampleFile
	require.NoError(t, dec.Decode(&f))
	require.Len(t, f.Apps, 1)
	return f
}

type decisionCase struct {
	method, target, principal string
	id                        *authz.Identity
	status                    int // 200: allowed
	reason                    authz.Reason
}

func checkDecisions(t *testing.T, pol authz.Policy, cases []decisionCase) {
	t.Helper()
	for _, c := range cases {
		d := pol.Decide(t.Context(), authztest.NewRequest(t, c.method, c.target, c.principal, nil), c.id)
		who := "anonymous"
		if c.id != nil {
			who = c.id.Username
		}
		assert.Equal(t, c.status == http.StatusOK, d.Allowed, "%s %s as %s (%s): %s", c.method, c.target, who, c.principal, d.Message)
		assert.Equal(t, c.status, d.Status, "%s %s as %s", c.method, c.target, who)
		assert.Equal(t, c.reason, d.Reason, "%s %s as %s", c.method, c.target, who)
	}
}

func TestExamplePhoenix(t *testing.T) {
	f := loadExample(t, "phoenix.yaml")
	app := f.Apps[0]
	assert.Equal(t, "rules", app.Type)
	pol, up, err := compile(app.Rules, app.TraceWriters, app.Upstream)
	require.NoError(t, err)

	writer := &authz.Identity{Kind: authz.KindUser, Username: "wendy", Groups: []string{"phoenix-writers"}, Method: "jwt"}
	reader := &authz.Identity{Kind: authz.KindUser, Username: "rita", Groups: []string{"phoenix-users"}, Method: "jwt"}
	admin := &authz.Identity{Kind: authz.KindUser, Username: "ada", Roles: []string{"phoenix-admin"}, Method: "jwt"}
	const grpcExport = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	checkDecisions(t, pol, []decisionCase{
		{"GET", "/healthz", "", nobody, 200, authz.ReasonAllowed},
		{"GET", "/readyz", "", nobody, 200, authz.ReasonAllowed},
		{"GET", "/", "", nobody, 200, authz.ReasonAllowed},
		{"GET", "/projects/UHJvamVjdDox", "", nobody, 200, authz.ReasonAllowed},
		{"POST", "/", "", reader, 403, authz.ReasonNoRuleMatched},
		{"POST", "/v1/traces", collector, nobody, 200, authz.ReasonTraceWriter},
		{"POST", "/v1/traces", gateway, nobody, 401, authz.ReasonUnauthenticated},
		{"POST", "/v1/traces", gateway, writer, 200, authz.ReasonAllowed},
		{"POST", "/v1/traces", gateway, reader, 403, authz.ReasonForbidden},
		{"POST", grpcExport, collector, nobody, 200, authz.ReasonAllowed},
		{"POST", grpcExport, gateway, writer, 403, authz.ReasonForbidden},
		{"POST", "/graphql", gateway, reader, 200, authz.ReasonAllowed},
		{"POST", "/graphql", gateway, nobody, 401, authz.ReasonUnauthenticated},
		{"GET", "/graphql", gateway, nobody, 401, authz.ReasonUnauthenticated},
		{"POST", "/graphql", gateway, alice, 403, authz.ReasonForbidden},
		{"GET", "/v1/projects", gateway, reader, 200, authz.ReasonAllowed},
		{"GET", "/v1/projects", gateway, nobody, 401, authz.ReasonUnauthenticated},
		{"DELETE", "/v1/projects/x", gateway, reader, 403, authz.ReasonForbidden},
		{"GET", "/v1/users", gateway, reader, 403, authz.ReasonForbidden},
		{"GET", "/v1/users", gateway, admin, 200, authz.ReasonAllowed},
		{"GET", "/openapi.json", gateway, nobody, 401, authz.ReasonUnauthenticated},
		{"GET", "/auth/login", gateway, nobody, 200, authz.ReasonAllowed},
		{"GET", "/oauth2/keycloak/login", gateway, nobody, 200, authz.ReasonAllowed},
		{"GET", "/oauth2/keycloak/tokens", gateway, nobody, 200, authz.ReasonAllowed},
		{"GET", "/oauth2/authorize", gateway, admin, 403, authz.ReasonForbidden},
		{"POST", "/oauth2/token", gateway, admin, 403, authz.ReasonForbidden},
		{"POST", "/oauth2/register", gateway, nobody, 403, authz.ReasonForbidden},
		{"GET", "/.well-known/openid-configuration", gateway, nobody, 403, authz.ReasonForbidden},
		{"POST", "/mcp", gateway, admin, 403, authz.ReasonForbidden},
		{"GET", "/mcp/x", gateway, nobody, 403, authz.ReasonForbidden},
	})

	// Phoenix mode drops our verified bearer and sets identity headers.
	r := authztest.NewRequest(t, "POST", "/graphql", gateway, map[string]string{"authorization": "Bearer eyJ.x.y", "x-authz-user": "admin"})
	set, remove := up.Headers(r, reader)
	got := authztest.UpstreamView(t, r, set, remove)
	assert.NotContains(t, got, "authorization")
	assert.Equal(t, "rita", got["x-authz-user"])
}

func TestExampleKiali(t *testing.T) {
	f := loadExample(t, "kiali.yaml")
	app := f.Apps[0]
	assert.Equal(t, "/var/run/secrets/tokens/kiali-token", app.Upstream.TokenFile)
	app.Upstream.TokenFile = filepath.Join(t.TempDir(), "kiali-token")
	require.NoError(t, os.WriteFile(app.Upstream.TokenFile, []byte("kiali-sa-token"), 0o600))
	pol, up, err := compile(app.Rules, app.TraceWriters, app.Upstream)
	require.NoError(t, err)

	kialiUser := &authz.Identity{Kind: authz.KindUser, Username: "kim", Groups: []string{"kiali-users"}, Method: "session"}
	checkDecisions(t, pol, []decisionCase{
		{"GET", "/kiali/healthz", "", nobody, 200, authz.ReasonAllowed},
		{"GET", "/", "", nobody, 200, authz.ReasonAllowed},
		{"GET", "/kiali/api/auth/info", "", nobody, 200, authz.ReasonAllowed},
		{"GET", "/kiali/api/logout", "", nobody, 200, authz.ReasonAllowed},
		{"GET", "/kiali/api/auth/callback", "", kialiUser, 403, authz.ReasonForbidden},
		{"GET", "/kiali/api/auth/redirect/east", "", nobody, 403, authz.ReasonForbidden},
		{"POST", "/kiali/api/authenticate", "", kialiUser, 200, authz.ReasonAllowed},
		{"POST", "/kiali/api/authenticate", "", nobody, 401, authz.ReasonUnauthenticated},
		{"GET", "/kiali/api/namespaces", "", kialiUser, 200, authz.ReasonAllowed},
		{"GET", "/kiali/api/namespaces", "", nobody, 401, authz.ReasonUnauthenticated},
		{"GET", "/kiali/api/namespaces", "", alice, 403, authz.ReasonForbidden},
		{"GET", "/kiali/", "", kialiUser, 200, authz.ReasonAllowed},
		{"GET", "/kiali", "", kialiUser, 200, authz.ReasonAllowed},
		{"GET", "/kiali/console/graph/namespaces", "", kialiUser, 200, authz.ReasonAllowed},
		{"GET", "/kiali/console/overview", "", nobody, 401, authz.ReasonUnauthenticated},
		{"POST", "/kiali/console/overview", "", kialiUser, 403, authz.ReasonNoRuleMatched},
		{"GET", "/kialiX", "", kialiUser, 403, authz.ReasonNoRuleMatched},
		{"GET", "/api/namespaces", "", kialiUser, 403, authz.ReasonNoRuleMatched},
	})

	r := authztest.NewRequest(t, "GET", "/kiali/api/namespaces", "", map[string]string{"impersonate-user": "system:admin", "authorization": "Bearer x"})
	set, remove := up.Headers(r, kialiUser)
	got := authztest.UpstreamView(t, r, set, remove)
	assert.Equal(t, "Bearer kiali-sa-token", got["authorization"])
	assert.Equal(t, "kim", got["impersonate-user"])
	assert.Equal(t, "kiali-users", got["impersonate-group"])
}

func TestExampleMLflow(t *testing.T) {
	f := loadExample(t, "mlflow.yaml")
	app := f.Apps[0]
	assert.Equal(t, "mlflow", app.Type)
	assert.Empty(t, app.Rules, "MLflow is decided by its permission model, not rules")

	// The MLflow permission model is tested in authz/mlflow; here a
	// stand-in that denies everything shows what trace_writers opens.
	mlflowPolicy := authz.PolicyFunc(func(context.Context, *authz.Request, *authz.Identity) authz.Decision {
		return authz.Deny(http.StatusForbidden, authz.ReasonPermissionDenied, "stand-in")
	})
	pol, err := rules.NewTraceWriters(app.TraceWriters, mlflowPolicy)
	require.NoError(t, err)
	up, err := upstream.New(app.Upstream)
	require.NoError(t, err)
	checkDecisions(t, pol, []decisionCase{
		{"POST", "/v1/traces", collector, nobody, 200, authz.ReasonTraceWriter},
		{"POST", "/v1/traces", gateway, alice, 403, authz.ReasonPermissionDenied},
		{"POST", "/api/2.0/mlflow/runs/create", collector, nobody, 403, authz.ReasonPermissionDenied},
	})

	require.NotNil(t, f.SPIFFE)
	spiffe, err := authn.NewSPIFFE(*f.SPIFFE)
	require.NoError(t, err)
	for principal, user := range map[string]string{
		"spiffe://cluster.local/ns/ml-training/sa/trainer":     "svc-trainer",
		"spiffe://old-cluster.local/ns/ml-training/sa/trainer": "svc-trainer",
		"spiffe://cluster.local/ns/ci/sa/model-registry-bot":   "svc-registry-bot",
		gateway:   "",
		collector: "",
	} {
		id, err := spiffe.Authenticate(t.Context(), authztest.NewRequest(t, "GET", "/", principal, nil))
		require.NoError(t, err)
		if user == "" {
			assert.Nil(t, id, principal)
			continue
		}
		require.NotNil(t, id, principal)
		assert.Equal(t, user, id.Username)

		r := authztest.NewRequest(t, "GET", "/", principal, map[string]string{"x-authz-user": "admin"})
		set, remove := up.Headers(r, id)
		assert.Equal(t, user, authztest.UpstreamView(t, r, set, remove)["x-authz-user"])
	}
}
