package mlflow

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// deviation is one deliberate difference between the route table and
// MLflow's own checks, as the extractions of MLflow's source show them
// (drift_test.go). mlflow maps each route it covers to MLflow's rule there,
// as the drift test prints it ("absent" for a row MLflow has no route for,
// "denied" for a GraphQL field we refuse), so a change in MLflow shows up as
// a failing test. A key is "Row METHOD /path", "Row" for every method and
// mount of a row, "- METHOD /path" for an MLflow route with no row, or
// "graphql query|mutation field".
type deviation struct {
	title  string
	why    string
	mlflow map[string]string
}

// deviations is the reviewed list, and the README's deviations table.
var deviations = []deviation{
	{
		title: "traces and assessments",
		why: "MLflow 3.11 checks no trace or assessment RPC (its templated trace routes never match BEFORE_REQUEST_VALIDATORS): any signed-in user reads, tags and deletes any trace. " +
			"Later MLflow checks each through its experiment (mlflow#23014, #23317); so do we: READ or EDIT on the trace's experiment, DELETE (MANAGE) to delete traces, READ on every experiment a search names.",
		mlflow: rows("authenticated", "StartTrace", "EndTrace", "GetTraceInfo", "SearchTraces", "SetTraceTag", "DeleteTraceTag", "DeleteTraces",
			"LinkTracesToRun", "LinkPromptsToTrace", "GetTraceInfoV3", "GetTrace", "BatchGetTraces", "BatchGetTraceInfos", "SearchTracesV3",
			"DeleteTracesV3", "SetTraceTagV3", "DeleteTraceTagV3", "CalculateTraceFilterCorrelation", "QueryTraceMetrics",
			"CreateAssessment", "GetAssessment", "UpdateAssessment", "DeleteAssessment", "GetTraceArtifactV3"),
	},
	{
		title: "StartTraceV3 into an existing trace",
		why: "MLflow's store merges a StartTraceV3 into a trace_id that exists, rewriting its experiment, and upserts assessments by assessment_id wherever they are (sqlalchemy_store.start_trace); " +
			"the newest validator checks the destination only. Here: EDIT on the destination, EDIT on an existing trace's experiment and MANAGE (DELETE) there when it moves, EDIT where a named assessment or trace lives; trace_id is required.",
		mlflow: rows("authenticated", "StartTraceV3"),
	},
	{
		title: "OTLP spans into an existing trace",
		why: "MLflow writes spans into the trace each names, where it is (sqlalchemy_store.log_spans), but checks UPDATE on the X-MLflow-Experiment-Id experiment only. " +
			"Here every trace the export's spans name (mlflow.traceRequestId, else tr-<OTel id>) needs EDIT on its experiment if it exists.",
		mlflow: rows("resource EDIT header:x-mlflow-experiment-id", "OTLPTraces"),
	},
	{
		title: "evaluation datasets and issues",
		why: "MLflow 3.11 checks none of the v3 dataset and issue RPCs. Later MLflow checks them through their experiments (DATASET_ and ISSUE_BEFORE_REQUEST_HANDLERS): " +
			"READ, EDIT or DELETE on every experiment a dataset is linked to, EDIT on every experiment a dataset is created in or linked to (at least one), READ on every searched experiment; an issue through its experiment. So do we.",
		mlflow: rows("authenticated", "CreateDataset", "GetDataset", "DeleteDataset", "SearchEvaluationDatasets", "SetDatasetTags", "DeleteDatasetTag",
			"UpsertDatasetRecords", "GetDatasetRecords", "DeleteDatasetRecords", "GetDatasetExperimentIds", "AddDatasetToExperiments",
			"RemoveDatasetFromExperiments", "CreateIssue", "UpdateIssue", "GetIssue", "SearchIssues"),
	},
	{
		title: "routes MLflow 3.11 left open",
		why: "Checked as later MLflow checks them: LogInputs and LogOutputs (mlflow#24291) need EDIT on the run, the presigned URLs (#24571, #25071) READ or EDIT on the run, logged model or artifact path's experiment, " +
			"REST get-history-bulk-interval (#25071) READ on every run.",
		mlflow: merge(
			rows("authenticated", "LogInputs", "LogOutputs", "CreatePresignedUploadUrl", "GetPresignedDownloadUrl"),
			map[string]string{"GetMetricHistoryBulkInterval GET /api/2.0/mlflow/metrics/get-history-bulk-interval": "authenticated"}),
	},
	{
		title: "logged models and sources a write names",
		why: "MLflow writes metrics and input and output links to the logged models a request names, and copies a model version from its source; the newest validators check them " +
			"(validate_can_log_metric, _log_batch, validate_can_create_model_version): EDIT on each logged model, READ on a version's run, logged model and models:/ source. " +
			"Stricter: the run is checked even for a models:/ source, which the newest skips.",
		mlflow: merge(rows("resource EDIT body:run_id", "LogMetric", "LogBatch"), rows("resource EDIT body:name", "CreateModelVersion")),
	},
	{
		title: "job routes",
		why: "MLflow 3.11 lets any signed-in user read and cancel any job (its {job_id} routes never match, the FastAPI jobs router only authenticates); the newest checks the job's creator, a column 3.11's jobs table lacks. " +
			"Every job MLflow runs names its experiment in its params: READ or EDIT (DELETE to delete) on that experiment; a job without one is refused.",
		mlflow: rows("authenticated", "GetPromptOptimizationJob", "CancelPromptOptimizationJob", "DeletePromptOptimizationJob", "GetJob", "CancelJob", "GetJobFastAPI", "CancelJobFastAPI"),
	},
	{
		title: "searches name their experiments",
		why: "MLflow lets any signed-in user search runs and logged models and narrows the result to what they may read (search_runs_impl, filter_search_logged_models). A check cannot filter a response: " +
			"without the ext_proc filter every experiment the request names needs READ; with it (Config.ExtProcFilter) the filter drops the unreadable ids from the request or the unreadable rows from the response, as MLflow does.",
		mlflow: rows("authenticated", "SearchRuns", "SearchLoggedModels"),
	},
	{
		title: "newest MLflow validators",
		why: "Open in MLflow 3.11; the newest has a validator, whose rule we use: scorer and issue invoke UPDATE on the experiment (issue detection USE on its secret), online-scoring configs through their experiments, " +
			"guardrails on an endpoint through the endpoint, an endpoint read by name, a model attached to an endpoint USE on its model definition. Stricter: invoke also needs EDIT on every trace it is given " +
			"(the job reads each, whatever its experiment, and may annotate it) and issue detection USE on the gateway endpoint it calls.",
		mlflow: merge(
			rows("authenticated", "InvokeScorer", "InvokeIssueDetection", "GetOnlineScoringConfigs", "SetOnlineScoringConfig",
				"AddGuardrailToEndpoint", "RemoveGuardrailFromEndpoint", "UpdateEndpointGuardrailConfig", "ListEndpointGuardrailConfigs"),
			rows("resource READ query:endpoint_id", "GetGatewayEndpoint"),
			rows("resource EDIT+USE body:endpoint_id,body:model_configs", "AttachModelToGatewayEndpoint")),
	},
	{
		title:  "admin only, as the newest MLflow",
		why:    "Open in MLflow 3.11, admin only in the newest: standalone guardrail CRUD, demo delete, and users/create-ui (refused to non-admins by its fail-closed net).",
		mlflow: rows("authenticated", "CreateGatewayGuardrail", "GetGatewayGuardrail", "ListGatewayGuardrails", "DeleteGatewayGuardrail", "DemoDelete", "CreateUserUI"),
	},
	{
		title: "admin only, stricter than MLflow",
		why: "MLflow lets any signed-in user in; here only admins: the assistant (MLflow serves it to localhost only, and behind the sidecar every request comes from localhost; it runs a coding agent on the server), " +
			"job submission (runs any registered job function with the caller's params, in a worker that checks nothing; the UI never submits directly), " +
			"and the unified-traces and online-trace-details RPCs (not implemented in open-source MLflow).",
		mlflow: rows("authenticated", "Assistant", "SubmitJob", "SearchUnifiedTraces", "GetOnlineTraceDetails"),
	},
	{
		title: "workspaces",
		why: "The extraction cannot read validate_can_view_workspace, whose rule GetWorkspace follows: any signed-in caller with apps[].mlflow.workspaces off (MLflow returns True), " +
			"else a caller who sees the workspace (a READ workspace_permissions row in the legacy layout, any role of it in the roles layout, a token group naming one of its roles, " +
			"default with grant_default_workspace_access) or an admin. Workspace permissions are for admins only, where MLflow also lets a workspace's MANAGE holder in.",
		mlflow: merge(rows("unparsed:validate_can_view_workspace", "GetWorkspace"), rows("resource MANAGE path:workspace_name", "ListWorkspacePermissions")),
	},
	{
		title: "GraphQL",
		why: "MLflow lets any signed-in user post a document and its middleware nulls the fields the caller may not read; a check cannot null a field, so every top-level field needs its permission on every id, " +
			"and unknown fields are refused: the schema's test and testMutation fields too. The document is read from the JSON body for GET as for POST (handlers._graphql).",
		mlflow: merge(rows("authenticated", "GraphQL"), map[string]string{"graphql query test": "denied", "graphql mutation testMutation": "denied"}),
	},
	{
		title: "not served",
		why: "Refused as unknown routes (404): Flask's implicit static-folder route (the UI loads its files from /static-files) " +
			"and the REST search-datasets route (its proto path lacks a slash and its handler is not implemented).",
		mlflow: map[string]string{
			"- GET /build/<path:filename>":                           "*",
			"- POST /api/2.0mlflow/experiments/search-datasets":      "*",
			"- POST /ajax-api/2.0mlflow/experiments/search-datasets": "*",
		},
	},
	{
		title: "what MLflow's validator facts cannot show",
		why: "No difference when a request is decided, but the extraction's facts differ: the gateway endpoint writes share validate_can_update_gateway_endpoint, whose model_configs check finds none in their bodies; " +
			"_get_gateway_validator also takes the endpoint name from the invocations and Gemini paths (_extract_gateway_endpoint_name), not only the body; " +
			"validate_can_read_metric_history_bulk_interval reads run_ids, its helper's run_id only when called without them.",
		mlflow: merge(
			rows("resource EDIT+USE body:endpoint_id,body:model_configs", "DetachModelFromGatewayEndpoint", "CreateGatewayEndpointBinding", "SetGatewayEndpointTag"),
			rows("resource EDIT+USE body:model_configs,param:endpoint_id", "DeleteGatewayEndpointBinding", "DeleteGatewayEndpointTag"),
			rows("resource USE body:model", "GatewayInvocations", "GatewayGeminiGenerate", "GatewayGeminiStream"),
			map[string]string{"GetMetricHistoryBulkInterval GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval": "resource READ query:run_id,query:run_ids"}),
	},
}

// rows maps each named row to one MLflow rule.
func rows(rule string, names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = rule
	}
	return m
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

type deviationIdx map[string]*deviation

func deviationIndex(t *testing.T) deviationIdx {
	t.Helper()
	idx := deviationIdx{}
	for i := range deviations {
		for k := range deviations[i].mlflow {
			if idx[k] != nil {
				t.Fatalf("route %s is in two deviations: %q and %q", k, idx[k].title, deviations[i].title)
			}
			idx[k] = &deviations[i]
		}
	}
	return idx
}

// lookup finds the deviation for k, the finest key first; an MLflow route
// with no row also matches a key "- /path/prefix/".
func (idx deviationIdx) lookup(k routeKey) (*deviation, string) {
	for _, key := range []string{k.String(), k.name, k.method + " " + k.path} {
		if d := idx[key]; d != nil {
			return d, key
		}
	}
	if k.name == "-" {
		for key, d := range idx {
			if p, ok := strings.CutPrefix(key, "- /"); ok && strings.HasSuffix(key, "/") && strings.HasPrefix(k.path, "/"+p) {
				return d, key
			}
		}
	}
	return nil, ""
}

// readmePath is the README whose deviations table is this list.
const readmePath = "../../README.md"

const (
	readmeBegin = "<!-- deviations:begin (generated from authz/mlflow/deviations_test.go: go test ./authz/mlflow -run TestRouteTableAgainstMLflowSource -update) -->"
	readmeEnd   = "<!-- deviations:end -->"

	readmeNewerBegin = "<!-- newest-rules:begin (generated from authz/mlflow/newest_test.go: go test ./authz/mlflow -run TestRouteTableAgainstMLflowSource -update) -->"
	readmeNewerEnd   = "<!-- newest-rules:end -->"
)

// renderDeviations writes the README's table: one row per deviation, the
// routes it covers and MLflow's rule there as the extractions show it.
func renderDeviations() string {
	var b strings.Builder
	b.WriteString("| deviation | routes | MLflow (3.11, as extracted) | why, and what we do |\n|---|---|---|---|\n")
	for _, d := range deviations {
		byRule := map[string][]string{}
		for k, v := range d.mlflow {
			byRule[v] = append(byRule[v], k)
		}
		var routes, rules []string
		for rule, keys := range byRule {
			sort.Strings(keys)
			rules = append(rules, rule)
			for _, k := range keys {
				routes = append(routes, "`"+strings.TrimPrefix(k, "- ")+"`")
			}
		}
		sort.Strings(routes)
		sort.Strings(rules)
		for i, r := range rules {
			rules[i] = map[string]string{"*": "served (not here)", "denied": "a schema field", "moved": "moved under the prefix"}[r]
			if rules[i] == "" {
				rules[i] = "`" + r + "`"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", d.title, strings.Join(routes, ", "), strings.Join(rules, "; "), d.why)
	}
	return b.String()
}

// checkREADME requires the README's tables to be renderDeviations' and
// renderNewer's output, or writes them there with -update.
func checkREADME(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(readmePath)
	require.NoError(t, err)
	s := string(raw)
	i, j := strings.Index(s, readmeBegin), strings.Index(s, readmeEnd)
	require.True(t, i >= 0 && j > i, "README.md has no deviations table between %q and %q", readmeBegin, readmeEnd)
	want := s[:i+len(readmeBegin)] + "\n" + renderDeviations() + s[j:]
	i, j = strings.Index(want, readmeNewerBegin), strings.Index(want, readmeNewerEnd)
	require.True(t, i >= 0 && j > i, "README.md has no table of the newest rules between %q and %q", readmeNewerBegin, readmeNewerEnd)
	want = want[:i+len(readmeNewerBegin)] + "\n" + renderNewer() + want[j:]
	if *updateREADME {
		require.NoError(t, os.WriteFile(readmePath, []byte(want), 0o644))
		return
	}
	if want != s {
		t.Errorf("README.md's deviations table differs from deviations_test.go: run go test ./authz/mlflow -run TestRouteTableAgainstMLflowSource -update")
	}
}
