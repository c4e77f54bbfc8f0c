package integration

import (
	"net/http"
	"testing"
)

// actsOnCase is one request whose check must cover what MLflow then does
// with it, not only what the request seems to name.
type actsOnCase struct {
	name    string
	who     string
	method  string
	target  string
	body    string
	headers map[string]string
	allow   bool
	status  int
	reason  string
}

// TestMLflowActsOnWhatWeCheck sends, through gRPC Check on PostgreSQL and
// SQLite, requests where MLflow acts on something other than the obvious
// id: a GraphQL document in the body of a GET. bob may read experiment 1,
// never 3.
func TestMLflowActsOnWhatWeCheck(t *testing.T) {
	getExp := func(id string) string {
		return `{"query":"{ mlflowGetExperiment(input: {experimentId: \"` + id + `\"}) { experiment { name } } }"}`
	}
	tests := []actsOnCase{
		// MLflow's handlers._graphql reads the JSON body for GET as for POST.
		{name: "graphql GET decided from the body", who: "bob", method: "GET", target: "/graphql", body: getExp("3"),
			status: http.StatusForbidden, reason: "permission_denied"},
		{name: "graphql GET with a readable body", who: "bob", method: "GET", target: "/graphql", body: getExp("1"), allow: true},
		{name: "graphql GET body under a harmless URL query", who: "bob", method: "GET", target: "/graphql?query=%7B__typename%7D", body: getExp("3"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql GET URL query that agrees with the body", who: "bob", method: "GET",
			target: "/graphql?query=%7B%20mlflowGetExperiment(input%3A%20%7BexperimentId%3A%20%221%22%7D)%20%7B%20experiment%20%7B%20name%20%7D%20%7D%20%7D", body: getExp("1"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql GET URL query only", who: "bob", method: "GET", target: "/graphql?query=%7B__typename%7D",
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql POST with operationName in the URL", who: "bob", method: "POST", target: "/graphql?operationName=Q", body: getExp("1"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql POST with variables in the URL", who: "bob", method: "POST", target: "/graphql?variables=%7B%7D", body: getExp("1"),
			status: http.StatusBadRequest, reason: "graphql_query_in_url"},
		{name: "graphql GET without a body", who: "bob", method: "GET", target: "/graphql",
			status: http.StatusBadRequest, reason: "missing_parameter"},
		{name: "graphql GET body of any content type", who: "bob", method: "GET", target: "/graphql", body: getExp("3"),
			headers: map[string]string{"content-type": "text/plain"}, status: http.StatusForbidden, reason: "permission_denied"},
		{name: "graphql POST still needs JSON", who: "bob", method: "POST", target: "/graphql", body: getExp("1"),
			headers: map[string]string{"content-type": "text/plain"}, status: http.StatusBadRequest, reason: "unsupported_content_type"},
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startOn(t, b)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					res := h.check(t, h.as(hostMLflow, tt.who, tt.method, tt.target, tt.body, tt.headers))
					requireDecision(t, res, tt.allow, tt.status, tt.reason)
				})
			}
		})
	}
}
