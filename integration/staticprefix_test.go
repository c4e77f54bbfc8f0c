package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// Two MLflows behind --static-prefix /mlflow: one of 3.12 or later, which
// serves /api/... under the prefix too (mlflow#22159), and one before 3.12,
// which serves it at the root (static_prefix_mode: ajax).
const (
	hostPrefixed  = "mlflow-prefixed.test"
	hostPrefixOld = "mlflow-prefix-old.test"
)

func prefixApps(doc string) string {
	return strings.Replace(doc, "  - name: mlflow-open\n", `  - name: mlflow-prefixed
    type: mlflow
    hosts: [`+hostPrefixed+`]
    mlflow:
      static_prefix: /mlflow
  - name: mlflow-prefix-old
    type: mlflow
    hosts: [`+hostPrefixOld+`]
    mlflow:
      static_prefix: /mlflow
      static_prefix_mode: ajax
  - name: mlflow-open
`, 1)
}

// TestStaticPrefixEras sends the same run read through gRPC Check to both
// eras, at the root and under the prefix: each era allows the form its
// MLflow serves to a reader and refuses the other as an unknown route, so
// a stale mode fails closed; the form it serves still checks the grant.
func TestStaticPrefixEras(t *testing.T) {
	const get = "/api/2.0/mlflow/runs/get?run_id=" + runA
	tests := []struct {
		name, host, target, who string
		allow                   bool
		status                  int
		reason                  authz.Reason
	}{
		{"3.12+ prefixed /api", hostPrefixed, "/mlflow" + get, "alice", true, 0, ""},
		{"3.12+ prefixed /api, no grant", hostPrefixed, "/mlflow" + get, "mallory", false, http.StatusForbidden, authz.ReasonPermissionDenied},
		{"3.12+ /api at the root", hostPrefixed, get, "alice", false, http.StatusNotFound, authz.ReasonUnknownRoute},
		{"3.12+ prefixed ajax", hostPrefixed, "/mlflow/ajax-api/2.0/mlflow/runs/get?run_id=" + runA, "alice", true, 0, ""},
		{"3.12+ FastAPI route under the prefix", hostPrefixed, "/mlflow/v1/traces", "alice", false, http.StatusNotFound, authz.ReasonUnknownRoute},
		{"before 3.12 /api at the root", hostPrefixOld, get, "alice", true, 0, ""},
		{"before 3.12 /api at the root, no grant", hostPrefixOld, get, "mallory", false, http.StatusForbidden, authz.ReasonPermissionDenied},
		{"before 3.12 prefixed /api", hostPrefixOld, "/mlflow" + get, "alice", false, http.StatusNotFound, authz.ReasonUnknownRoute},
		{"before 3.12 prefixed ajax", hostPrefixOld, "/mlflow/ajax-api/2.0/mlflow/runs/get?run_id=" + runA, "alice", true, 0, ""},
		{"before 3.12 anonymous", hostPrefixOld, get, anonymous, false, http.StatusUnauthorized, authz.ReasonUnauthenticated},
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startWith(t, b, startOptions{config: prefixApps})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					res := h.check(t, h.as(tt.host, tt.who, "GET", tt.target, "", nil))
					requireDecision(t, res, tt.allow, tt.status, string(tt.reason))
				})
			}
		})
	}
}
