package integration

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
)

// Hosts the adversarial suite adds to testConfig.
const (
	hostStrict = "mlflow-strict.test" // identity_integrity: enforce
	hostKiali  = "kiali.test"         // rules app, kiali upstream (impersonation)
)

// forgeIssuer is a second, Keycloak-shaped issuer whose private key the test
// holds, so it can sign tokens with any header and claim it likes (the
// harness's issuer only hands out well-formed tokens).
type forgeIssuer struct {
	*devissuer.Issuer
	key    devissuer.Key
	pubPEM []byte
}

const forgeKid = "forge-1"

func startForgeIssuer(t *testing.T) *forgeIssuer {
	t.Helper()
	key := authntest.NewKey(t, forgeKid, "RS256")
	der, err := x509.MarshalPKIXPublicKey(key.Private.Public())
	require.NoError(t, err)
	return &forgeIssuer{
		Issuer: authntest.Start(t, devissuer.WithRealm("forge"), devissuer.WithKeys(key)),
		key:    key,
		pubPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
	}
}

// claims returns a valid access-token claim set for username, shaped like
// Keycloak's (the same shape as devissuer's).
func (fi *forgeIssuer) claims(username string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": fi.URL, "aud": []string{"mlflow", "account"}, "sub": "forge-" + username,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "typ": "Bearer", "azp": "mlflow-ui",
		"preferred_username": username,
	}
}

// withClaims returns a copy of m with kv applied; a nil value deletes the key.
func withClaims(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// adversarialConfig is testConfig plus the forge issuer, an MLflow app that
// enforces identity integrity and a Kiali app that impersonates.
func adversarialConfig(t *testing.T) string {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "kiali-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("kiali-sa-token\n"), 0o600))
	doc := strings.Replace(testConfig, "spiffe:\n", `  - name: forge
    issuer: "${FORGE_ISSUER}"
    audiences: [mlflow]
spiffe:
`, 1)
	return doc + `  - name: mlflow-strict
    type: mlflow
    hosts: [` + hostStrict + `]
    mlflow:
      default_permission: NO_PERMISSIONS
      identity_integrity: enforce
  - name: kiali
    type: rules
    hosts: [` + hostKiali + `]
    upstream:
      mode: kiali
      token_file: ` + tokenFile + `
    rules:
      - path_prefixes: [/kiali/api/]
        allow: authenticated
`
}

// startAdversarial starts the harness and reloads it with
// adversarialConfig: the same process, store and listeners.
func startAdversarial(t *testing.T) (*harness, *forgeIssuer) {
	t.Helper()
	h := start(t)
	fi := startForgeIssuer(t)
	h.env["FORGE_ISSUER"] = fi.URL
	require.NoError(t, h.run.Reload(t.Context(), h.parse(t, adversarialConfig(t))))
	return h, fi
}

// hostile is one request an attacker sends. Every one must be denied with
// exactly status and reason.
type hostile struct {
	name      string
	host      string // default hostMLflow
	who       string // token holder, anonymous or trainerMTLS; default anonymous
	bearer    string // raw Authorization value, replacing who's token
	principal string
	method    string // default GET
	target    string
	body      string
	partial   bool
	headers   map[string]string
	status    int
	reason    string
}

func (h *harness) sendHostile(t *testing.T, requestID string, tt hostile) result {
	t.Helper()
	host, who, method := tt.host, tt.who, tt.method
	if host == "" {
		host = hostMLflow
	}
	if who == "" {
		who = anonymous
	}
	if method == "" {
		method = http.MethodGet
	}
	c := h.as(host, who, method, tt.target, tt.body, tt.headers)
	if tt.bearer != "" {
		c.Headers["authorization"] = tt.bearer
	}
	if tt.principal != "" {
		c.Principal = tt.principal
	}
	c.PartialBody = tt.partial
	c.RequestID = requestID
	return h.check(t, c)
}

// TestAdversarial sends well over 150 hostile requests through gRPC Check.
// Each is denied with its expected status and reason; not one is allowed.
// Callers are chosen so that a wrong allow would be a real escalation:
// usually a caller without a grant on what the request really touches.
func TestAdversarial(t *testing.T) {
	h, fi := startAdversarial(t)

	runGet := "/api/2.0/mlflow/runs/get?run_id="
	var tests []hostile
	add := func(group string, rows ...hostile) {
		for _, r := range rows {
			r.name = group + "/" + r.name
			tests = append(tests, r)
		}
	}

	// Paths. mallory holds no grant, so every path below that reached a
	// protected endpoint and were allowed would be a bypass.
	pathRows := []hostile{}
	for _, p := range []string{
		"/api/2.0/mlflow/../mlflow/runs/get?run_id=" + runC,
		"/api/2.0/mlflow/./runs/get?run_id=" + runC,
		"/static-files/../api/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-filesX/../api/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/%2e%2e/api/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/%2E%2E/api/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/.%2e/api/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files%2F..%2Fapi/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/..%2Fapi/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/..%2fapi/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/..%5Capi/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/..\\api/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files\\..\\api/2.0/mlflow/runs/get?run_id=" + runC,
		"/health/../api/2.0/mlflow/runs/get?run_id=" + runC,
		"/health/%2e%2e/api/2.0/mlflow/runs/get?run_id=" + runC,
		"/api/2.0/mlflow/runs%2Fget?run_id=" + runC,
		"/api/2.0/mlflow/runs%2fget?run_id=" + runC,
		"/api/2.0/mlflow/runs%5Cget?run_id=" + runC,
		"//api/2.0/mlflow/runs/get?run_id=" + runC,
		"/api//2.0/mlflow/runs/get?run_id=" + runC,
		"/api/2.0/mlflow//runs/get?run_id=" + runC,
		"/api/2.0/mlflow/runs/get%00?run_id=" + runC,
		"/static-files/x.js%00/../../api/2.0/mlflow/runs/get?run_id=" + runC,
		"/static-files/%ff/../api/2.0/mlflow/runs/get?run_id=" + runC,
		"/api/2.0/mlflow/runs/get/..;/get?run_id=" + runC,
		"/static-files/..;/api/2.0/mlflow/runs/get?run_id=" + runC,
	} {
		pathRows = append(pathRows, hostile{name: "dot/encoded " + p, who: "mallory", target: p,
			status: 400, reason: "path_not_canonical"})
	}
	add("path", pathRows...)
	add("path",
		hostile{name: "matrix params on the endpoint", who: "mallory", target: "/api/2.0/mlflow/runs/get;x=1?run_id=" + runC,
			status: 400, reason: "path_not_canonical"},
		hostile{name: "matrix params on static prefix", who: "mallory", target: "/static-files;/../api/2.0/mlflow/runs/get?run_id=" + runC,
			status: 400, reason: "path_not_canonical"},
		hostile{name: "trailing slash", who: "mallory", target: "/api/2.0/mlflow/runs/get/?run_id=" + runC,
			status: 404, reason: "unknown_route"},
		hostile{name: "upper-case segment", who: "mallory", target: "/API/2.0/mlflow/runs/get?run_id=" + runC,
			status: 404, reason: "unknown_route"},
		hostile{name: "upper-case endpoint", who: "mallory", target: "/api/2.0/mlflow/runs/GET?run_id=" + runC,
			status: 404, reason: "unknown_route"},
		hostile{name: "upper-case static prefix", target: "/STATIC-FILES/../api/2.0/mlflow/runs/get?run_id=" + runC,
			status: 400, reason: "path_not_canonical"},
		hostile{name: "ajax-api twin needs the same grant", who: "mallory", target: "/ajax-api/2.0/mlflow/runs/get?run_id=" + runC,
			status: 403, reason: "permission_denied"},
		hostile{name: "api twin needs the same grant", who: "bob", target: "/api/2.0/mlflow/runs/get?run_id=" + runC,
			status: 403, reason: "permission_denied"},
		hostile{name: "ajax-api anonymous", target: "/ajax-api/2.0/mlflow/runs/get?run_id=" + runC,
			status: 401, reason: "unauthenticated"},
		hostile{name: "static-files prefix lookalike", target: "/static-filesX/x.js",
			status: 404, reason: "unknown_route"},
		hostile{name: "health lookalike", who: "mallory", target: "/healthz/../api/2.0/mlflow/runs/get?run_id=" + runC,
			status: 400, reason: "path_not_canonical"},
		hostile{name: "overlong path", who: "mallory", target: "/api/2.0/mlflow/runs/get" + strings.Repeat("/a", 8000) + "?run_id=" + runC,
			status: 400, reason: "path_not_canonical"},
		hostile{name: "overlong query", who: "mallory", target: runGet + runC + "&x=" + strings.Repeat("a", 70000),
			status: 403, reason: "permission_denied"},
		hostile{name: "NUL in query", who: "mallory", target: runGet + runC + "%00",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "fragment in target", who: "mallory", target: runGet + runC + "#x",
			status: 404, reason: "resource_not_found"},
		hostile{name: "absolute-form target", who: "mallory", target: "http://mlflow.test/api/2.0/mlflow/runs/get?run_id=" + runC,
			status: 400, reason: "path_not_canonical"},
		hostile{name: "empty path", who: "mallory", target: "?run_id=" + runC,
			status: 400, reason: "path_not_canonical"},
		hostile{name: "unknown version", who: "mallory", target: "/api/2.1/mlflow/runs/get?run_id=" + runC,
			status: 404, reason: "unknown_route"},
		hostile{name: "wrong method", who: "mallory", method: "DELETE", target: runGet + runC,
			status: 404, reason: "unknown_route"},
		hostile{name: "lower-case method", who: "mallory", method: "get", target: runGet + runC,
			status: 403, reason: "permission_denied"},
	)

	// Parameters.
	add("param",
		hostile{name: "run_id twice in query", who: "bob", target: runGet + runA + "&run_id=" + runC,
			status: 400, reason: "duplicate_parameter"},
		hostile{name: "run_id twice, denied first", who: "bob", target: runGet + runC + "&run_id=" + runA,
			status: 400, reason: "duplicate_parameter"},
		hostile{name: "run_id and runId in query", who: "bob", target: runGet + runA + "&runId=" + runC,
			status: 400, reason: "duplicate_parameter"},
		hostile{name: "run_id and run_uuid in query", who: "bob", target: runGet + runA + "&run_uuid=" + runC,
			status: 400, reason: "duplicate_parameter"},
		hostile{name: "experiment_id twice", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=1&experiment_id=3",
			status: 400, reason: "duplicate_parameter"},
		hostile{name: "experiment_id and experimentId", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=1&experimentId=3",
			status: 400, reason: "duplicate_parameter"},
		hostile{name: "duplicate JSON key", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"run_id":"` + runA + `","run_id":"` + runC + `"}`, status: 400, reason: "duplicate_parameter"},
		hostile{name: "duplicate JSON key, escaped spelling", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"run_id":"` + runA + `","run\u005fid":"` + runC + `"}`, status: 400, reason: "duplicate_parameter"},
		hostile{name: "snake and camel in JSON", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"run_id":"` + runA + `","runId":"` + runC + `"}`, status: 400, reason: "duplicate_parameter"},
		hostile{name: "run_id and run_uuid in JSON", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"run_id":"` + runA + `","run_uuid":"` + runC + `"}`, status: 400, reason: "duplicate_parameter"},
		hostile{name: "experiment_id twice in JSON", who: "alice", method: "POST", target: "/api/2.0/mlflow/experiments/delete",
			body: `{"experiment_id":"1","experiment_id":"3"}`, status: 400, reason: "duplicate_parameter"},
		hostile{name: "model name twice in JSON", who: "alice", method: "DELETE", target: "/api/2.0/mlflow/registered-models/delete",
			body: `{"name":"fraud-model","name":"secret-model"}`, status: 400, reason: "duplicate_parameter"},
		hostile{name: "id in query, MLflow reads the body", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update?run_id=" + runA,
			body: `{"run_id":"` + runC + `"}`, status: 403, reason: "permission_denied"},
		hostile{name: "id only in query of a POST", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update?run_id=" + runA,
			body: `{"status":"FINISHED"}`, status: 400, reason: "missing_parameter"},
		hostile{name: "id in body, MLflow reads the query", who: "bob", target: runGet + runC,
			body: `{"run_id":"` + runA + `"}`, status: 403, reason: "permission_denied"},
		hostile{name: "GET with the id only in a body", who: "bob", target: "/api/2.0/mlflow/runs/get",
			body: `{"run_id":"` + runA + `"}`, status: 400, reason: "missing_parameter"},
		hostile{name: "experiment id as JSON number", who: "bob", method: "POST", target: "/api/2.0/mlflow/experiments/update",
			body: `{"experiment_id":3,"new_name":"x"}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "experiment id as JSON float", who: "alice", method: "POST", target: "/api/2.0/mlflow/experiments/delete",
			body: `{"experiment_id":3.0}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "experiment id as JSON bool", who: "alice", method: "POST", target: "/api/2.0/mlflow/experiments/delete",
			body: `{"experiment_id":true}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "experiment id as JSON array", who: "alice", method: "POST", target: "/api/2.0/mlflow/experiments/delete",
			body: `{"experiment_id":["1","3"]}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "experiment id as JSON object", who: "alice", method: "POST", target: "/api/2.0/mlflow/experiments/delete",
			body: `{"experiment_id":{"id":"1"}}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "experiment id null", who: "alice", method: "POST", target: "/api/2.0/mlflow/experiments/delete",
			body: `{"experiment_id":null}`, status: 400, reason: "missing_parameter"},
		hostile{name: "run id as number", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"run_id":1}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "leading zero experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=03",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "plus-signed experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=%2B3",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "space-padded experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=%203",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "huge experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=99999999999999999999999",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "negative experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=-1",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "hex experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=0x3",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "empty experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=",
			status: 400, reason: "missing_parameter"},
		hostile{name: "no experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get",
			status: 400, reason: "missing_parameter"},
		hostile{name: "huge JSON number id", who: "alice", method: "POST", target: "/api/2.0/mlflow/experiments/delete",
			body: `{"experiment_id":1e400}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "Cyrillic lookalike in run id", who: "mallory", target: runGet + "сссссссссссссссссссссссссссссс01",
			status: 404, reason: "resource_not_found"},
		hostile{name: "fullwidth digit experiment id", who: "bob", target: "/api/2.0/mlflow/experiments/get?experiment_id=%EF%BC%93",
			status: 400, reason: "invalid_parameter"},
		hostile{name: "lookalike experiment name", who: "bob", target: "/api/2.0/mlflow/experiments/get-by-name?experiment_name=secret%E2%80%90research",
			status: 404, reason: "resource_not_found"},
		hostile{name: "lookalike model name", who: "bob", target: "/api/2.0/mlflow/registered-models/get?name=fraud%E2%80%90model",
			status: 403, reason: "permission_denied"},
		hostile{name: "upper-case run id", who: "mallory", target: runGet + strings.ToUpper(runC),
			status: 404, reason: "resource_not_found"},
		hostile{name: "id after the truncation point", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"status":"FINISHED","end_time":1`, partial: true, status: 413, reason: "body_truncated"},
		hostile{name: "complete-looking truncated body", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"run_id":"` + runA + `"}`, partial: true, status: 413, reason: "body_truncated"},
		hostile{name: "truncated log-batch", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/log-batch",
			body: `{"run_id":"` + runA + `","metrics":[{"key":"a"`, partial: true, status: 413, reason: "body_truncated"},
		hostile{name: "trailing garbage after JSON", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{"run_id":"` + runA + `"}{"run_id":"` + runC + `"}`, status: 400, reason: "invalid_json"},
		hostile{name: "JSON array body", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `[{"run_id":"` + runA + `"}]`, headers: map[string]string{"content-type": "application/json"},
			status: 400, reason: "invalid_json"},
		hostile{name: "invalid UTF-8 in JSON", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: "{\"run_id\":\"" + runA + "\",\"x\":\"\xff\"}", status: 400, reason: "invalid_json"},
		hostile{name: "form body instead of JSON", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: "run_id=" + runA, headers: map[string]string{"content-type": "application/x-www-form-urlencoded"},
			status: 400, reason: "unsupported_content_type"},
		hostile{name: "empty body on a POST", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			status: 400, reason: "unsupported_content_type"},
		hostile{name: "empty JSON body on a POST", who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/update",
			body: `{}`, status: 400, reason: "missing_parameter"},
		hostile{name: "runs/search hides exp 3 among others", who: "bob", method: "POST", target: "/api/2.0/mlflow/runs/search",
			body: `{"experiment_ids":["1","2","3"]}`, status: 403, reason: "permission_denied"},
		hostile{name: "runs/search ids as one comma string", who: "bob", method: "POST", target: "/api/2.0/mlflow/runs/search",
			body: `{"experiment_ids":"1,3"}`, status: 400, reason: "invalid_parameter"},
		hostile{name: "get-history-bulk hides run C", who: "bob",
			target: "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=" + runA + "&run_id=" + runC + "&metric_key=loss",
			status: 403, reason: "permission_denied"},
		// MLflow takes the experiment from the leading segment only (A §4.12):
		// 1/<run C>/… is a folder of experiment 1, so that is no escalation;
		// the real run C artifacts live under 3/.
		hostile{name: "artifact path of experiment 3", who: "bob",
			target: "/api/2.0/mlflow-artifacts/artifacts/3/" + runC + "/artifacts/x", status: 403, reason: "permission_denied"},
		hostile{name: "artifact path experiment with a leading zero", who: "bob",
			target: "/api/2.0/mlflow-artifacts/artifacts/03/" + runC + "/artifacts/x", status: 403, reason: "admin_required"},
		hostile{name: "artifact list path of experiment 3", who: "bob",
			target: "/api/2.0/mlflow-artifacts/artifacts?path=3/" + runC, status: 403, reason: "permission_denied"},
		hostile{name: "artifact path dot segments", who: "bob",
			target: "/api/2.0/mlflow-artifacts/artifacts/1/" + runA + "/../../3/" + runC + "/artifacts/x", status: 400, reason: "path_not_canonical"},
		hostile{name: "artifact path encoded slash", who: "bob",
			target: "/api/2.0/mlflow-artifacts/artifacts/1%2F..%2F3/" + runC + "/artifacts/x", status: 400, reason: "path_not_canonical"},
		hostile{name: "get-artifact path traversal param", who: "mallory",
			target: "/get-artifact?run_uuid=" + runC + "&path=../../x", status: 403, reason: "permission_denied"},
		hostile{name: "OTLP header experiment twice", who: "bob", method: "POST", target: "/v1/traces", body: "\x0a\x00",
			headers: map[string]string{"x-mlflow-experiment-id": "1,3"}, status: 400, reason: "invalid_parameter"},
		hostile{name: "trace id of another experiment", who: "bob", target: "/api/3.0/mlflow/traces/" + trace3,
			status: 403, reason: "permission_denied"},
		hostile{name: "logged model of another experiment", who: "bob", target: "/api/2.0/mlflow/logged-models/" + lm3,
			status: 403, reason: "permission_denied"},
		hostile{name: "gateway endpoint without USE", who: "bob", method: "POST", target: "/gateway/chat-ep/mlflow/invocations",
			body: `{"messages":[]}`, status: 403, reason: "permission_denied"},
		hostile{name: "gateway model field names a secret endpoint", who: "alice", method: "POST", target: "/gateway/mlflow/v1/chat/completions",
			body: `{"model":"secret-ep","messages":[]}`, status: 403, reason: "permission_denied"},
		hostile{name: "gateway model twice", who: "alice", method: "POST", target: "/gateway/mlflow/v1/chat/completions",
			body: `{"model":"chat-ep","model":"secret-ep","messages":[]}`, status: 400, reason: "duplicate_parameter"},
	)

	// JWT. The forge issuer's real key signs unless the row says otherwise.
	now := time.Now()
	good := fi.claims("alice")
	rs := func(hdr map[string]any, claims map[string]any) string {
		return "Bearer " + authntest.Sign(t, hdr, claims, "RS256", fi.key.Private)
	}
	evil := authntest.NewKey(t, "evil", "RS256")
	// attacker is where jku/x5u would send us; it must never be fetched.
	var attackerHits atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{authntest.JWK(t, evil)}})
	}))
	t.Cleanup(attacker.Close)
	goodTok := authntest.Token(t, fi.key, good)
	parts := strings.Split(goodTok, ".")
	tamperedClaims := base64.RawURLEncoding.EncodeToString(mustJSON(t, withClaims(good, "preferred_username", "carol")))
	idToken := withClaims(good, "typ", "ID", "aud", "mlflow-ui", "nonce", "n")
	target := runGet + runA // alice may read it: only the token can be at fault
	// Control: the forge issuer's own well-formed token is accepted, so
	// every deny below is the forgery's doing.
	ctl := h.as(hostMLflow, anonymous, "GET", target, "", map[string]string{"authorization": "Bearer " + goodTok})
	requireDecision(t, h.check(t, ctl), true, 0, "")
	jwtRows := []hostile{
		{name: "alg none", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "none", "kid": forgeKid}, good, "none", nil),
			status: 401, reason: "token_alg_not_allowed"},
		{name: "alg None", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "None", "kid": forgeKid}, good, "none", nil),
			status: 401, reason: "token_alg_not_allowed"},
		{name: "alg none without a kid", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "none"}, good, "none", nil),
			status: 401, reason: "token_alg_not_allowed"},
		{name: "HS256 keyed with the PEM public key", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "HS256", "kid": forgeKid}, good, "HS256", fi.pubPEM),
			status: 401, reason: "token_alg_not_allowed"},
		{name: "HS256 keyed with the modulus", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "HS256", "kid": forgeKid}, good, "HS256", fi.key.Private.(*rsa.PrivateKey).N.Bytes()),
			status: 401, reason: "token_alg_not_allowed"},
		{name: "unknown kid", bearer: rs(map[string]any{"alg": "RS256", "kid": "no-such-key"}, good),
			status: 401, reason: "unknown_signing_key"},
		{name: "kid path injection", bearer: rs(map[string]any{"alg": "RS256", "kid": "../../../../dev/null"}, good),
			status: 401, reason: "unknown_signing_key"},
		{name: "kid SQL injection", bearer: rs(map[string]any{"alg": "RS256", "kid": "x' OR '1'='1"}, good),
			status: 401, reason: "unknown_signing_key"},
		{name: "right kid, attacker's key", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "RS256", "kid": forgeKid}, good, "RS256", evil.Private),
			status: 401, reason: "token_bad_signature"},
		{name: "embedded jwk header", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "evil", "jwk": authntest.JWK(t, evil)}, good, "RS256", evil.Private),
			status: 401, reason: "unknown_signing_key"},
		{name: "embedded jwk under the real kid", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "RS256", "kid": forgeKid, "jwk": authntest.JWK(t, devissuer.Key{ID: forgeKid, Alg: "RS256", Private: evil.Private})}, good, "RS256", evil.Private),
			status: 401, reason: "token_bad_signature"},
		{name: "jku to the attacker", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "evil", "jku": attacker.URL}, good, "RS256", evil.Private),
			status: 401, reason: "unknown_signing_key"},
		{name: "x5u to the attacker", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "RS256", "kid": "evil", "x5u": attacker.URL}, good, "RS256", evil.Private),
			status: 401, reason: "unknown_signing_key"},
		{name: "jku with the real kid", bearer: "Bearer " + authntest.Sign(t, map[string]any{"alg": "RS256", "kid": forgeKid, "jku": attacker.URL}, good, "RS256", evil.Private),
			status: 401, reason: "token_bad_signature"},
		{name: "expired", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "exp", now.Add(-10*time.Minute).Unix())),
			status: 401, reason: "token_expired"},
		{name: "not yet valid", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "nbf", now.Add(10*time.Minute).Unix())),
			status: 401, reason: "token_not_yet_valid"},
		{name: "issued in the future", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "iat", now.Add(time.Hour).Unix())),
			status: 401, reason: "token_not_yet_valid"},
		{name: "no exp", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "exp", nil)),
			status: 401, reason: "token_missing_exp"},
		{name: "exp as string", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "exp", "9999999999")),
			status: 401, reason: "token_malformed"},
		{name: "wrong iss, real key", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "iss", "https://evil.example/realms/forge")),
			status: 401, reason: "token_unknown_issuer"},
		{name: "another realm on the same server", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "iss", strings.TrimSuffix(fi.URL, "/forge")+"/master")),
			status: 401, reason: "token_unknown_issuer"},
		{name: "iss of the dev issuer, forge key", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "iss", h.iss.URL)),
			status: 401, reason: "unknown_signing_key"},
		{name: "iss with a trailing slash", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "iss", fi.URL+"/")),
			status: 401, reason: "token_unknown_issuer"},
		{name: "no iss", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "iss", nil)),
			status: 401, reason: "token_unknown_issuer"},
		{name: "wrong aud", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "aud", "account")),
			status: 401, reason: "token_wrong_audience"},
		{name: "no aud", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "aud", nil)),
			status: 401, reason: "token_wrong_audience"},
		{name: "aud lookalike", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "aud", []string{"mlflow ", "MLFLOW"})),
			status: 401, reason: "token_wrong_audience"},
		{name: "ID token as access token", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, idToken),
			status: 401, reason: "token_wrong_audience"},
		{name: "ID token with the right audience", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "typ", "ID")),
			status: 401, reason: "token_wrong_type"},
		{name: "refresh token", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "typ", "Refresh")),
			status: 401, reason: "token_wrong_type"},
		{name: "logout token", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "typ", "Logout")),
			status: 401, reason: "token_wrong_type"},
		{name: "no username", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "preferred_username", nil)),
			status: 401, reason: "token_missing_username"},
		{name: "stripped signature", bearer: "Bearer " + parts[0] + "." + parts[1] + ".",
			status: 401, reason: "token_bad_signature"},
		{name: "two segments", bearer: "Bearer " + parts[0] + "." + parts[1],
			status: 401, reason: "token_not_jwt"},
		{name: "tampered payload", bearer: "Bearer " + parts[0] + "." + tamperedClaims + "." + parts[2],
			status: 401, reason: "token_bad_signature"},
		{name: "tampered signature", bearer: "Bearer " + parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
			status: 401, reason: "token_bad_signature"},
		{name: "signature of another token", bearer: "Bearer " + parts[0] + "." + parts[1] + "." + strings.Split(strings.TrimPrefix(h.tokens["carol"], "Bearer "), ".")[2],
			status: 401, reason: "token_bad_signature"},
		{name: "oversized token", bearer: rs(map[string]any{"alg": "RS256", "kid": forgeKid}, withClaims(good, "pad", strings.Repeat("x", 70000))),
			status: 401, reason: "token_too_large"},
		{name: "JWE-shaped token", bearer: "Bearer a.b.c.d.e", status: 401, reason: "token_not_jwt"},
		{name: "garbage", bearer: "Bearer !!!", status: 401, reason: "token_not_jwt"},
		{name: "empty bearer", bearer: "Bearer ", status: 401, reason: "token_malformed"},
		{name: "bearer scheme only", bearer: "Bearer", status: 401, reason: "token_malformed"},
		{name: "unknown scheme", bearer: "Token " + goodTok, status: 401, reason: "unauthenticated"},
		// alice has no password: Basic is checked, never ignored.
		{name: "Basic credentials", bearer: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:password")),
			status: 401, reason: "basic_invalid_credentials"},
		{name: "Basic credentials for nobody", bearer: "Basic " + base64.StdEncoding.EncodeToString([]byte("nobody:password")),
			status: 401, reason: "basic_invalid_credentials"},
		{name: "two Basic credentials joined by Envoy", bearer: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:password")) +
			",Basic " + base64.StdEncoding.EncodeToString([]byte("carol:password")), status: 401, reason: "basic_malformed"},
		{name: "Basic and bearer joined by Envoy", bearer: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:password")) +
			", Bearer " + goodTok, status: 401, reason: "token_malformed"},
		{name: "Basic without a colon", bearer: "Basic " + base64.StdEncoding.EncodeToString([]byte("carol")),
			status: 401, reason: "basic_malformed"},
		{name: "two bearer tokens joined by Envoy", bearer: "Bearer " + goodTok + ",Bearer " + h.tokens["carol"],
			status: 401, reason: "token_malformed"},
		{name: "two bearer tokens joined with a space", bearer: "Bearer " + goodTok + ", Bearer " + goodTok,
			status: 401, reason: "token_malformed"},
		{name: "header is base64url-padded", bearer: "Bearer " + parts[0] + "==." + parts[1] + "." + parts[2],
			status: 401, reason: "token_not_jwt"},
	}
	for i := range jwtRows {
		jwtRows[i].target = target
	}
	add("jwt", jwtRows...)

	// Header spoofing that must be denied (the allows with mutations are in
	// TestAdversarialHeaderMutations).
	add("header",
		hostile{name: "forged XFCC on plaintext", target: runGet + runB,
			headers: map[string]string{"x-forwarded-client-cert": "By=spiffe://cluster.local/ns/mlflow/sa/mlflow;URI=" + principalTrainer},
			status:  401, reason: "unauthenticated"},
		hostile{name: "forged x-authz-user without a token", target: runGet + runA,
			headers: map[string]string{"x-authz-user": "alice"}, status: 401, reason: "unauthenticated"},
		hostile{name: "forged x-authz-groups", who: "mallory", target: runGet + runB,
			headers: map[string]string{"x-authz-groups": "team-a,mlflow-admin"}, status: 403, reason: "permission_denied"},
		hostile{name: "forged impersonate-user", target: runGet + runA,
			headers: map[string]string{"impersonate-user": "alice"}, status: 401, reason: "unauthenticated"},
		hostile{name: "forged x-forwarded-user", target: runGet + runA,
			headers: map[string]string{"x-forwarded-user": "alice", "x-forwarded-preferred-username": "alice", "remote-user": "alice"},
			status:  401, reason: "unauthenticated"},
		hostile{name: "forged x-spiffe header", target: runGet + runB,
			headers: map[string]string{"x-spiffe-id": principalTrainer, "x-envoy-peer-metadata-id": "sidecar~trainer"},
			status:  401, reason: "unauthenticated"},
		hostile{name: "upper-case host", host: "MLFLOW.TEST", who: "mallory", target: runGet + runC,
			status: 403, reason: "permission_denied"},
		hostile{name: "host with port", host: hostMLflow + ":443", who: "mallory", target: runGet + runC,
			status: 403, reason: "permission_denied"},
		hostile{name: "host with odd port", host: hostMLflow + ":8443", who: "mallory", target: runGet + runC,
			status: 403, reason: "permission_denied"},
		// A trailing dot names the same host (and so the same app and its
		// default): it must not escape to another app's rules.
		hostile{name: "host with a trailing dot", host: hostMLflow + ".", who: "mallory", target: runGet + runC,
			status: 403, reason: "permission_denied"},
		hostile{name: "open app as a suffix", host: hostOpen + ".evil", who: "mallory", target: runGet + runC,
			status: 403, reason: "unknown_host"},
		hostile{name: "userinfo in host", host: "mallory@" + hostOpen, who: "mallory", target: runGet + runC,
			status: 403, reason: "unknown_host"},
		hostile{name: "two hosts", host: hostMLflow + "," + hostOpen, who: "mallory", target: runGet + runC,
			status: 403, reason: "unknown_host"},
		hostile{name: "empty host", host: " ", who: "mallory", target: runGet + runC,
			status: 403, reason: "unknown_host"},
		hostile{name: "upper-case host with a trailing dot", host: "MLFLOW.TEST.", who: "mallory", target: runGet + runC,
			status: 403, reason: "permission_denied"},
		hostile{name: "dry-run host as a prefix", host: hostDryRun + "x", who: "mallory", target: runGet + runC,
			status: 403, reason: "unknown_host"},
		hostile{name: "token in the query string", target: runGet + runA + "&access_token=" + h.tokens["alice"],
			status: 401, reason: "unauthenticated"},
		hostile{name: "kiali without a token", host: hostKiali, target: "/kiali/api/namespaces",
			headers: map[string]string{"impersonate-user": "admin", "impersonate-group": "system:masters"},
			status:  401, reason: "unauthenticated"},
	)

	// GraphQL. bob may read experiment 1 (and 2 by group), never 3.
	gql := func(name, body string, status int, reason string) hostile {
		return hostile{name: name, who: "bob", method: "POST", target: "/graphql", body: body, status: status, reason: reason}
	}
	q := func(doc string) string { return `{"query":` + string(mustJSON(t, doc)) + `}` }
	getExp := func(alias, id string) string {
		return alias + `mlflowGetExperiment(input: {experimentId: "` + id + `"}) { experiment { name } }`
	}
	add("graphql",
		gql("alias hides the protected field", q(`{ `+getExp("ok: ", "1")+` secret: `+getExp("", "3")+` }`), 403, "permission_denied"),
		gql("alias named like an allowed field", q(`{ mlflowSearchModelVersions: `+getExp("", "3")+` }`), 403, "permission_denied"),
		gql("fragment spread", q(`query { ...F } fragment F on Query { `+getExp("", "3")+` }`), 403, "permission_denied"),
		gql("nested fragments", q(`query { ...A } fragment A on Query { ...B } fragment B on Query { `+getExp("", "3")+` }`), 403, "permission_denied"),
		gql("inline fragment", q(`query { ... on Query { `+getExp("", "3")+` } }`), 403, "permission_denied"),
		gql("recursive fragments", q(`query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }`), 400, "invalid_parameter"),
		gql("batched operations", `[`+q(`{ `+getExp("", "1")+` }`)+`,`+q(`{ `+getExp("", "3")+` }`)+`]`, 400, "invalid_json"),
		gql("two operations, second selected", `{"query":"query A { `+strings.ReplaceAll(getExp("", "1"), `"`, `\"`)+` } query B { `+strings.ReplaceAll(getExp("", "3"), `"`, `\"`)+` }","operationName":"B"}`, 403, "permission_denied"),
		gql("two operations, none selected", `{"query":"query A { `+strings.ReplaceAll(getExp("", "1"), `"`, `\"`)+` } query B { `+strings.ReplaceAll(getExp("", "3"), `"`, `\"`)+` }"}`, 403, "permission_denied"),
		gql("introspection __schema", q(`{ __schema { types { name } } }`), 403, "admin_required"),
		gql("introspection __type", q(`{ __type(name: "Query") { fields { name } } }`), 403, "admin_required"),
		gql("introspection in a fragment", q(`query { ...F } fragment F on Query { __schema { queryType { name } } }`), 403, "admin_required"),
		gql("search runs query names exp 3", q(`query SearchRuns { mlflowSearchRuns(input: {experimentIds: ["1", "3"]}) { runs { info { runId } } } }`), 403, "permission_denied"),
		gql("mutation on a run of exp 3", q(`mutation { mlflowSearchRuns(input: {experimentIds: ["1", "3"]}) { runs { info { runId } } } }`), 403, "permission_denied"),
		gql("unknown mutation", q(`mutation { mlflowDeleteExperiment(input: {experimentId: "1"}) { ok } }`), 403, "graphql_field_denied"),
		gql("unknown query field", q(`{ mlflowGetSecret(input: {id: "1"}) { x } }`), 403, "graphql_field_denied"),
		gql("subscription", q(`subscription { `+getExp("", "1")+` }`), 403, "graphql_field_denied"),
		gql("variable default hides the real id", `{"query":"query Q($id: String = \"1\") { mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }","variables":{"id":"3"}}`, 403, "permission_denied"),
		gql("literal beside a variable", `{"query":"query Q($id: String) { a: mlflowGetExperiment(input: {experimentId: \"1\"}) { experiment { name } } b: mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }","variables":{"id":"3"}}`, 403, "permission_denied"),
		gql("variable twice in JSON", `{"query":"query Q($id: String!) { mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }","variables":{"id":"1","id":"3"}}`, 400, "duplicate_parameter"),
		gql("query key twice", `{"query":"{ __typename }","query":"{ `+strings.ReplaceAll(getExp("", "3"), `"`, `\"`)+` }"}`, 400, "duplicate_parameter"),
		gql("undeclared variable", `{"query":"{ mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }","variables":{"id":"3"}}`, 400, "invalid_parameter"),
		gql("variable object input", `{"query":"query Q($in: MlflowGetExperimentInput) { mlflowGetExperiment(input: $in) { experiment { name } } }","variables":{"in":{"experimentId":"3"}}}`, 403, "permission_denied"),
		gql("snake_case input field", q(`{ mlflowGetExperiment(input: {experiment_id: "1", experimentId: "3"}) { experiment { name } } }`), 400, "invalid_parameter"),
		gql("input field twice", q(`{ mlflowGetExperiment(input: {experimentId: "1", experimentId: "3"}) { experiment { name } } }`), 400, "duplicate_parameter"),
		gql("runId beside runUuid", q(`{ mlflowGetRun(input: {runId: "`+runA+`", runUuid: "`+runC+`"}) { run { info { runId } } } }`), 400, "duplicate_parameter"),
		gql("run of exp 3", q(`{ mlflowGetRun(input: {runId: "`+runC+`"}) { run { info { runId } } } }`), 403, "permission_denied"),
		gql("bulk metrics hide run C", q(`{ mlflowGetMetricHistoryBulkInterval(input: {runIds: ["`+runA+`", "`+runC+`"], metricKey: "loss"}) { metrics { key } } }`), 403, "permission_denied"),
		gql("syntax error", q(`{ mlflowGetExperiment(input: {experimentId: "3"}`), 400, "invalid_parameter"),
		gql("query over GET", "", 0, ""),
		gql("GET body under a harmless URL query", q(`{ `+getExp("", "3")+` }`), 400, "graphql_query_in_url"),
		gql("GET body decides", q(`{ `+getExp("", "3")+` }`), 403, "permission_denied"),
		gql("truncated body", q(`{ `+getExp("", "1")+` }`), 413, "body_truncated"),
	)
	// Fix up the two rows that need more than gql gives.
	for i := range tests {
		switch tests[i].name {
		case "graphql/query over GET":
			tests[i].method = http.MethodGet
			tests[i].target = "/graphql?query=" + strings.ReplaceAll(`{ `+getExp("", "3")+` }`, " ", "%20")
			tests[i].status, tests[i].reason = 400, "graphql_query_in_url"
		case "graphql/GET body under a harmless URL query":
			tests[i].method = http.MethodGet
			tests[i].target = "/graphql?query=%7B__typename%7D"
		case "graphql/GET body decides":
			tests[i].method = http.MethodGet
		case "graphql/batched operations":
			tests[i].headers = map[string]string{"content-type": "application/json"}
		case "graphql/truncated body":
			tests[i].partial = true
		}
	}

	// Identity integrity, enforced on hostStrict: alice may write to
	// experiment 1, but not in bob's name.
	strict := func(name, method, target, body string) hostile {
		return hostile{name: name, host: hostStrict, who: "alice", method: method, target: target, body: body,
			status: 403, reason: "identity_mismatch"}
	}
	add("integrity",
		strict("runs/create as another user", "POST", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","user_id":"bob"}`),
		strict("runs/create with mlflow.user tag", "POST", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","tags":[{"key":"mlflow.user","value":"bob"}]}`),
		strict("runs/create user_id right, tag wrong", "POST", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","user_id":"alice","tags":[{"key":"mlflow.user","value":"bob"}]}`),
		strict("runs/create camelCase userId", "POST", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","userId":"bob"}`),
		strict("runs/create user_id upper case", "POST", "/api/2.0/mlflow/runs/create", `{"experiment_id":"1","user_id":"ALICE"}`),
		strict("set-tag mlflow.user", "POST", "/api/2.0/mlflow/runs/set-tag", `{"run_id":"`+runA+`","key":"mlflow.user","value":"bob"}`),
		strict("log-batch mlflow.user tag", "POST", "/api/2.0/mlflow/runs/log-batch", `{"run_id":"`+runA+`","tags":[{"key":"mlflow.user","value":"bob"}]}`),
		hostile{name: "runs/create user_id twice", host: hostStrict, who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/create",
			body: `{"experiment_id":"1","user_id":"alice","user_id":"bob"}`, status: 400, reason: "duplicate_parameter"},
		hostile{name: "runs/create in a foreign experiment", host: hostStrict, who: "alice", method: "POST", target: "/api/2.0/mlflow/runs/create",
			body: `{"experiment_id":"3","user_id":"alice"}`, status: 403, reason: "permission_denied"},
	)

	require.GreaterOrEqual(t, len(tests), 150, "the issue asks for at least 150 hostile requests")
	byReason := map[string]int{}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.sendHostile(t, fmt.Sprintf("adv-%04d", i), tt)
			byReason[res.Reason]++
			requireDecision(t, res, false, tt.status, tt.reason)
			if res.Status == http.StatusUnauthorized {
				assertChallenge(t, res)
			}
		})
	}
	assert.Zero(t, attackerHits.Load(), "jku/x5u made us fetch from the attacker")
	t.Logf("%d hostile requests, denies by reason: %v", len(tests), byReason)
	assert.NotContains(t, h.logs.String(), goodTok, "a bearer token reached the log")

	// Audit: every deny is one structured decision line a SIEM can ship,
	// with the fields README's "Audit log" documents.
	lines := map[string][]map[string]any{}
	for _, l := range strings.Split(h.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["msg"] != "decision" {
			continue
		}
		if id, _ := m["request_id"].(string); strings.HasPrefix(id, "adv-") {
			lines[id] = append(lines[id], m)
		}
	}
	for i, tt := range tests {
		id := fmt.Sprintf("adv-%04d", i)
		got := lines[id]
		if !assert.Len(t, got, 1, "decision lines for %s (%s)", id, tt.name) {
			continue
		}
		m := got[0]
		for _, k := range []string{"time", "level", "request_id", "app", "host", "method", "path", "identity", "decision", "status", "reason", "latency_us"} {
			assert.Contains(t, m, k, "%s: field %s", tt.name, k)
		}
		assert.Equal(t, "deny", m["decision"], tt.name)
		assert.Equal(t, tt.reason, m["reason"], tt.name)
		assert.Equal(t, float64(tt.status), m["status"], tt.name)
		wantLevel := "INFO"
		if tt.status >= 500 {
			wantLevel = "WARN"
		}
		assert.Equal(t, wantLevel, m["level"], tt.name)
	}
}

// TestAdversarialHeaderMutations covers the spoofed headers that do not make
// a request fail but must not reach the upstream as the client sent them:
// the allow overwrites or removes them.
func TestAdversarialHeaderMutations(t *testing.T) {
	h, _ := startAdversarial(t)
	tests := []struct {
		name        string
		host        string
		who         string
		target      string
		headers     map[string]string
		wantSet     map[string]string
		wantRemoved []string
		notSet      []string
	}{
		{name: "client x-authz-user overwritten", host: hostMLflow, who: "alice", target: "/api/2.0/mlflow/runs/get?run_id=" + runA,
			headers: map[string]string{"x-authz-user": "carol"}, wantSet: map[string]string{"x-authz-user": "alice"}},
		{name: "client x-authz-groups removed when the caller has none", host: hostMLflow, who: "alice", target: "/api/2.0/mlflow/runs/get?run_id=" + runA,
			headers: map[string]string{"x-authz-groups": "mlflow-admin"}, wantSet: map[string]string{"x-authz-user": "alice"}, wantRemoved: []string{"x-authz-groups"}},
		{name: "client x-authz-groups overwritten", host: hostMLflow, who: "bob", target: "/api/2.0/mlflow/runs/get?run_id=" + runA,
			headers: map[string]string{"x-authz-groups": "mlflow-admin"}, wantSet: map[string]string{"x-authz-user": "bob"}},
		{name: "anonymous probe: identity headers removed", host: hostMLflow, who: anonymous, target: "/health",
			headers: map[string]string{"x-authz-user": "carol", "x-authz-groups": "mlflow-admin"}, wantRemoved: []string{"x-authz-user", "x-authz-groups"}},
		{name: "kiali impersonate-* overwritten", host: hostKiali, who: "alice", target: "/kiali/api/namespaces",
			headers:     map[string]string{"impersonate-user": "system:admin", "impersonate-group": "system:masters"},
			wantSet:     map[string]string{"impersonate-user": "alice", "authorization": "Bearer kiali-sa-token"},
			wantRemoved: []string{"impersonate-group"}},
		{name: "kiali impersonate-extra removed", host: hostKiali, who: "bob", target: "/kiali/api/namespaces",
			headers:     map[string]string{"impersonate-extra-scopes": "admin", "impersonate-uid": "0"},
			wantSet:     map[string]string{"impersonate-user": "bob"},
			wantRemoved: []string{"impersonate-extra-scopes", "impersonate-uid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.check(t, h.as(tt.host, tt.who, "GET", tt.target, "", tt.headers))
			requireDecision(t, res, true, 0, "")
			for k, v := range tt.wantSet {
				assert.Equal(t, v, res.Set[k], "header %s set upstream", k)
			}
			for _, k := range tt.wantRemoved {
				assert.Contains(t, res.Removed, k)
				_, set := res.Set[k]
				assert.False(t, set, "%s both set and removed", k)
			}
			// Whatever the client sent is never passed through as sent.
			for k, v := range tt.headers {
				if res.Set[k] == v {
					t.Errorf("client value of %s reached the upstream: %q", k, v)
				}
				if _, set := res.Set[k]; !set && !slices.Contains(res.Removed, k) {
					t.Errorf("client header %s neither overwritten nor removed", k)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
