package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// readable is a rowReader over a fixed set: the filters' own logic, apart
// from the permission model (which the end-to-end tests run for real).
type readable map[store.Resource]bool

func (r readable) CanRead(_ context.Context, res store.Resource) (bool, error) {
	if res.ID == "outage" {
		return false, errors.New("store down")
	}
	return r[res], nil
}

// CanViewWorkspace reads a workspace as a resource of kind "workspace".
func (r readable) CanViewWorkspace(ctx context.Context, name string) (bool, error) {
	return r.CanRead(ctx, workspace(name))
}

func workspace(n string) store.Resource { return store.Resource{Kind: "workspace", ID: n} }

func exp(id string) store.Resource  { return store.Resource{Kind: store.Experiment, ID: id} }
func model(n string) store.Resource { return store.Resource{Kind: store.RegisteredModel, ID: n} }
func scorer(e, n string) store.Resource {
	return store.Resource{Kind: store.Scorer, ID: e, Name: n}
}

func runFilter(t *testing.T, route, body string, rows rowReader) (string, error) {
	t.Helper()
	f := responseFilters[route]
	require.NotNil(t, f, route)
	d, err := newDoc([]byte(body))
	if err != nil {
		return "", err
	}
	if err := f(t.Context(), d, rows); err != nil {
		return "", err
	}
	out, err := d.output()
	return string(out), err
}

func TestResponseFilters(t *testing.T) {
	rows := readable{
		exp("1"): true, exp("3"): true, model("m1"): true, scorer("1", "s1"): true, scorer("3", "s3"): true,
		{Kind: store.GatewaySecret, ID: "sec-1"}: true, {Kind: store.GatewayEndpoint, ID: "ep-1"}: true,
		{Kind: store.GatewayModelDefinition, ID: "md-1"}: true, workspace("team-a"): true,
	}
	tests := []struct {
		name, route, body, want string
	}{
		{"workspaces: only those the caller sees", "ListWorkspaces",
			`{"workspaces":[{"name":"default","description":"d"},{"name":"team-a"},{"description":"no name"},{"name":"team-b"}]}`,
			`{"workspaces":[{"name":"team-a"}]}`},
		{"workspaces: none seen", "ListWorkspaces", `{"workspaces":[{"name":"team-b"}]}`, `{"workspaces":[]}`},
		{"experiments: mixed", "SearchExperiments",
			`{"experiments":[{"experiment_id":"1","name":"a"},{"experiment_id":"2","name":"b"},{"experiment_id":"3","name":"c"}],"next_page_token":"tok"}`,
			`{"experiments":[{"experiment_id":"1","name":"a"},{"experiment_id":"3","name":"c"}],"next_page_token":"tok"}`},
		{"experiments: every row unreadable keeps the token", "SearchExperiments",
			`{"experiments":[{"experiment_id":"2"},{"experiment_id":"4"}],"next_page_token":"tok"}`,
			`{"experiments":[],"next_page_token":"tok"}`},
		{"experiments: the empty result (MLflow omits the field)", "SearchExperiments", `{}`, `{}`},
		{"experiments: a row without an id goes", "SearchExperiments",
			`{"experiments":[{"name":"x"},{"experiment_id":""},{"experiment_id":null},{"experiment_id":"1"}]}`,
			`{"experiments":[{"experiment_id":"1"}]}`},
		{"registered models by name", "SearchRegisteredModels",
			`{"registered_models":[{"name":"m2","latest_versions":[{"name":"m2","version":"1"}]},{"name":"m1","latest_versions":[{"name":"m1","version":"1"}]}]}`,
			`{"registered_models":[{"name":"m1","latest_versions":[{"name":"m1","version":"1"}]}]}`},
		{"model versions by model name", "SearchModelVersions",
			`{"model_versions":[{"name":"m1","version":"1","source":"s3://a"},{"name":"m2","version":"4","run_id":"r"}]}`,
			`{"model_versions":[{"name":"m1","version":"1","source":"s3://a"}]}`},
		{"logged models by info.experiment_id", "SearchLoggedModels",
			`{"models":[{"info":{"model_id":"a","experiment_id":"2"}},{"info":{"model_id":"b","experiment_id":"1"},"data":{}}],"next_page_token":"n"}`,
			`{"models":[{"info":{"model_id":"b","experiment_id":"1"},"data":{}}],"next_page_token":"n"}`},
		{"scorers need the experiment and the scorer", "ListScorers",
			`{"scorers":[{"experiment_id":1,"scorer_name":"s1"},{"experiment_id":1,"scorer_name":"other"},{"experiment_id":2,"scorer_name":"s1"},{"experiment_id":3,"scorer_name":"s3"}]}`,
			`{"scorers":[{"experiment_id":1,"scorer_name":"s1"},{"experiment_id":3,"scorer_name":"s3"}]}`},
		{"gateway secrets", "ListGatewaySecretInfos",
			`{"secrets":[{"secret_id":"sec-1","masked_values":{"api_key":"sk-...1"}},{"secret_id":"sec-2"}]}`,
			`{"secrets":[{"secret_id":"sec-1","masked_values":{"api_key":"sk-...1"}}]}`},
		{"gateway endpoints", "ListGatewayEndpoints",
			`{"endpoints":[{"endpoint_id":"ep-2"},{"endpoint_id":"ep-1","name":"chat"}]}`,
			`{"endpoints":[{"endpoint_id":"ep-1","name":"chat"}]}`},
		{"gateway model definitions", "ListGatewayModelDefinitions",
			`{"model_definitions":[{"model_definition_id":"md-1"},{"model_definition_id":"md-9"}]}`,
			`{"model_definitions":[{"model_definition_id":"md-1"}]}`},
		{"secrets config: the passphrase flag is for admins", "GatewaySecretsConfig",
			`{"secrets_available":true,"using_default_passphrase":true}`,
			`{"secrets_available":true}`},
		{"GetTrace: readable experiment keeps its assessments", "GetTrace",
			`{"trace":{"trace_info":{"trace_id":"tr-1","trace_location":{"type":"MLFLOW_EXPERIMENT","mlflow_experiment":{"experiment_id":"1"}},"assessments":[{"name":"a"}]},"spans":[]}}`,
			`{"trace":{"trace_info":{"trace_id":"tr-1","trace_location":{"type":"MLFLOW_EXPERIMENT","mlflow_experiment":{"experiment_id":"1"}},"assessments":[{"name":"a"}]},"spans":[]}}`},
		{"GetTraceInfoV3: unreadable experiment loses them", "GetTraceInfoV3",
			`{"trace":{"trace_info":{"trace_id":"tr-2","trace_location":{"type":"MLFLOW_EXPERIMENT","mlflow_experiment":{"experiment_id":"2"}},"assessments":[{"name":"a"}],"state":"OK"}}}`,
			`{"trace":{"trace_info":{"trace_id":"tr-2","trace_location":{"type":"MLFLOW_EXPERIMENT","mlflow_experiment":{"experiment_id":"2"}},"state":"OK"}}}`},
		{"BatchGetTraces: per trace", "BatchGetTraces",
			`{"traces":[{"trace_info":{"trace_location":{"mlflow_experiment":{"experiment_id":"2"}},"assessments":[1]}},{"trace_info":{"trace_location":{"mlflow_experiment":{"experiment_id":"1"}},"assessments":[2]}}]}`,
			`{"traces":[{"trace_info":{"trace_location":{"mlflow_experiment":{"experiment_id":"2"}}}},{"trace_info":{"trace_location":{"mlflow_experiment":{"experiment_id":"1"}},"assessments":[2]}}]}`},
		{"BatchGetTraceInfos", "BatchGetTraceInfos",
			`{"trace_infos":[{"assessments":[1],"trace_location":{"inference_table":{"full_table_name":"a.b.c"}}}]}`,
			`{"trace_infos":[{"trace_location":{"inference_table":{"full_table_name":"a.b.c"}}}]}`},
		{"SearchTracesV3", "SearchTracesV3",
			`{"traces":[{"assessments":[],"trace_location":{"mlflow_experiment":{"experiment_id":"3"}}},{"trace_location":{"mlflow_experiment":{"experiment_id":"2"}},"assessments":[{"x":1}]}],"next_page_token":"p"}`,
			`{"traces":[{"assessments":[],"trace_location":{"mlflow_experiment":{"experiment_id":"3"}}},{"trace_location":{"mlflow_experiment":{"experiment_id":"2"}}}],"next_page_token":"p"}`},
		{"GetRegisteredModel: versions of an unreadable model", "GetRegisteredModel",
			`{"registered_model":{"name":"m2","latest_versions":[{"version":"1"}],"description":"d"}}`,
			`{"registered_model":{"name":"m2","description":"d"}}`},
		{"GetRegisteredModel: readable model untouched", "GetRegisteredModel",
			`{"registered_model":{"name":"m1","latest_versions":[{"version":"1"}]}}`,
			`{"registered_model":{"name":"m1","latest_versions":[{"version":"1"}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runFilter(t, tt.route, tt.body, rows)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.True(t, json.Valid([]byte(got)))
		})
	}
}

func TestResponseFiltersFailClosed(t *testing.T) {
	rows := readable{exp("1"): true}
	tests := []struct {
		name, route, body string
		want              error
	}{
		{"truncated", "SearchExperiments", `{"experiments":[{"experiment_id":"1"},{"experi`, errMalformed},
		{"not an object", "SearchExperiments", `[{"experiment_id":"1"}]`, errMalformed},
		{"rows not a list", "SearchExperiments", `{"experiments":{"experiment_id":"2"}}`, errMalformed},
		{"a row not an object", "SearchExperiments", `{"experiments":["2"]}`, errMalformed},
		{"duplicate id in a row", "SearchExperiments", `{"experiments":[{"experiment_id":"1","experiment_id":"2"}]}`, errDuplicate},
		{"duplicate rows key", "SearchExperiments", `{"experiments":[],"experiments":[{"experiment_id":"2"}]}`, errDuplicate},
		{"HTML error page", "SearchModelVersions", `<html>oops</html>`, errMalformed},
		{"trailing garbage", "SearchRegisteredModels", `{"registered_models":[]} x`, errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runFilter(t, tt.route, tt.body, rows)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	_, err := runFilter(t, "SearchExperiments", `{"experiments":[{"experiment_id":"outage"}]}`, rows)
	assert.ErrorContains(t, err, "store down", "a store failure mid-response is an error, never a row kept or dropped")
}
