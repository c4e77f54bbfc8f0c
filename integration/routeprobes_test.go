package integration

import (
	"github.com/mlflow-authz/mlflow-authz/authz/authztest"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Ids that TestAllMLflowRoutes seeds on top of the harness seed. Every one
// belongs to experiment 1 or is granted on its own table to the level users.
const (
	job1      = "job-0001"    // jobs.params experiment_id "1"
	issue1    = "iss-0001"    // issues.experiment_id 1
	dataset1  = "d-0001"      // linked to experiment 1 through entity_associations
	scorer1   = "scorer-one"  // scorer_permissions on experiment "1"
	scorerID1 = "sc-0001"     // scorer-one's id, with an online scoring configuration in experiment 1
	secret1   = "sec-0001"    // gateway_secret_permissions
	modelDef1 = "md-0001"     // gateway_model_definition_permissions
	endpoint1 = "ep-1"        // the harness's chat-ep endpoint
	model1    = "fraud-model" // the harness's registered model
)

// probePathVars fills the route patterns' {var} segments. A pattern with a
// variable missing here fails the test: a new template needs a value.
var probePathVars = map[string]string{
	"request_id":    trace1,
	"trace_id":      trace1,
	"model_id":      lm1,
	"dataset_id":    dataset1,
	"job_id":        job1,
	"issue_id":      issue1,
	"assessment_id": "a-1",
	"key":           "k",
	"tag_key":       "k",
	"webhook_id":    "wh-1",
	"op":            "list",
	"rest":          "sessions",
	"workspace":     "default",
	"artifact_path": "1/" + runA + "/artifacts/model.pkl",
	"path":          "static/js/main.js",
	"endpoint_name": "chat-ep",
}

// params are ids a proto endpoint reads by MLflow's method rule: the query
// for GET, the JSON body otherwise. A []string value is a repeated query
// parameter or a JSON list.
type params map[string]any

// probe is one valid request to a route, minus its method and mount prefix.
type probe struct {
	// name tells several probes of one route apart.
	name string
	// method restricts the probe to one of the route's methods; "" is all.
	method string
	// params are rendered by method (see params); query and body are sent
	// verbatim. A body that does not start with '{' is sent as raw bytes.
	params      params
	query, body string
	headers     map[string]string
	// access and perm override the route's (GraphQL rows, whose need
	// depends on the document).
	access mlflow.Access
	perm   store.Permission
}

// rawBody is a body that is not JSON (artifact bytes, a form).
const rawBody = "\x80\x04raw bytes"

func gql(name, doc, vars string, perm store.Permission, access mlflow.Access) probe {
	body := `{"query":` + jsonString(doc)
	if vars != "" {
		body += `,"variables":` + vars
	}
	return probe{name: name, method: "POST", body: body + "}", perm: perm, access: access}
}

// gqlGet is a GraphQL GET: MLflow reads its document from the JSON body,
// as for a POST (handlers._graphql).
func gqlGet(name, doc string, perm store.Permission, access mlflow.Access) probe {
	return probe{name: name, method: "GET", body: `{"query":` + jsonString(doc) + `}`, perm: perm, access: access}
}

// probes is a request builder for every row of the MLflow route table, by
// the row's Name. TestAllMLflowRoutes fails for a row without an entry, so
// the table cannot grow untested.
var probes = map[string][]probe{
	// Experiments.
	"CreateExperiment":    {{params: params{"name": "new-exp"}}},
	"GetExperiment":       {{params: params{"experiment_id": "1"}}},
	"GetExperimentByName": {{params: params{"experiment_name": "fraud-detection"}}},
	"SearchExperiments":   {{}},
	"DeleteExperiment":    {{params: params{"experiment_id": "1"}}},
	"RestoreExperiment":   {{params: params{"experiment_id": "1"}}},
	"UpdateExperiment":    {{params: params{"experiment_id": "1", "new_name": "n"}}},
	"SetExperimentTag":    {{params: params{"experiment_id": "1", "key": "k", "value": "v"}}},
	"DeleteExperimentTag": {{params: params{"experiment_id": "1", "key": "k"}}},

	// Runs, metrics, run artifacts.
	"CreateRun":                    {{params: params{"experiment_id": "1"}}},
	"GetRun":                       {{params: params{"run_id": runA}}, {name: "run_uuid", params: params{"run_uuid": runA}}},
	"UpdateRun":                    {{params: params{"run_id": runA, "status": "FINISHED"}}},
	"DeleteRun":                    {{params: params{"run_id": runA}}},
	"RestoreRun":                   {{params: params{"run_id": runA}}},
	"LogMetric":                    {{params: params{"run_id": runA, "key": "loss"}}, {name: "model_id", params: params{"run_id": runA, "key": "loss", "model_id": lm1}}},
	"LogParam":                     {{params: params{"run_uuid": runA, "key": "lr", "value": "0.1"}}},
	"LogBatch":                     {{params: params{"run_id": runA}}},
	"LogModel":                     {{params: params{"run_id": runA}}},
	"SetTag":                       {{params: params{"run_id": runA, "key": "k", "value": "v"}}},
	"DeleteTag":                    {{params: params{"run_id": runA, "key": "k"}}},
	"LogInputs":                    {{params: params{"run_id": runA}}},
	"LogOutputs":                   {{params: params{"run_id": runA}}},
	"SearchRuns":                   {{params: params{"experiment_ids": []string{"1"}}}},
	"GetMetricHistory":             {{params: params{"run_uuid": runA, "metric_key": "loss"}}},
	"GetMetricHistoryBulkInterval": {{query: "run_ids=" + runA + "&run_ids=" + runA2 + "&metric_key=loss"}},
	"ListArtifacts":                {{params: params{"run_id": runA}}},
	"CreatePresignedUploadUrl":     {{params: params{"run_id": runA, "path": "p"}}, {name: "model_id", params: params{"model_id": lm1, "path": "p"}}},
	"CreatePresignedDownloadUrl":   {{params: params{"run_id": runA, "path": "p"}}},

	// Traces.
	"StartTrace":            {{params: params{"experiment_id": "1"}}},
	"EndTrace":              {{body: `{}`}},
	"GetTraceInfo":          {{}},
	"SearchTraces":          {{params: params{"experiment_ids": []string{"1"}}}},
	"SetTraceTag":           {{body: `{"key":"k","value":"v"}`}},
	"DeleteTraceTag":        {{query: "key=k"}},
	"DeleteTraces":          {{params: params{"experiment_id": "1"}}},
	"LinkTracesToRun":       {{params: params{"run_id": runA, "trace_ids": []string{trace1}}}},
	"LinkPromptsToTrace":    {{params: params{"trace_id": trace1}}},
	"SearchUnifiedTraces":   {{}},
	"GetOnlineTraceDetails": {{}},
	"StartTraceV3": {
		{name: "new trace", body: `{"trace":{"trace_info":{"trace_id":"tr-new","trace_location":{"mlflow_experiment":{"experiment_id":"1"}}}}}`},
		{name: "merge into trace1", body: `{"trace":{"trace_info":{"trace_id":"` + trace1 + `","trace_location":{"mlflow_experiment":{"experiment_id":"1"}}}}}`},
	},
	"GetTraceInfoV3":                  {{}},
	"GetTrace":                        {{params: params{"trace_id": trace1}}},
	"BatchGetTraces":                  {{params: params{"trace_ids": []string{trace1}}}},
	"BatchGetTraceInfos":              {{params: params{"trace_ids": []string{trace1}}}},
	"SearchTracesV3":                  {{body: `{"locations":[{"mlflow_experiment":{"experiment_id":"1"}}]}`}},
	"DeleteTracesV3":                  {{params: params{"experiment_id": "1"}}},
	"SetTraceTagV3":                   {{body: `{"key":"k","value":"v"}`}},
	"DeleteTraceTagV3":                {{query: "key=k"}},
	"CalculateTraceFilterCorrelation": {{params: params{"experiment_ids": []string{"1"}}}},
	"QueryTraceMetrics":               {{params: params{"experiment_ids": []string{"1"}}}},

	// Assessments.
	"CreateAssessment": {{body: `{}`}},
	"GetAssessment":    {{}},
	"UpdateAssessment": {{body: `{}`}},
	"DeleteAssessment": {{}},

	// Issues and evaluation datasets.
	"CreateIssue":                  {{params: params{"experiment_id": "1"}}},
	"UpdateIssue":                  {{body: `{}`}},
	"GetIssue":                     {{}},
	"SearchIssues":                 {{params: params{"experiment_id": "1"}}},
	"CreateDataset":                {{params: params{"experiment_ids": []string{"1"}, "name": "ds"}}},
	"GetDataset":                   {{}},
	"DeleteDataset":                {{}},
	"SearchEvaluationDatasets":     {{params: params{"experiment_ids": []string{"1"}}}},
	"SetDatasetTags":               {{body: `{}`}},
	"DeleteDatasetTag":             {{}},
	"UpsertDatasetRecords":         {{body: `{}`}},
	"GetDatasetRecords":            {{}},
	"DeleteDatasetRecords":         {{}},
	"GetDatasetExperimentIds":      {{}},
	"AddDatasetToExperiments":      {{params: params{"experiment_ids": []string{"1"}}}},
	"RemoveDatasetFromExperiments": {{params: params{"experiment_ids": []string{"1"}}}},

	// Logged models.
	"CreateLoggedModel":        {{params: params{"experiment_id": "1"}}},
	"SearchLoggedModels":       {{params: params{"experiment_ids": []string{"1"}}}},
	"GetLoggedModel":           {{}},
	"FinalizeLoggedModel":      {{body: `{}`}},
	"DeleteLoggedModel":        {{}},
	"SetLoggedModelTags":       {{body: `{}`}},
	"DeleteLoggedModelTag":     {{}},
	"ListLoggedModelArtifacts": {{}},
	"LogLoggedModelParams":     {{body: `{}`}},
	"GetLoggedModelArtifact":   {{query: "artifact_file_path=model.pkl"}},

	// Model registry.
	"CreateRegisteredModel":      {{params: params{"name": "brand-new-model"}}},
	"GetRegisteredModel":         {{params: params{"name": model1}}},
	"RenameRegisteredModel":      {{params: params{"name": model1, "new_name": "renamed"}}},
	"UpdateRegisteredModel":      {{params: params{"name": model1}}},
	"DeleteRegisteredModel":      {{params: params{"name": model1}}, {name: "query", query: "name=" + model1}},
	"SearchRegisteredModels":     {{}},
	"GetLatestVersions":          {{params: params{"name": model1}}},
	"SetRegisteredModelTag":      {{params: params{"name": model1, "key": "k", "value": "v"}}},
	"DeleteRegisteredModelTag":   {{params: params{"name": model1, "key": "k"}}},
	"SetRegisteredModelAlias":    {{params: params{"name": model1, "alias": "a", "version": "1"}}},
	"DeleteRegisteredModelAlias": {{params: params{"name": model1, "alias": "a"}}},
	"GetModelVersionByAlias":     {{params: params{"name": model1, "alias": "a"}}},
	"CreateModelVersion": {
		{params: params{"name": model1, "source": "s3://b/1"}},
		{name: "with source run", params: params{"name": model1, "run_id": runA}},
	},
	"UpdateModelVersion":          {{params: params{"name": model1, "version": "1"}}},
	"TransitionModelVersionStage": {{params: params{"name": model1, "version": "1", "stage": "Production"}}},
	"DeleteModelVersion":          {{params: params{"name": model1, "version": "1"}}},
	"GetModelVersion":             {{params: params{"name": model1, "version": "1"}}},
	"SearchModelVersions":         {{}},
	"GetModelVersionDownloadUri":  {{params: params{"name": model1, "version": "1"}}},
	"SetModelVersionTag":          {{params: params{"name": model1, "version": "1", "key": "k", "value": "v"}}},
	"DeleteModelVersionTag":       {{params: params{"name": model1, "version": "1", "key": "k"}}},

	// Scorers.
	"RegisterScorer":     {{params: params{"experiment_id": "1", "name": scorer1}}},
	"ListScorers":        {{params: params{"experiment_id": "1"}}},
	"GetScorer":          {{params: params{"experiment_id": "1", "name": scorer1}}},
	"ListScorerVersions": {{params: params{"experiment_id": "1", "name": scorer1}}},
	"DeleteScorer":       {{params: params{"experiment_id": "1", "name": scorer1}}},
	"GetOnlineScoringConfigs": {
		{name: "query", query: "scorer_ids=" + scorerID1},
		{name: "body", body: `{"scorer_ids":["` + scorerID1 + `"]}`},
	},
	"SetOnlineScoringConfig": {{body: `{"experiment_id":"1","name":"` + scorer1 + `","sample_rate":0.5}`}},

	// Prompt optimization jobs.
	"CreatePromptOptimizationJob":  {{params: params{"experiment_id": "1"}}},
	"SearchPromptOptimizationJobs": {{params: params{"experiment_id": "1"}}},
	"GetPromptOptimizationJob":     {{}},
	"CancelPromptOptimizationJob":  {{body: `{}`}},
	"DeletePromptOptimizationJob":  {{}},

	// AI gateway.
	"CreateGatewaySecret":    {{params: params{"secret_name": "s"}}},
	"GetGatewaySecretInfo":   {{params: params{"secret_id": secret1}}},
	"UpdateGatewaySecret":    {{params: params{"secret_id": secret1}}},
	"DeleteGatewaySecret":    {{params: params{"secret_id": secret1}}},
	"ListGatewaySecretInfos": {{}},
	"CreateGatewayEndpoint":  {{body: `{"name":"new-ep","model_configs":[{"model_definition_id":"` + modelDef1 + `"}]}`}},
	"GetGatewayEndpoint":     {{params: params{"endpoint_id": endpoint1}}, {name: "by name", params: params{"name": "chat-ep"}}},
	"UpdateGatewayEndpoint":  {{body: `{"endpoint_id":"` + endpoint1 + `","model_configs":[{"model_definition_id":"` + modelDef1 + `"}]}`}},
	"DeleteGatewayEndpoint":  {{params: params{"endpoint_id": endpoint1}}},
	"ListGatewayEndpoints":   {{}},
	"AttachModelToGatewayEndpoint": {
		{params: params{"endpoint_id": endpoint1}},
		{name: "with a model definition", body: `{"endpoint_id":"` + endpoint1 + `","model_config":{"model_definition_id":"` + modelDef1 + `"}}`, perm: store.Edit},
	},
	"DetachModelFromGatewayEndpoint": {{params: params{"endpoint_id": endpoint1}}},
	"CreateGatewayEndpointBinding":   {{params: params{"endpoint_id": endpoint1}}},
	"DeleteGatewayEndpointBinding":   {{params: params{"endpoint_id": endpoint1}}},
	"ListGatewayEndpointBindings":    {{params: params{"endpoint_id": endpoint1}}},
	"SetGatewayEndpointTag":          {{params: params{"endpoint_id": endpoint1, "key": "k", "value": "v"}}},
	"DeleteGatewayEndpointTag":       {{params: params{"endpoint_id": endpoint1, "key": "k"}}},
	"CreateGatewayModelDefinition":   {{params: params{"name": "md", "secret_id": secret1}}},
	"GetGatewayModelDefinition":      {{params: params{"model_definition_id": modelDef1}}},
	"ListGatewayModelDefinitions":    {{}},
	"UpdateGatewayModelDefinition":   {{params: params{"model_definition_id": modelDef1, "secret_id": secret1}}},
	"DeleteGatewayModelDefinition":   {{params: params{"model_definition_id": modelDef1}}},
	"CreateGatewayBudgetPolicy":      {{body: `{}`}},
	"UpdateGatewayBudgetPolicy":      {{body: `{}`}},
	"DeleteGatewayBudgetPolicy":      {{body: `{}`}},
	"GetGatewayBudgetPolicy":         {{}},
	"ListGatewayBudgetPolicies":      {{}},
	"ListGatewayBudgetWindows":       {{}},
	"CreateGatewayGuardrail":         {{body: `{"name":"g"}`}},
	"GetGatewayGuardrail":            {{query: "guardrail_id=g1"}},
	"ListGatewayGuardrails":          {{}},
	"DeleteGatewayGuardrail":         {{query: "guardrail_id=g1"}},
	"AddGuardrailToEndpoint":         {{params: params{"endpoint_id": endpoint1, "guardrail_id": "g1"}}},
	"RemoveGuardrailFromEndpoint":    {{params: params{"endpoint_id": endpoint1, "guardrail_id": "g1"}}},
	"UpdateEndpointGuardrailConfig":  {{params: params{"endpoint_id": endpoint1, "guardrail_id": "g1"}}},
	"ListEndpointGuardrailConfigs":   {{params: params{"endpoint_id": endpoint1}}},
	"GatewaySupportedProviders":      {{}},
	"GatewaySupportedModels":         {{}},
	"GatewayProviderConfig":          {{}},
	"GatewaySecretsConfig":           {{}},
	"CreateWebhook":                  {{body: `{"name":"w","url":"https://example.com"}`}},
	"ListWebhooks":                   {{}},
	"Webhook":                        {{}},
	"TestWebhook":                    {{body: `{}`}},
	"DownloadArtifact":               {{}},
	"UploadArtifact":                 {{body: rawBody}},
	"DeleteArtifact":                 {{}},
	"ListProxiedArtifacts":           {{query: "path=1/" + runA + "/artifacts"}},
	"CreateMultipartUpload":          {{body: `{}`}},
	"CompleteMultipartUpload":        {{body: `{}`}},
	"AbortMultipartUpload":           {{body: `{}`}},
	"GetPresignedDownloadUrl":        {{}},
	"GetArtifact":                    {{query: "run_uuid=" + runA + "&path=model.pkl"}, {name: "run_id", query: "run_id=" + runA + "&path=model.pkl"}},
	"GetModelVersionArtifact":        {{query: "name=" + model1 + "&version=1&path=model.pkl"}},
	"UploadRunArtifact":              {{query: "run_uuid=" + runA + "&path=model.pkl", body: rawBody}},
	"GetTraceArtifact":               {{query: "request_id=" + trace1}},
	"GetTraceArtifactV3":             {{query: "request_id=" + trace1}, {name: "trace_id", query: "trace_id=" + trace1}},
	"GetMetricHistoryBulk":           {{query: "run_id=" + runA + "&run_id=" + runA2 + "&metric_key=loss"}},
	"SearchDatasets":                 {{params: params{"experiment_ids": []string{"1"}}}},
	"CreatePromptlabRun":             {{params: params{"experiment_id": "1"}}},
	"GatewayProxy":                   {{}},
	"InvokeScorer":                   {{params: params{"experiment_id": "1", "serialized_scorer": "{}", "trace_ids": []string{trace1}}}},
	"InvokeGenAIEvaluate":            {{params: params{"experiment_id": "1", "serialized_scorers": []string{"{}"}, "trace_ids": []string{trace1}}}},
	"UITelemetry":                    {{}},
	"ServerInfo":                     {{}},
	"InvokeIssueDetection": {
		{params: params{"experiment_id": "1", "trace_ids": []string{trace1}, "provider": "openai", "model": "gpt-4o"}},
		{name: "with a secret and an endpoint", params: params{"experiment_id": "1", "trace_ids": []string{trace1}, "secret_id": secret1, "endpoint_name": "chat-ep"}, perm: store.Edit},
	},
	"DemoGenerate":     {{body: `{}`}},
	"DemoDelete":       {{body: `{}`}},
	"GetJob":           {{}},
	"CancelJob":        {{}},
	"GetJobFastAPI":    {{}},
	"CancelJobFastAPI": {{}},
	"SubmitJob":        {{body: `{}`}},
	"SearchJobs":       {{body: `{}`}},
	"Assistant":        {{}},
	"Version":          {{}},
	"UI":               {{}},
	"StaticFiles":      {{}},
	"Health":           {{}},
	"Signup":           {{}},
	"CreateUserUI":     {{body: "username=x&password=y"}},
	"OTLPTraces": {{body: string(authztest.OTLPExport(authztest.OTLPSpan{TraceID: []byte("new-trace-000001")}, authztest.OTLPSpan{TraceID: []byte("new-trace-000001"), RequestID: trace1})),
		headers: map[string]string{"x-mlflow-experiment-id": "1", "content-type": "application/x-protobuf"}}},
	"GatewayInvocations":              {{body: `{"messages":[]}`}},
	"GatewayChatCompletions":          {{body: `{"model":"chat-ep","messages":[]}`}},
	"GatewayOpenAIChatCompletions":    {{body: `{"model":"chat-ep","messages":[]}`}},
	"GatewayOpenAIEmbeddings":         {{body: `{"model":"chat-ep","input":"x"}`}},
	"GatewayOpenAIResponses":          {{body: `{"model":"chat-ep","input":"x"}`}},
	"GatewayAnthropicMessages":        {{body: `{"model":"chat-ep","messages":[]}`}},
	"GatewayGeminiGenerate":           {{body: `{"contents":[]}`}},
	"GatewayGeminiStream":             {{body: `{"contents":[]}`}},
	"GatewayRawProxy":                 {{}},
	"GatewayListModels":               {{}},
	"CreateReviewQueue":               {{params: params{"experiment_id": "1", "name": "q", "queue_type": "CUSTOM"}}},
	"GetOrCreateUserQueue":            {{params: params{"experiment_id": "1", "user": "mallory"}}},
	"ListReviewQueues":                {{params: params{"experiment_id": "1"}}},
	"GetReviewQueueByName":            {{params: params{"experiment_id": "1", "name": "q"}}},
	"ReviewQueue":                     {{params: params{"queue_id": "rq-1"}}},
	"CreateLabelSchema":               {{params: params{"experiment_id": "1", "name": "s"}}},
	"ListLabelSchemas":                {{params: params{"experiment_id": "1"}}},
	"GetLabelSchemaByName":            {{params: params{"experiment_id": "1", "name": "s"}}},
	"LabelSchema":                     {{params: params{"schema_id": "ls-1"}}},
	"MCPServers":                      {{}},
	"MCPServer":                       {{}},
	"GetCurrentUser":                  {{}},
	"ListUserRoles":                   {{params: params{"username": "mallory"}}},
	"GetUserPermission":               {{params: params{"username": "mallory", "resource_type": "experiment", "resource_id": "1"}}},
	"GrantUserPermission":             {{params: params{"username": "bob", "resource_type": "experiment", "resource_id": "1", "permission": "READ"}}},
	"RevokeUserPermission":            {{params: params{"username": "bob", "resource_type": "experiment", "resource_id": "1"}}},
	"CreateRole":                      {{params: params{"name": "r", "workspace": "default"}}},
	"GetRole":                         {{params: params{"role_id": "1"}}},
	"ListRoles":                       {{}},
	"UpdateRole":                      {{params: params{"role_id": "1", "name": "r2"}}},
	"DeleteRole":                      {{params: params{"role_id": "1"}}},
	"AddRolePermission":               {{params: params{"role_id": "1", "resource_type": "experiment", "resource_pattern": "1", "permission": "READ"}}},
	"RemoveRolePermission":            {{params: params{"role_permission_id": "1"}}},
	"ListRolePermissions":             {{params: params{"role_id": "1"}}},
	"UpdateRolePermission":            {{params: params{"role_permission_id": "1", "permission": "EDIT"}}},
	"AssignRole":                      {{params: params{"username": "bob", "role_id": "1"}}},
	"UnassignRole":                    {{params: params{"username": "bob", "role_id": "1"}}},
	"ListRoleUsers":                   {{params: params{"role_id": "1"}}},
	"CreateUser":                      {{body: `{"username":"x","password":"y"}`}},
	"GetUser":                         {{params: params{"username": "mallory"}}},
	"ListUsers":                       {{}},
	"UpdateUserPassword":              {{params: params{"username": "mallory", "password": "p"}}},
	"UpdateUserAdmin":                 {{body: `{"username":"mallory","is_admin":true}`}},
	"DeleteUser":                      {{body: `{"username":"mallory"}`}},
	"ListWorkspacePermissions":        {{}},
	"WorkspacePermissions":            {{}},
	"ListWorkspaces":                  {{}},
	"CreateWorkspace":                 {{body: `{"name":"ws"}`}},
	"GetWorkspace":                    {{}},
	"UpdateWorkspace":                 {{}},
	"GetExperimentPermission":         {{params: params{"experiment_id": "1", "username": "bob"}}},
	"CreateExperimentPermission":      {{params: params{"experiment_id": "1", "username": "bob", "permission": "READ"}}},
	"UpdateExperimentPermission":      {{params: params{"experiment_id": "1", "username": "bob", "permission": "EDIT"}}},
	"DeleteExperimentPermission":      {{params: params{"experiment_id": "1", "username": "bob"}}},
	"GetRegisteredModelPermission":    {{params: params{"name": model1, "username": "bob"}}},
	"CreateRegisteredModelPermission": {{params: params{"name": model1, "username": "bob", "permission": "READ"}}},
	"UpdateRegisteredModelPermission": {{params: params{"name": model1, "username": "bob", "permission": "EDIT"}}},
	"DeleteRegisteredModelPermission": {{params: params{"name": model1, "username": "bob"}}},
	"GetScorerPermission":             {{params: params{"experiment_id": "1", "scorer_name": scorer1, "username": "bob"}}},
	"CreateScorerPermission":          {{params: params{"experiment_id": "1", "scorer_name": scorer1, "username": "bob", "permission": "READ"}}},
	"UpdateScorerPermission":          {{params: params{"experiment_id": "1", "scorer_name": scorer1, "username": "bob", "permission": "EDIT"}}},
	"DeleteScorerPermission":          {{params: params{"experiment_id": "1", "scorer_name": scorer1, "username": "bob"}}},
	"GetGatewaySecretPermission":      {{params: params{"secret_id": secret1, "username": "bob"}}},
	"CreateGatewaySecretPermission":   {{params: params{"secret_id": secret1, "username": "bob", "permission": "USE"}}},
	"UpdateGatewaySecretPermission":   {{params: params{"secret_id": secret1, "username": "bob", "permission": "EDIT"}}},
	"DeleteGatewaySecretPermission":   {{params: params{"secret_id": secret1, "username": "bob"}}},
	"GetGatewayEndpointPermission":    {{params: params{"endpoint_id": endpoint1, "username": "bob"}}},
	"CreateGatewayEndpointPermission": {{params: params{"endpoint_id": endpoint1, "username": "bob", "permission": "USE"}}},
	"UpdateGatewayEndpointPermission": {{params: params{"endpoint_id": endpoint1, "username": "bob", "permission": "EDIT"}}},
	"DeleteGatewayEndpointPermission": {{params: params{"endpoint_id": endpoint1, "username": "bob"}}},
	"GetGatewayModelDefinitionPermission": {
		{params: params{"model_definition_id": modelDef1, "username": "bob"}},
	},
	"CreateGatewayModelDefinitionPermission": {
		{params: params{"model_definition_id": modelDef1, "username": "bob", "permission": "USE"}},
	},
	"UpdateGatewayModelDefinitionPermission": {
		{params: params{"model_definition_id": modelDef1, "username": "bob", "permission": "EDIT"}},
	},
	"DeleteGatewayModelDefinitionPermission": {
		{params: params{"model_definition_id": modelDef1, "username": "bob"}},
	},

	// GraphQL: each field MLflow's schema exposes that we allow, by the
	// need its document carries.
	"GraphQL": {
		gqlGet("typename only", `{ __typename }`, 0, mlflow.AccessAuthenticated),
		gqlGet("mlflowGetExperiment GET", `{ mlflowGetExperiment(input: {experimentId: "1"}) { experiment { name } } }`, store.Read, 0),
		gql("mlflowGetExperiment", `query Q($id: String!) { mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }`, `{"id":"1"}`, store.Read, 0),
		gql("mlflowGetRun", `query { mlflowGetRun(input: {runId: "`+runA+`"}) { run { info { runId } } } }`, "", store.Read, 0),
		gql("mlflowListArtifacts", `query { mlflowListArtifacts(input: {runUuid: "`+runA+`", path: "x"}) { files { path } } }`, "", store.Read, 0),
		gql("mlflowGetMetricHistoryBulkInterval", `query { mlflowGetMetricHistoryBulkInterval(input: {runIds: ["`+runA+`", "`+runA2+`"], metricKey: "loss"}) { metrics { key } } }`, "", store.Read, 0),
		gql("mlflowSearchModelVersions", `query { mlflowSearchModelVersions(input: {filter: "name='x'"}) { modelVersions { name } } }`, "", 0, mlflow.AccessAuthenticated),
		gql("mlflowSearchRuns query", `query SearchRuns($data: MlflowSearchRunsInput) { mlflowSearchRuns(input: $data) { runs { info { runId } } } }`, `{"data":{"experimentIds":["1"],"maxResults":10}}`, store.Read, 0),
		gql("mlflowSearchRuns", `mutation { mlflowSearchRuns(input: {experimentIds: ["1"]}) { runs { info { runId } } } }`, "", store.Read, 0),
		gql("mlflowSearchDatasets", `mutation { mlflowSearchDatasets(input: {experimentIds: ["1"]}) { datasetSummaries { name } } }`, "", store.Read, 0),
	},
}
