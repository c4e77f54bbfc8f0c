package mlflow

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

func gqlBody(t *testing.T, query string, vars any) string {
	t.Helper()
	m := map[string]any{"query": query}
	if vars != nil {
		m["variables"] = vars
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

func TestGraphQL(t *testing.T) {
	post := func(name, query string, vars any, c classifyCase) classifyCase {
		c.name, c.method, c.target, c.body = name, "POST", "/graphql", gqlBody(t, query, vars)
		return c
	}
	getRun := `query($input: MlflowGetRunInput) { mlflowGetRun(input: $input) { run { info { runId } } } }`
	runClassifyCases(t, []classifyCase{
		post("literal experiment", `{ mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } }`, nil, classifyCase{needs: "READ:graphql:experiment:1"}),
		post("alias", `{ a: mlflowGetRun(input: {runId: "r1"}) { run { info { runId } } } b: mlflowGetRun(input: {runUuid: "r2"}) { run { info { runId } } } }`, nil, classifyCase{needs: "READ:graphql:run:r1,READ:graphql:run:r2"}),
		post("fragment spread", `query Q { ...F } fragment F on Query { mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } }`, nil, classifyCase{needs: "READ:graphql:experiment:1"}),
		post("nested fragments", `query Q { ...F } fragment F on Query { ...G } fragment G on Query { x: mlflowListArtifacts(input: {runId: "r1"}) { files { path } } }`, nil, classifyCase{needs: "READ:graphql:run:r1"}),
		post("inline fragment", `{ ... on Query { mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } } }`, nil, classifyCase{needs: "READ:graphql:experiment:1"}),
		post("input variable", getRun, map[string]any{"input": map[string]any{"runId": "r1"}}, classifyCase{needs: "READ:graphql:run:r1"}),
		post("nested variable", `query($id: String) { mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }`, map[string]any{"id": "r1"}, classifyCase{needs: "READ:graphql:run:r1"}),
		post("variable default", `query($id: String = "r9") { mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }`, nil, classifyCase{needs: "READ:graphql:run:r9"}),
		post("variable not supplied", getRun, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("variable not declared", `{ mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }`, map[string]any{"id": "r1"}, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("variable of the wrong type", getRun, map[string]any{"input": map[string]any{"runId": 5}}, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("input variable is a string", getRun, map[string]any{"input": "r1"}, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("Int literal for a String id", `{ mlflowGetExperiment(input: {experimentId: 1}) { experiment { name } } }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("enum literal for a String id", `{ mlflowGetExperiment(input: {experimentId: ONE}) { experiment { name } } }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("snake spelling", `{ mlflowGetRun(input: {run_id: "r1"}) { run { info { runId } } } }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("snake and camel spelling", getRun, map[string]any{"input": map[string]any{"runId": "r1", "run_id": "r2"}}, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("runId and runUuid differ", `{ mlflowGetRun(input: {runId: "r1", runUuid: "r2"}) { run { info { runId } } } }`, nil, classifyCase{status: 400, reason: ReasonDuplicateParameter}),
		post("duplicate literal field", `{ mlflowGetRun(input: {runId: "r1", runId: "r2"}) { run { info { runId } } } }`, nil, classifyCase{status: 400, reason: ReasonDuplicateParameter}),
		post("missing input", `{ mlflowGetRun { run { info { runId } } } }`, nil, classifyCase{status: 400, reason: ReasonMissingParameter}),
		post("unknown argument", `{ mlflowGetRun(input: {runId: "r1"}, other: 1) { run { info { runId } } } }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("several operations all checked", `query A { mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } } query B { mlflowGetExperiment(input: {experimentId: "2"}) { experiment { name } } }`, nil, classifyCase{needs: "READ:graphql:experiment:1,READ:graphql:experiment:2"}),
		post("search runs mutation", `mutation($e: [String]) { mlflowSearchRuns(input: {experimentIds: $e}) { runs { info { runId } modelVersions { name } } } }`, map[string]any{"e": []string{"1", "2"}}, classifyCase{needs: "READ:graphql:experiment:1,READ:graphql:experiment:2"}),
		post("search datasets mutation", `mutation { mlflowSearchDatasets(input: {experimentIds: ["1"]}) { datasetSummaries { name } } }`, nil, classifyCase{needs: "READ:graphql:experiment:1"}),
		post("search datasets needs experiments", `mutation { mlflowSearchDatasets(input: {experimentIds: []}) { datasetSummaries { name } } }`, nil, classifyCase{status: 400, reason: ReasonMissingParameter}),
		post("bulk interval coerces a single id", `{ mlflowGetMetricHistoryBulkInterval(input: {runIds: "r1", metricKey: "m"}) { metrics { value } } }`, nil, classifyCase{needs: "READ:graphql:run:r1"}),
		post("bulk interval with bad experiment-style id", `{ mlflowGetExperiment(input: {experimentId: "01"}) { experiment { name } } }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("search model versions is authenticated", `{ mlflowSearchModelVersions(input: {filter: "name='m'"}) { modelVersions { name } } }`, nil, classifyCase{needs: "-", access: "authenticated"}),
		post("typename only", `{ __typename }`, nil, classifyCase{needs: "-", access: "authenticated"}),
		post("introspection is admin only", `{ __schema { types { name } } }`, nil, classifyCase{needs: "-", access: "admin"}),
		post("introspection beside a field stays admin", `{ __type(name: "Query") { name } mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } }`, nil, classifyCase{needs: "READ:graphql:experiment:1", access: "admin"}),
		post("other mutation", `mutation { testMutation(inputString: "x") { output } }`, nil, classifyCase{status: 403, reason: ReasonGraphQLDenied}),
		post("unknown query field", `{ test(inputString: "x") { output } }`, nil, classifyCase{status: 403, reason: ReasonGraphQLDenied}),
		post("query field as mutation", `mutation { mlflowGetRun(input: {runId: "r1"}) { run { info { runId } } } }`, nil, classifyCase{status: 403, reason: ReasonGraphQLDenied}),
		post("mutation-only field as query", `{ mlflowSearchDatasets(input: {experimentIds: ["1"]}) { datasetSummaries { name } } }`, nil, classifyCase{status: 403, reason: ReasonGraphQLDenied}),
		// The run page's query SearchRuns (graphql_schema_extensions.Query).
		post("search runs query", `query SearchRuns($data: MlflowSearchRunsInput) { mlflowSearchRuns(input: $data) { runs { info { runId } } } }`, map[string]any{"data": map[string]any{"experimentIds": []string{"1", "2"}, "maxResults": 50}}, classifyCase{needs: "READ:graphql:experiment:1,READ:graphql:experiment:2"}),
		post("search runs query without experiments", `query { mlflowSearchRuns(input: {filter: "x"}) { runs { info { runId } } } }`, nil, classifyCase{needs: "-", access: "authenticated"}),
		post("search runs query with an unknown input field", `query { mlflowSearchRuns(input: {experimentIds: ["1"], runIds: ["r"]}) { runs { info { runId } } } }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("subscription", `subscription { mlflowGetRun(input: {runId: "r1"}) { run { info { runId } } } }`, nil, classifyCase{status: 403, reason: ReasonGraphQLDenied}),
		post("unknown field hidden in a fragment", `query { ...F } fragment F on Query { test(inputString: "x") { output } }`, nil, classifyCase{status: 403, reason: ReasonGraphQLDenied}),
		post("undefined fragment", `query { ...F }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("fragment cycle", `query { ...F } fragment F on Query { ...G } fragment G on Query { ...F }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("duplicate fragment names", `query { ...F } fragment F on Query { __typename } fragment F on Query { __typename }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("parse error", `{ mlflowGetRun(`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		post("fragments only", `fragment F on Query { __typename }`, nil, classifyCase{status: 400, reason: authz.ReasonInvalidParameter}),
		{name: "body duplicate query key", method: "POST", target: "/graphql", body: `{"query":"{ __typename }","query":"{ test { output } }"}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "body variables duplicate key", method: "POST", target: "/graphql", body: `{"query":"query($id: String) { mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }","variables":{"id":"r1","id":"r2"}}`, status: 400, reason: ReasonDuplicateParameter},
		{name: "variables not an object", method: "POST", target: "/graphql", body: `{"query":"{ __typename }","variables":"{}"}`, status: 400, reason: authz.ReasonInvalidParameter},
		{name: "no query", method: "POST", target: "/graphql", body: `{}`, status: 400, reason: ReasonMissingParameter},
		{name: "form post", method: "POST", target: "/graphql", body: `query=x`, headers: map[string]string{"content-type": "application/x-www-form-urlencoded"}, status: 400, reason: ReasonUnsupportedContentType},
		{name: "truncated", method: "POST", target: "/graphql", body: `{"query":"`, trunc: true, status: 413, reason: authz.ReasonBodyTruncated},
		// MLflow's _graphql reads the JSON body whatever the method, never the URL.
		{name: "GET reads the body", method: "GET", target: "/graphql", body: gqlBody(t, getRun, map[string]any{"input": map[string]any{"runId": "r1"}}), needs: "READ:graphql:run:r1"},
		{name: "GET body of any content type", method: "GET", target: "/graphql", body: gqlBody(t, getRun, map[string]any{"input": map[string]any{"runId": "r1"}}), headers: map[string]string{"content-type": "text/plain"}, needs: "READ:graphql:run:r1"},
		{name: "GET query in the URL", method: "GET", target: "/graphql?query=" + url.QueryEscape(getRun) + "&variables=" + url.QueryEscape(`{"input":{"runId":"r1"}}`), status: 400, reason: ReasonGraphQLQueryInURL},
		{name: "GET URL query beside a body", method: "GET", target: "/graphql?query=%7B__typename%7D", body: gqlBody(t, getRun, map[string]any{"input": map[string]any{"runId": "r1"}}), status: 400, reason: ReasonGraphQLQueryInURL},
		{name: "GET empty URL query", method: "GET", target: "/graphql?query=", body: gqlBody(t, "{ __typename }", nil), status: 400, reason: ReasonGraphQLQueryInURL},
		{name: "POST operationName in the URL", method: "POST", target: "/graphql?operationName=A", body: gqlBody(t, "{ __typename }", nil), status: 400, reason: ReasonGraphQLQueryInURL},
		{name: "POST variables in the URL", method: "POST", target: "/graphql?variables=%7B%7D", body: gqlBody(t, "{ __typename }", nil), status: 400, reason: ReasonGraphQLQueryInURL},
		{name: "other URL parameters are ignored, as MLflow does", method: "GET", target: "/graphql?_=123", body: gqlBody(t, "{ __typename }", nil), needs: "-", access: "authenticated"},
		{name: "GET truncated body", method: "GET", target: "/graphql", body: `{"query":"`, trunc: true, status: 413, reason: authz.ReasonBodyTruncated},
		{name: "GET no body", method: "GET", target: "/graphql", status: 400, reason: ReasonMissingParameter},
	})
}

// gqlClassify classifies a POST /graphql of query and vars with cls.
func gqlClassify(t *testing.T, cls *Classifier, query string, vars any) (Operation, *authz.Decision) {
	t.Helper()
	return cls.Classify(newReq(t, "POST", "/graphql", gqlBody(t, query, vars), nil))
}

func TestGraphQLDocumentCache(t *testing.T) {
	getRun := `query($id: String) { mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }`

	t.Run("a cached document reads each request's variables", func(t *testing.T) {
		cls := NewClassifier("", StaticPrefixAPI)
		for _, id := range []string{"r1", "r2", "r3"} {
			op, d := gqlClassify(t, cls, getRun, map[string]any{"id": id})
			require.Nil(t, d)
			require.Equal(t, "READ:graphql:run:"+id, formatNeeds(op))
		}
		require.Len(t, cls.gql.docs, 1)
		// The same document without its variable is refused, cached or not.
		_, d := gqlClassify(t, cls, getRun, nil)
		require.NotNil(t, d)
		require.Equal(t, 400, d.Status)
		require.Equal(t, authz.ReasonInvalidParameter, d.Reason)
		require.Contains(t, d.Message, "$id is used but not supplied")
	})

	t.Run("a refused document is not kept", func(t *testing.T) {
		cls := NewClassifier("", StaticPrefixAPI)
		for _, q := range []string{`{ mlflowGetRun(`, `fragment F on Query { __typename }`, `query { ...F } fragment F on Query { __typename } fragment F on Query { __typename }`} {
			for range 2 {
				_, d := gqlClassify(t, cls, q, nil)
				require.NotNil(t, d, q)
				require.Equal(t, 400, d.Status)
				require.Equal(t, authz.ReasonInvalidParameter, d.Reason)
			}
		}
		require.Empty(t, cls.gql.docs)
	})

	t.Run("bounded", func(t *testing.T) {
		cls := NewClassifier("", StaticPrefixAPI)
		for i := range maxCachedGraphQLDocs + 1 {
			q := fmt.Sprintf(`{ a%d: mlflowGetExperiment(input: {experimentId: "%d"}) { experiment { name } } }`, i, i+1)
			op, d := gqlClassify(t, cls, q, nil)
			require.Nil(t, d)
			require.Equal(t, fmt.Sprintf("READ:graphql:experiment:%d", i+1), formatNeeds(op))
			require.LessOrEqual(t, len(cls.gql.docs), maxCachedGraphQLDocs)
		}
		require.Len(t, cls.gql.docs, 1, "a full cache is emptied before the next document goes in")

		// The text kept is bounded too: trees take up to ~110 times it.
		byText := NewClassifier("", StaticPrefixAPI)
		pad := strings.Repeat(" ", maxCachedGraphQLBytes-200)
		perDoc := 0
		for i := range maxCachedGraphQLTotalBytes/maxCachedGraphQLBytes + 2 {
			q := fmt.Sprintf(`{ mlflowGetExperiment(input: {experimentId: "%d"}) { experiment { name } } }`, i+1) + pad
			perDoc = len(q)
			op, d := gqlClassify(t, byText, q, nil)
			require.Nil(t, d)
			require.Equal(t, fmt.Sprintf("READ:graphql:experiment:%d", i+1), formatNeeds(op))
			require.LessOrEqual(t, byText.gql.bytes, maxCachedGraphQLTotalBytes)
		}
		require.Equal(t, len(byText.gql.docs)*perDoc, byText.gql.bytes)
		require.Less(t, len(byText.gql.docs), maxCachedGraphQLTotalBytes/maxCachedGraphQLBytes+2)

		big := `{ mlflowGetExperiment(input: {experimentId: "7"}) { experiment { name } } }` + strings.Repeat(" ", maxCachedGraphQLBytes)
		op, d := gqlClassify(t, cls, big, nil)
		require.Nil(t, d)
		require.Equal(t, "READ:graphql:experiment:7", formatNeeds(op))
		require.Len(t, cls.gql.docs, 1, "a document over maxCachedGraphQLBytes is parsed, not kept")
	})

	// Requests share a cached document: run with -race (make test does).
	t.Run("concurrent", func(t *testing.T) {
		cls := NewClassifier("", StaticPrefixAPI)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range 50 {
					id := fmt.Sprintf("r%d-%d", w, i)
					op, d := gqlClassify(t, cls, getRun, map[string]any{"id": id})
					if d != nil || formatNeeds(op) != "READ:graphql:run:"+id {
						t.Errorf("%s: got %s, %v", id, formatNeeds(op), d)
						return
					}
				}
			})
		}
		wg.Wait()
	})
}
