package extproc

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

func TestNarrowSearchRuns(t *testing.T) {
	rows := readable{exp("1"): true, exp("3"): true}
	tests := []struct {
		name, body string
		want       string // "" = unchanged
		status     int
		reason     authz.Reason
	}{
		{name: "mixed ids keep the readable, and every other field", body: `{"experiment_ids":["1","2","3"],"filter":"metrics.a > 0.5","max_results":1000,"order_by":["x"]}`,
			want: `{"experiment_ids":["1","3"],"filter":"metrics.a > 0.5","max_results":1000,"order_by":["x"]}`},
		{name: "camel spelling, as protobuf's parser takes it", body: `{"experimentIds":["2","1"]}`, want: `{"experimentIds":["1"]}`},
		{name: "all readable: unchanged", body: `{"experiment_ids":["1","3"]}`},
		{name: "no ids: unchanged", body: `{"filter":"x"}`},
		{name: "empty list: unchanged", body: `{"experiment_ids":[]}`},
		{name: "none readable", body: `{"experiment_ids":["2","4"]}`, status: http.StatusForbidden, reason: ReasonNothingReadable},
		{name: "both spellings", body: `{"experiment_ids":["1"],"experimentIds":["2"]}`, status: http.StatusBadRequest, reason: "duplicate_parameter"},
		{name: "duplicate key", body: `{"experiment_ids":["1"],"experiment_ids":["2"]}`, status: http.StatusBadRequest, reason: "duplicate_parameter"},
		{name: "not a list", body: `{"experiment_ids":{"a":"1"}}`, status: http.StatusBadRequest, reason: authz.ReasonInvalidParameter},
		{name: "numbers", body: `{"experiment_ids":[1]}`, status: http.StatusBadRequest, reason: authz.ReasonInvalidParameter},
		{name: "not JSON", body: `experiment_ids=1`, status: http.StatusBadRequest, reason: "invalid_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, d, err := narrowSearchRuns(t.Context(), []byte(tt.body), rows)
			require.NoError(t, err)
			if tt.status != 0 {
				require.NotNil(t, d)
				assert.Equal(t, tt.status, d.Status)
				assert.Equal(t, tt.reason, d.Reason)
				return
			}
			require.Nil(t, d, "%+v", d)
			if tt.want == "" {
				assert.Nil(t, out)
				return
			}
			assert.JSONEq(t, tt.want, string(out))
		})
	}
}

func TestRewriteGraphQL(t *testing.T) {
	rows := readable{exp("1"): true, exp("3"): true}
	gql := func(query string, vars any) string {
		b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
		return string(b)
	}
	type body struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	read := func(t *testing.T, out []byte) body {
		var b body
		require.NoError(t, json.Unmarshal(out, &b))
		return b
	}

	t.Run("the UI's variables shape is narrowed in the variables", func(t *testing.T) {
		in := gql(`query SearchRuns($data: MlflowSearchRunsInput) { mlflowSearchRuns(input: $data) { runs { info { runId } } nextPageToken } }`,
			map[string]any{"data": map[string]any{"experimentIds": []string{"1", "2", "3"}, "maxResults": 50}})
		out, marked, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.Nil(t, d)
		assert.False(t, marked)
		b := read(t, out)
		assert.Equal(t, []any{"1", "3"}, b.Variables["data"].(map[string]any)["experimentIds"])
		assert.Contains(t, b.Query, "mlflowSearchRuns(input: $data)", "the document is untouched")
	})
	t.Run("a literal list is narrowed in the document", func(t *testing.T) {
		in := gql(`mutation { mlflowSearchRuns(input: {experimentIds: ["2", "1"], maxResults: 5}) { runs { info { runId } } } }`, nil)
		out, _, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.Nil(t, d)
		q := read(t, out).Query
		assert.Contains(t, q, `experimentIds:["1"]`)
		assert.Contains(t, q, `maxResults:5`)
	})
	t.Run("a list variable", func(t *testing.T) {
		in := gql(`mutation M($ids: [String]) { mlflowSearchRuns(input: {experimentIds: $ids}) { runs { info { runId } } } }`, map[string]any{"ids": []string{"3", "9"}})
		out, _, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.Nil(t, d)
		assert.Equal(t, []any{"3"}, read(t, out).Variables["ids"])
	})
	t.Run("a defaulted variable is supplied narrowed", func(t *testing.T) {
		in := gql(`mutation M($ids: [String] = ["1", "2"]) { mlflowSearchRuns(input: {experimentIds: $ids}) { runs { info { runId } } } }`, nil)
		out, _, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.Nil(t, d)
		assert.Equal(t, []any{"1"}, read(t, out).Variables["ids"])
	})
	t.Run("none readable is a 403", func(t *testing.T) {
		in := gql(`mutation { mlflowSearchRuns(input: {experimentIds: ["2"]}) { runs { info { runId } } } }`, nil)
		_, _, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.NotNil(t, d)
		assert.Equal(t, http.StatusForbidden, d.Status)
		assert.Equal(t, ReasonNothingReadable, d.Reason)
	})
	t.Run("modelVersions selections are marked, in fragments too", func(t *testing.T) {
		in := gql(`query { mlflowSearchModelVersions(input: {filter: "name='m1'"}) { modelVersions { version } } mlflowGetRun(input: {runId: "r1"}) { run { ...R } } }
fragment R on MlflowRunExtension { modelVersions { name source } }`, nil)
		out, marked, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.Nil(t, d)
		assert.True(t, marked)
		q := read(t, out).Query
		assert.Equal(t, 2, countOf(q, modelAlias+": name"), q)
	})
	t.Run("nothing to do: unchanged", func(t *testing.T) {
		in := gql(`query { mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } }`, nil)
		out, marked, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.Nil(t, d)
		assert.False(t, marked)
		assert.Nil(t, out)
	})
	t.Run("the reserved alias is refused", func(t *testing.T) {
		in := gql(`query { mlflowGetExperiment(input: {experimentId: "1"}) { experiment { `+modelAlias+`: name } } }`, nil)
		_, _, d, err := rewriteGraphQL(t.Context(), []byte(in), rows)
		require.NoError(t, err)
		require.NotNil(t, d)
		assert.Equal(t, http.StatusBadRequest, d.Status)
		assert.Equal(t, authz.ReasonInvalidParameter, d.Reason)
	})
}

func TestGraphQLResponse(t *testing.T) {
	rows := readable{model("m1"): true}
	body := `{"data":{"mv":{"modelVersions":[{"version":"1","` + modelAlias + `":"m1"},{"version":"2","` + modelAlias + `":"m2"}],"nextPageToken":null},` +
		`"mlflowGetRun":{"run":{"info":{"runId":"r1"},"modelVersions":[{"name":"m2","` + modelAlias + `":"m2"}]}}},"errors":null}`
	d, err := newDoc([]byte(body))
	require.NoError(t, err)
	require.NoError(t, graphQLResponse(t.Context(), d, rows))
	out, err := d.output()
	require.NoError(t, err)
	assert.JSONEq(t, `{"data":{"mv":{"modelVersions":[{"version":"1"}],"nextPageToken":null},"mlflowGetRun":{"run":{"info":{"runId":"r1"},"modelVersions":[]}}},"errors":null}`, string(out))

	for _, bad := range []string{
		`{"data":{"x":{"` + modelAlias + `":"m1"}}}`, // a marked object outside a list
		`{"data":{"x":[{"` + modelAlias + `":"m1","` + modelAlias + `":"m2"}]}}`,
	} {
		d, err := newDoc([]byte(bad))
		require.NoError(t, err)
		assert.Error(t, graphQLResponse(t.Context(), d, rows), bad)
	}
}

func countOf(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			n++
		}
	}
	return n
}
