package extauthz_test

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// FuzzCheck throws arbitrary request targets, hosts, methods, bodies and
// headers at the server and checks the response contract Envoy relies on:
// no RPC error, status always set, an allow carries an OkHttpResponse with
// no header both set and removed, and a deny carries a DeniedHttpResponse
// with a 3xx–5xx status and a JSON body that names the reason.
func FuzzCheck(f *testing.F) {
	f.Add("GET", mlflowHost, "/api/2.0/mlflow/experiments/get?experiment_id=1", "alice", "x-authz-user", "admin", []byte(nil))
	f.Add("POST", "MLflow.Example.com:443", "/api/2.0/mlflow/runs/create", "bob", "x-envoy-auth-partial-body", "true", []byte(`{"experiment_id":"1"}`))
	f.Add("GET", dryRunHost, "/a/%2e%2e/b", "", "cookie", "s=1", []byte(nil))
	f.Add("get", "[::1]:80", "/panic", "bad", ":path", "/other", []byte("\xff"))
	f.Add("", "", "", "foreign", "", "", []byte(nil))
	f.Add("GET", "broken.example.com", "/x?a=1;b=2", "alice", "x-authz-user", "", []byte(nil))
	srv := extauthz.NewServer(newTestEngine(f), nil, nil)
	f.Fuzz(func(t *testing.T, method, host, target, token, hName, hValue string, body []byte) {
		opts := []requestOption{withHeader(strings.ToLower(hName), hValue)}
		if token != "" {
			opts = append(opts, withBearer(token))
		}
		if body != nil {
			opts = append(opts, withJSONBody(string(body), false))
		}
		if target == "/slow" {
			target = "/not-slow" // the only path that blocks until the deadline
		}
		resp, err := srv.Check(t.Context(), istioRequest(method, host, target, opts...))
		if err != nil {
			t.Fatalf("RPC error: %v", err)
		}
		if resp.GetStatus() == nil {
			t.Fatal("status not set: Envoy would allow")
		}
		if resp.GetStatus().GetCode() == int32(codes.OK) {
			ok := resp.GetOkResponse()
			if ok == nil || resp.GetDeniedResponse() != nil {
				t.Fatalf("allow without OkHttpResponse: %v", resp)
			}
			set := map[string]bool{}
			for _, h := range ok.GetHeaders() {
				set[strings.ToLower(h.GetHeader().GetKey())] = true
			}
			for _, rm := range ok.GetHeadersToRemove() {
				if set[strings.ToLower(rm)] {
					t.Fatalf("header %q both set and removed", rm)
				}
			}
			return
		}
		denied := resp.GetDeniedResponse()
		if denied == nil {
			t.Fatalf("deny without DeniedHttpResponse: %v", resp)
		}
		if c := denied.GetStatus().GetCode(); c < 300 || c > 599 {
			t.Fatalf("deny with HTTP status %d", c)
		}
		var b map[string]string
		if err := json.Unmarshal([]byte(denied.GetBody()), &b); err != nil || b["reason"] == "" || b["error_code"] == "" {
			t.Fatalf("deny body %q: %v", denied.GetBody(), err)
		}
	})
}
