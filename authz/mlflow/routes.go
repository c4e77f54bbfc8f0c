package mlflow

import (
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Access says what kind of check a route needs before any resource.
type Access uint8

// Access kinds, from most open to most closed.
const (
	// AccessAnyone needs no credential at all (health, static files).
	AccessAnyone Access = iota + 1
	// AccessAuthenticated needs any verified caller.
	AccessAuthenticated
	// AccessCreate needs a verified caller in one of create_groups (if set).
	AccessCreate
	// AccessSelf needs the caller to be the named user, or an admin.
	AccessSelf
	// AccessWorkspace needs the caller to see the workspace the path
	// names, or an admin; with workspaces off, any verified caller.
	AccessWorkspace
	// AccessResource needs a permission on every Need of the operation.
	AccessResource
	// AccessAdmin needs an admin.
	AccessAdmin
)

var accessNames = [...]string{"", "anyone", "authenticated", "create", "self", "workspace", "resource", "admin"}

// String names the access kind as the route table test data spells it.
func (a Access) String() string {
	if int(a) < len(accessNames) {
		return accessNames[a]
	}
	return "invalid"
}

// prefix is one way MLflow mounts a route.
type prefix uint8

const (
	pAPI2  prefix = 1 << iota // /api/2.0
	pAPI3                     // /api/3.0
	pAJAX2                    // <static>/ajax-api/2.0
	pAJAX3                    // <static>/ajax-api/3.0
	pUI                       // <static> only (UI shell, graphql, get-artifact, health)
	pRoot                     // no prefix, never static-prefixed (FastAPI: /v1/traces, /gateway)

	numPrefixes = 6

	v2 = pAPI2 | pAJAX2 // a proto endpoint of version 2 (handlers._get_paths)
	v3 = pAPI3 | pAJAX3
)

// idKind is what an id names, which decides how it is resolved.
type idKind uint8

const (
	idExperiment idKind = iota + 1
	idExperimentName
	idRun
	idTrace
	idAssessment
	idLoggedModel
	idJob
	idIssue
	idDataset
	idModel
	idModelSource
	idScorer
	idSecret
	idEndpoint
	idEndpointName
	idOnlineScorer
	idModelDef
	idArtifactPath
	idUsername
	idWorkspaceName
)

// src is where a parameter is read, as MLflow's handler reads it.
type src uint8

const (
	// srcParam is MLflow's proto-handler rule: GET reads the query, POST and
	// PATCH the JSON body, DELETE the JSON body if there is one, else the
	// query (handlers._get_request_message, auth._get_request_param).
	srcParam  src = iota + 1
	srcQuery      // request.args, whatever the method (Flask-only routes)
	srcBody       // the JSON body, whatever the content type (FastAPI routes)
	srcPath       // a path template variable
	srcHeader     // a request header
	srcOTLP       // the trace ids an OTLP export's spans name (otlp.go)
	// srcArgsOrJSON is MLflow's _get_validated_flask_request_json: the
	// query string when a GET has one, else the JSON body.
	srcArgsOrJSON
)

// param is one id a route reads.
type param struct {
	name     string // query/body key (dotted path with [] for nested body fields), path var or header
	alt      string // fallback key (run_uuid for run_id); both present and different is refused
	kind     idKind
	src      src
	list     bool
	optional bool // absent means no need, instead of a 400
	empty    bool // a list may be empty
	perm     store.Permission
	name2    string // idScorer: the key holding the scorer name
	// byFilter marks ids whose READ the ext_proc filter enforces itself
	// (Need.FilterEnforced).
	byFilter bool
	// filterOptional lets the id be absent when the ext_proc filter is
	// deployed: the request then spans every resource and the filter
	// removes the rows the caller cannot read (a ListScorers without
	// experiment_id). Without the filter, absent is still a 400.
	filterOptional bool
	// ifExists: the id names something MLflow creates when it is absent and
	// merges into when it exists, so only an existing one needs the
	// permission (read past the cache: see Need.IfExists).
	ifExists bool
	// movesTo names the parameter holding the experiment a merge re-homes
	// the resource to; an existing resource elsewhere must be given up.
	movesTo string
	// emptyUnset: an empty string in a list is protobuf's unset field, which
	// MLflow fills in itself, not an id.
	emptyUnset bool
	// namePath and altPath are name and alt split as body paths, once, by
	// routeTable (nil in a param made for one read, split when read).
	namePath, altPath []pathSeg
}

func (p param) opt() param                        { p.optional = true; return p }
func (p param) enforcedByFilter() param           { p.byFilter = true; return p }
func (p param) optionalWithFilter() param         { p.filterOptional = true; return p }
func (p param) ifExisting() param                 { p.ifExists = true; return p }
func (p param) movingTo(dest string) param        { p.movesTo = dest; return p }
func (p param) unsetIfEmpty() param               { p.emptyUnset = true; return p }
func (p param) allowEmpty() param                 { p.empty = true; return p }
func (p param) withPerm(x store.Permission) param { p.perm = x; return p }
func (p param) or(alt string) param               { p.alt = alt; return p }

func pr(kind idKind, s src, name string) param { return param{name: name, kind: kind, src: s} }
func prList(kind idKind, s src, name string) param {
	return param{name: name, kind: kind, src: s, list: true}
}

// Route is one row of the MLflow route table.
type Route struct {
	// Name is the MLflow RPC or Flask view the row stands for.
	Name string
	// Methods are the HTTP methods the row matches.
	Methods []string
	// Path is the pattern after the mount prefix: literal segments, {var}
	// (one segment), {var}suffix, or a final {var...} (one or more segments).
	Path string
	// Access is the kind of check the route needs.
	Access Access
	// Permission is what every id of the route needs, unless a param says otherwise.
	Permission store.Permission

	prefixes  prefix
	params    []param
	graphql   bool
	integrity bool   // runs/create, set-tag, log-batch: identity-integrity claims
	newName   string // body field naming what a create or rename makes, for ownership
	// exclusive names parameters of which the request must give exactly
	// one, as MLflow refuses both or neither (CreatePresignedUploadUrl's
	// run_id or model_id).
	exclusive []string
	segs      []segment
}

// Permission shorthands in MLflow's vocabulary: UPDATE is can_update (EDIT),
// DELETE is can_delete, which only MANAGE has.
const (
	permRead   = store.Read
	permUse    = store.Use
	permUpdate = store.Edit
	permDelete = store.Manage
	permManage = store.Manage
)

func rt(name string, prefixes prefix, methods, path string, access Access, perm store.Permission, params ...param) *Route {
	return &Route{Name: name, Methods: strings.Split(methods, ","), Path: path, Access: access, Permission: perm, prefixes: prefixes, params: params}
}

func anyone(name string, px prefix, methods, path string) *Route {
	return rt(name, px, methods, path, AccessAnyone, 0)
}
func authn(name string, px prefix, methods, path string) *Route {
	return rt(name, px, methods, path, AccessAuthenticated, 0)
}
func admin(name string, px prefix, methods, path string) *Route {
	return rt(name, px, methods, path, AccessAdmin, 0)
}
func res(name string, px prefix, methods, path string, perm store.Permission, params ...param) *Route {
	return rt(name, px, methods, path, AccessResource, perm, params...)
}

// Common parameters.
var (
	expP      = pr(idExperiment, srcParam, "experiment_id")
	expsP     = prList(idExperiment, srcParam, "experiment_ids")
	runP      = pr(idRun, srcParam, "run_id").or("run_uuid")
	modelP    = pr(idModel, srcParam, "name")
	traceP    = pr(idTrace, srcPath, "trace_id")
	requestP  = pr(idTrace, srcPath, "request_id")
	lmP       = pr(idLoggedModel, srcPath, "model_id")
	datasetP  = pr(idDataset, srcPath, "dataset_id")
	jobP      = pr(idJob, srcPath, "job_id")
	issueP    = pr(idIssue, srcPath, "issue_id")
	secretP   = pr(idSecret, srcParam, "secret_id")
	endpointP = pr(idEndpoint, srcParam, "endpoint_id")
	modelDefP = pr(idModelDef, srcParam, "model_definition_id")
	scorerP   = param{name: "experiment_id", name2: "name", kind: idScorer, src: srcParam}
	artP      = pr(idArtifactPath, srcPath, "artifact_path")
)

// startTraceExperiment is where StartTraceV3 writes its trace.
const startTraceExperiment = "trace.trace_info.trace_location.mlflow_experiment.experiment_id"

// routeTable is MLflow's surface as we enforce it: every proto endpoint and
// Flask or FastAPI route, each with the permission MLflow's auth validators
// require (mlflow/server/auth/__init__.py: BEFORE_REQUEST_VALIDATORS and
// its regex tables). Where a later MLflow release closed a hole of the
// 3.11 validators, the later rule applies. A request that matches no row is
// denied. testdata/mlflow-routes.tsv checks every row.
func routeTable() []*Route {
	t := []*Route{
		// Experiments (service.proto, MlflowService).
		rt("CreateExperiment", v2, "POST", "/mlflow/experiments/create", AccessCreate, 0),
		res("GetExperiment", v2, "GET", "/mlflow/experiments/get", permRead, expP),
		res("GetExperimentByName", v2, "GET", "/mlflow/experiments/get-by-name", permRead, pr(idExperimentName, srcParam, "experiment_name")),
		authn("SearchExperiments", v2, "GET,POST", "/mlflow/experiments/search"),
		res("DeleteExperiment", v2, "POST", "/mlflow/experiments/delete", permDelete, expP),
		res("RestoreExperiment", v2, "POST", "/mlflow/experiments/restore", permDelete, expP),
		res("UpdateExperiment", v2, "POST", "/mlflow/experiments/update", permUpdate, expP),
		res("SetExperimentTag", v2, "POST", "/mlflow/experiments/set-experiment-tag", permUpdate, expP),
		res("DeleteExperimentTag", v2, "POST", "/mlflow/experiments/delete-experiment-tag", permUpdate, expP),

		// Runs, metrics, run artifacts. MLflow 3.11 left LogInputs, the
		// presigned upload URL and REST get-history-bulk-interval unchecked;
		// later releases check them, as we do.
		res("CreateRun", v2, "POST", "/mlflow/runs/create", permUpdate, expP),
		res("GetRun", v2, "GET", "/mlflow/runs/get", permRead, runP),
		res("UpdateRun", v2, "POST", "/mlflow/runs/update", permUpdate, runP),
		res("DeleteRun", v2, "POST", "/mlflow/runs/delete", permDelete, runP),
		res("RestoreRun", v2, "POST", "/mlflow/runs/restore", permDelete, runP),
		// A metric, and an input or output, may name a logged model, which
		// MLflow then writes to: UPDATE on each, as its newest validators
		// require (validate_can_log_metric, _log_batch, _log_inputs,
		// _log_outputs); a model may live in another experiment.
		res("LogMetric", v2, "POST", "/mlflow/runs/log-metric", permUpdate, runP, pr(idLoggedModel, srcParam, "model_id").opt()),
		res("LogParam", v2, "POST", "/mlflow/runs/log-parameter", permUpdate, runP),
		res("LogBatch", v2, "POST", "/mlflow/runs/log-batch", permUpdate, runP, prList(idLoggedModel, srcParam, "metrics[].model_id").opt().allowEmpty().unsetIfEmpty()),
		res("LogModel", v2, "POST", "/mlflow/runs/log-model", permUpdate, runP),
		res("SetTag", v2, "POST", "/mlflow/runs/set-tag", permUpdate, runP),
		res("DeleteTag", v2, "POST", "/mlflow/runs/delete-tag", permUpdate, runP),
		res("LogInputs", v2, "POST", "/mlflow/runs/log-inputs", permUpdate, runP, prList(idLoggedModel, srcParam, "models[].model_id").opt().allowEmpty().unsetIfEmpty()),
		res("LogOutputs", v2, "POST", "/mlflow/runs/outputs", permUpdate, runP, prList(idLoggedModel, srcParam, "models[].model_id").opt().allowEmpty().unsetIfEmpty()),
		res("SearchRuns", v2, "POST", "/mlflow/runs/search", permRead, expsP.allowEmpty().enforcedByFilter()),
		res("GetMetricHistory", v2, "GET", "/mlflow/metrics/get-history", permRead, runP),
		res("GetMetricHistoryBulkInterval", v2, "GET", "/mlflow/metrics/get-history-bulk-interval", permRead, prList(idRun, srcQuery, "run_ids")),
		res("ListArtifacts", v2, "GET", "/mlflow/artifacts/list", permRead, runP),
		// Exactly one of run_id or model_id (validate_can_update_run_or_logged_model).
		res("CreatePresignedUploadUrl", v2, "POST", "/mlflow/artifacts/presigned-upload-url", permUpdate, pr(idRun, srcParam, "run_id").opt(), pr(idLoggedModel, srcParam, "model_id").opt()),
		// A download URL reads the run's artifacts straight from the store:
		// READ on the run (after 3.11; BEFORE_REQUEST_HANDLERS maps
		// CreatePresignedDownloadUrl to validate_can_read_run).
		res("CreatePresignedDownloadUrl", v2, "POST", "/mlflow/artifacts/presigned-download-url", permRead, runP),

		// Traces: MLflow 3.11 checked none; later releases check each trace
		// through its experiment, as here.
		res("StartTrace", v2, "POST", "/mlflow/traces", permUpdate, expP),
		res("EndTrace", v2, "PATCH", "/mlflow/traces/{request_id}", permUpdate, requestP),
		res("GetTraceInfo", v2, "GET", "/mlflow/traces/{request_id}/info", permRead, requestP),
		res("SearchTraces", v2, "GET", "/mlflow/traces", permRead, expsP),
		res("SetTraceTag", v2, "PATCH", "/mlflow/traces/{request_id}/tags", permUpdate, requestP),
		res("DeleteTraceTag", v2, "DELETE", "/mlflow/traces/{request_id}/tags", permUpdate, requestP),
		res("DeleteTraces", v2, "POST", "/mlflow/traces/delete-traces", permDelete, expP),
		res("LinkTracesToRun", v2, "POST", "/mlflow/traces/link-to-run", permUpdate, runP, prList(idTrace, srcParam, "trace_ids").withPerm(permRead)),
		res("LinkPromptsToTrace", v2, "POST", "/mlflow/traces/link-prompts", permUpdate, pr(idTrace, srcParam, "trace_id")),
		admin("SearchUnifiedTraces", v2, "GET", "/mlflow/unified-traces"),
		admin("GetOnlineTraceDetails", v2, "GET", "/mlflow/get-online-trace-details"),
		// MLflow's store does not refuse a trace_id that exists: it merges the
		// body into that trace, rewriting its experiment_id, and upserts each
		// assessment by assessment_id wherever it lives
		// (mlflow/store/tracking/sqlalchemy_store.py: start_trace, on
		// IntegrityError). So an existing trace needs EDIT where it is, and
		// DELETE there if the body moves it to another experiment; an
		// existing assessment, or a trace an assessment names, needs EDIT on
		// its experiment. MLflow's newest validator checks the destination
		// only (validate_can_start_trace_v3).
		res("StartTraceV3", v3, "POST", "/mlflow/traces", permUpdate,
			pr(idExperiment, srcParam, startTraceExperiment),
			pr(idTrace, srcParam, "trace.trace_info.trace_id").ifExisting().movingTo(startTraceExperiment),
			prList(idAssessment, srcParam, "trace.trace_info.assessments[].assessment_id").opt().allowEmpty().ifExisting().unsetIfEmpty(),
			prList(idTrace, srcParam, "trace.trace_info.assessments[].trace_id").opt().allowEmpty().ifExisting().unsetIfEmpty()),
		res("GetTraceInfoV3", v3, "GET", "/mlflow/traces/{trace_id}", permRead, traceP),
		res("GetTrace", v3, "GET", "/mlflow/traces/get", permRead, pr(idTrace, srcParam, "trace_id")),
		res("BatchGetTraces", v3, "GET", "/mlflow/traces/batchGet", permRead, prList(idTrace, srcParam, "trace_ids")),
		res("BatchGetTraceInfos", v3, "POST", "/mlflow/traces/batchGetInfos", permRead, prList(idTrace, srcParam, "trace_ids")),
		res("SearchTracesV3", v3, "POST", "/mlflow/traces/search", permRead, prList(idExperiment, srcParam, "locations[].mlflow_experiment.experiment_id")),
		res("DeleteTracesV3", v3, "POST", "/mlflow/traces/delete-traces", permDelete, expP),
		res("SetTraceTagV3", v3, "PATCH", "/mlflow/traces/{trace_id}/tags", permUpdate, traceP),
		res("DeleteTraceTagV3", v3, "DELETE", "/mlflow/traces/{trace_id}/tags", permUpdate, traceP),
		res("CalculateTraceFilterCorrelation", v3, "POST", "/mlflow/traces/calculate-filter-correlation", permRead, expsP),
		res("QueryTraceMetrics", v3, "POST", "/mlflow/traces/metrics", permRead, expsP),

		// Assessments: through the trace they belong to, as later MLflow
		// releases check them.
		res("CreateAssessment", v3, "POST", "/mlflow/traces/{trace_id}/assessments", permUpdate, traceP),
		res("GetAssessment", v3, "GET", "/mlflow/traces/{trace_id}/assessments/{assessment_id}", permRead, traceP),
		res("UpdateAssessment", v3, "PATCH", "/mlflow/traces/{trace_id}/assessments/{assessment_id}", permUpdate, traceP),
		res("DeleteAssessment", v3, "DELETE", "/mlflow/traces/{trace_id}/assessments/{assessment_id}", permUpdate, traceP),

		// Issues and evaluation datasets: through their experiments, as later
		// MLflow releases check them.
		res("CreateIssue", v3, "POST", "/mlflow/issues", permUpdate, expP),
		res("UpdateIssue", v3, "PATCH", "/mlflow/issues/{issue_id}", permUpdate, issueP),
		res("GetIssue", v3, "GET", "/mlflow/issues/{issue_id}", permRead, issueP),
		res("SearchIssues", v3, "POST", "/mlflow/issues/search", permRead, expP),
		// At least one experiment, as validate_can_create_dataset requires.
		res("CreateDataset", v3, "POST", "/mlflow/datasets/create", permUpdate, expsP),
		res("GetDataset", v3, "GET", "/mlflow/datasets/{dataset_id}", permRead, datasetP),
		res("DeleteDataset", v3, "DELETE", "/mlflow/datasets/{dataset_id}", permDelete, datasetP),
		res("SearchEvaluationDatasets", v3, "GET,POST", "/mlflow/datasets/search", permRead, expsP),
		res("SetDatasetTags", v3, "PATCH", "/mlflow/datasets/{dataset_id}/tags", permUpdate, datasetP),
		res("DeleteDatasetTag", v3, "DELETE", "/mlflow/datasets/{dataset_id}/tags/{key}", permUpdate, datasetP),
		res("UpsertDatasetRecords", v3, "POST", "/mlflow/datasets/{dataset_id}/records", permUpdate, datasetP),
		res("GetDatasetRecords", v3, "GET", "/mlflow/datasets/{dataset_id}/records", permRead, datasetP),
		res("DeleteDatasetRecords", v3, "DELETE", "/mlflow/datasets/{dataset_id}/records", permUpdate, datasetP),
		res("GetDatasetExperimentIds", v3, "GET", "/mlflow/datasets/{dataset_id}/experiment-ids", permRead, datasetP),
		res("AddDatasetToExperiments", v3, "POST", "/mlflow/datasets/{dataset_id}/add-experiments", permUpdate, datasetP, expsP),
		res("RemoveDatasetFromExperiments", v3, "POST", "/mlflow/datasets/{dataset_id}/remove-experiments", permUpdate, datasetP, expsP),

		// Review queues and label schemas (after 3.11), through their
		// experiment. MLflow's rules for a queue that a request names by
		// queue_id mix the queue's experiment with its assigned users and
		// owner, and a label schema named by schema_id lives in a table
		// MLflow 3.11 lacks; neither is read here, so those routes are for
		// admins. Listing queues needs EDIT, as MLflow narrows the list of a
		// READ-only caller to their own queues, and opening one by name
		// MANAGE, as MLflow also lets its users and owner in.
		res("CreateReviewQueue", v3, "POST", "/mlflow/review-queues/create", permUpdate, expP),
		res("GetOrCreateUserQueue", v3, "POST", "/mlflow/review-queues/get-or-create-user", permUpdate, expP),
		res("ListReviewQueues", v3, "GET", "/mlflow/review-queues/list", permUpdate, expP),
		res("GetReviewQueueByName", v3, "GET", "/mlflow/review-queues/get-by-name", permManage, expP),
		admin("ReviewQueue", v3, "GET,POST,PATCH,DELETE", "/mlflow/review-queues/{rest...}"),
		res("CreateLabelSchema", v3, "POST", "/mlflow/label-schemas/create", permManage, expP),
		res("ListLabelSchemas", v3, "GET", "/mlflow/label-schemas/list", permRead, expP),
		res("GetLabelSchemaByName", v3, "GET", "/mlflow/label-schemas/get-by-name", permRead, expP),
		admin("LabelSchema", v3, "GET,POST,PATCH,DELETE", "/mlflow/label-schemas/{rest...}"),
		// MCP servers (after 3.11, FastAPI, mcp_server_api.py): their grants
		// are a resource type of MLflow's role tables alone, and MLflow
		// filters the search responses row by row. Admins only.
		admin("MCPServers", v3, "GET,POST", "/mlflow/mcp-servers"),
		admin("MCPServer", v3, "GET,POST,PUT,PATCH,DELETE", "/mlflow/mcp-servers/{rest...}"),

		// Logged models (LOGGED_MODEL_BEFORE_REQUEST_VALIDATORS).
		res("CreateLoggedModel", v2, "POST", "/mlflow/logged-models", permUpdate, expP),
		res("SearchLoggedModels", v2, "POST", "/mlflow/logged-models/search", permRead, expsP.allowEmpty().enforcedByFilter()),
		res("GetLoggedModel", v2, "GET", "/mlflow/logged-models/{model_id}", permRead, lmP),
		res("FinalizeLoggedModel", v2, "PATCH", "/mlflow/logged-models/{model_id}", permUpdate, lmP),
		res("DeleteLoggedModel", v2, "DELETE", "/mlflow/logged-models/{model_id}", permDelete, lmP),
		res("SetLoggedModelTags", v2, "PATCH", "/mlflow/logged-models/{model_id}/tags", permUpdate, lmP),
		res("DeleteLoggedModelTag", v2, "DELETE", "/mlflow/logged-models/{model_id}/tags/{tag_key}", permDelete, lmP),
		res("ListLoggedModelArtifacts", v2, "GET", "/mlflow/logged-models/{model_id}/artifacts/directories", permRead, lmP),
		res("LogLoggedModelParams", v2, "POST", "/mlflow/logged-models/{model_id}/params", permUpdate, lmP),
		res("GetLoggedModelArtifact", pAJAX2, "GET", "/mlflow/logged-models/{model_id}/artifacts/files", permRead, lmP),

		// Model registry and prompts (model_registry.proto).
		rt("CreateRegisteredModel", v2, "POST", "/mlflow/registered-models/create", AccessCreate, 0),
		res("GetRegisteredModel", v2, "GET", "/mlflow/registered-models/get", permRead, modelP),
		res("RenameRegisteredModel", v2, "POST", "/mlflow/registered-models/rename", permUpdate, modelP),
		res("UpdateRegisteredModel", v2, "PATCH", "/mlflow/registered-models/update", permUpdate, modelP),
		res("DeleteRegisteredModel", v2, "DELETE", "/mlflow/registered-models/delete", permDelete, modelP),
		authn("SearchRegisteredModels", v2, "GET", "/mlflow/registered-models/search"),
		res("GetLatestVersions", v2, "GET,POST", "/mlflow/registered-models/get-latest-versions", permRead, modelP),
		res("SetRegisteredModelTag", v2, "POST", "/mlflow/registered-models/set-tag", permUpdate, modelP),
		res("DeleteRegisteredModelTag", v2, "DELETE", "/mlflow/registered-models/delete-tag", permUpdate, modelP),
		res("SetRegisteredModelAlias", v2, "POST", "/mlflow/registered-models/alias", permUpdate, modelP),
		res("DeleteRegisteredModelAlias", v2, "DELETE", "/mlflow/registered-models/alias", permDelete, modelP),
		res("GetModelVersionByAlias", v2, "GET", "/mlflow/registered-models/alias", permRead, modelP),
		// What the version is made from must be readable: the run, the
		// logged model, and a models:/ source's registered model (MLflow
		// 3.11 checked none; validate_can_create_model_version does).
		res("CreateModelVersion", v2, "POST", "/mlflow/model-versions/create", permUpdate, modelP,
			pr(idRun, srcParam, "run_id").opt().withPerm(permRead),
			pr(idLoggedModel, srcParam, "model_id").opt().withPerm(permRead),
			pr(idModelSource, srcParam, "source").opt().withPerm(permRead)),
		res("UpdateModelVersion", v2, "PATCH", "/mlflow/model-versions/update", permUpdate, modelP),
		res("TransitionModelVersionStage", v2, "POST", "/mlflow/model-versions/transition-stage", permUpdate, modelP),
		res("DeleteModelVersion", v2, "DELETE", "/mlflow/model-versions/delete", permDelete, modelP),
		res("GetModelVersion", v2, "GET", "/mlflow/model-versions/get", permRead, modelP),
		authn("SearchModelVersions", v2, "GET", "/mlflow/model-versions/search"),
		res("GetModelVersionDownloadUri", v2, "GET", "/mlflow/model-versions/get-download-uri", permRead, modelP),
		res("SetModelVersionTag", v2, "POST", "/mlflow/model-versions/set-tag", permUpdate, modelP),
		res("DeleteModelVersionTag", v2, "DELETE", "/mlflow/model-versions/delete-tag", permDelete, modelP),

		// Scorers.
		res("RegisterScorer", v3, "POST", "/mlflow/scorers/register", permUpdate, expP),
		res("ListScorers", v3, "GET", "/mlflow/scorers/list", permRead, expP.optionalWithFilter()),
		res("GetScorer", v3, "GET", "/mlflow/scorers/get", permRead, scorerP),
		res("ListScorerVersions", v3, "GET", "/mlflow/scorers/versions", permRead, scorerP),
		res("DeleteScorer", v3, "DELETE", "/mlflow/scorers/delete", permDelete, scorerP),
		// Online-scoring configurations (Flask views without a proto): read
		// through the experiments of each named scorer's configurations, set
		// with UPDATE on the body's experiment
		// (validate_can_read_online_scoring_configs,
		// validate_can_update_online_scoring_config).
		res("GetOnlineScoringConfigs", v3, "GET", "/mlflow/scorers/online-configs", permRead,
			prList(idOnlineScorer, srcArgsOrJSON, "scorer_ids").opt().allowEmpty().ifExisting()),
		res("SetOnlineScoringConfig", v3, "PUT", "/mlflow/scorers/online-config", permUpdate, expP),

		// Prompt optimization jobs, the templated {job_id} routes included
		// (MLflow 3.11's exact-path lookup never matched them).
		res("CreatePromptOptimizationJob", v3, "POST", "/mlflow/prompt-optimization/jobs", permUpdate, expP),
		res("SearchPromptOptimizationJobs", v3, "GET,POST", "/mlflow/prompt-optimization/jobs/search", permRead, expP),
		res("GetPromptOptimizationJob", v3, "GET", "/mlflow/prompt-optimization/jobs/{job_id}", permRead, jobP),
		res("CancelPromptOptimizationJob", v3, "POST", "/mlflow/prompt-optimization/jobs/{job_id}/cancel", permUpdate, jobP),
		res("DeletePromptOptimizationJob", v3, "DELETE", "/mlflow/prompt-optimization/jobs/{job_id}", permDelete, jobP),

		// AI gateway CRUD; guardrails admin-only, as in later MLflow releases.
		authn("CreateGatewaySecret", v3, "POST", "/mlflow/gateway/secrets/create"),
		res("GetGatewaySecretInfo", v3, "GET", "/mlflow/gateway/secrets/get", permRead, secretP),
		res("UpdateGatewaySecret", v3, "POST", "/mlflow/gateway/secrets/update", permUpdate, secretP),
		res("DeleteGatewaySecret", v3, "DELETE", "/mlflow/gateway/secrets/delete", permDelete, secretP),
		authn("ListGatewaySecretInfos", v3, "GET", "/mlflow/gateway/secrets/list"),
		res("CreateGatewayEndpoint", v3, "POST", "/mlflow/gateway/endpoints/create", permUse, prList(idModelDef, srcParam, "model_configs[].model_definition_id").opt().allowEmpty()),
		// By endpoint_id or by name (validate_can_read_gateway_endpoint).
		res("GetGatewayEndpoint", v3, "GET", "/mlflow/gateway/endpoints/get", permRead, endpointP.opt(), pr(idEndpointName, srcParam, "name").opt()),
		res("UpdateGatewayEndpoint", v3, "POST", "/mlflow/gateway/endpoints/update", permUpdate, endpointP, prList(idModelDef, srcParam, "model_configs[].model_definition_id").opt().allowEmpty().withPerm(permUse)),
		res("DeleteGatewayEndpoint", v3, "DELETE", "/mlflow/gateway/endpoints/delete", permDelete, endpointP),
		authn("ListGatewayEndpoints", v3, "GET", "/mlflow/gateway/endpoints/list"),
		// Attaching a model definition uses it: USE on it too
		// (validate_can_attach_model_to_gateway_endpoint).
		res("AttachModelToGatewayEndpoint", v3, "POST", "/mlflow/gateway/endpoints/models/attach", permUpdate, endpointP,
			pr(idModelDef, srcParam, "model_config.model_definition_id").opt().withPerm(permUse)),
		res("DetachModelFromGatewayEndpoint", v3, "POST", "/mlflow/gateway/endpoints/models/detach", permUpdate, endpointP),
		res("CreateGatewayEndpointBinding", v3, "POST", "/mlflow/gateway/endpoints/bindings/create", permUpdate, endpointP),
		res("DeleteGatewayEndpointBinding", v3, "DELETE", "/mlflow/gateway/endpoints/bindings/delete", permUpdate, endpointP),
		res("ListGatewayEndpointBindings", v3, "GET", "/mlflow/gateway/endpoints/bindings/list", permRead, endpointP),
		res("SetGatewayEndpointTag", v3, "POST", "/mlflow/gateway/endpoints/set-tag", permUpdate, endpointP),
		res("DeleteGatewayEndpointTag", v3, "DELETE", "/mlflow/gateway/endpoints/delete-tag", permUpdate, endpointP),
		res("CreateGatewayModelDefinition", v3, "POST", "/mlflow/gateway/model-definitions/create", permUse, secretP.opt()),
		res("GetGatewayModelDefinition", v3, "GET", "/mlflow/gateway/model-definitions/get", permRead, modelDefP),
		authn("ListGatewayModelDefinitions", v3, "GET", "/mlflow/gateway/model-definitions/list"),
		res("UpdateGatewayModelDefinition", v3, "POST", "/mlflow/gateway/model-definitions/update", permUpdate, modelDefP, secretP.opt().withPerm(permUse)),
		res("DeleteGatewayModelDefinition", v3, "DELETE", "/mlflow/gateway/model-definitions/delete", permDelete, modelDefP),
		admin("CreateGatewayBudgetPolicy", v3, "POST", "/mlflow/gateway/budgets/create"),
		admin("UpdateGatewayBudgetPolicy", v3, "POST", "/mlflow/gateway/budgets/update"),
		admin("DeleteGatewayBudgetPolicy", v3, "DELETE", "/mlflow/gateway/budgets/delete"),
		authn("GetGatewayBudgetPolicy", v3, "GET", "/mlflow/gateway/budgets/get"),
		authn("ListGatewayBudgetPolicies", v3, "GET", "/mlflow/gateway/budgets/list"),
		authn("ListGatewayBudgetWindows", v3, "GET", "/mlflow/gateway/budgets/windows"),
		// Guardrails: standalone CRUD is admin only, the endpoint-attached
		// routes go through the endpoint (BEFORE_REQUEST_HANDLERS of the
		// newest MLflow; 3.11 checked none).
		admin("CreateGatewayGuardrail", v3, "POST", "/mlflow/gateway/guardrails/create"),
		admin("GetGatewayGuardrail", v3, "GET", "/mlflow/gateway/guardrails/get"),
		admin("ListGatewayGuardrails", v3, "GET", "/mlflow/gateway/guardrails/list"),
		admin("DeleteGatewayGuardrail", v3, "DELETE", "/mlflow/gateway/guardrails/delete"),
		res("AddGuardrailToEndpoint", v3, "POST", "/mlflow/gateway/guardrails/add-to-endpoint", permUpdate, endpointP),
		res("RemoveGuardrailFromEndpoint", v3, "DELETE", "/mlflow/gateway/guardrails/remove-from-endpoint", permUpdate, endpointP),
		res("UpdateEndpointGuardrailConfig", v3, "PATCH", "/mlflow/gateway/guardrails/update-config", permUpdate, endpointP),
		res("ListEndpointGuardrailConfigs", v3, "GET", "/mlflow/gateway/guardrails/list-for-endpoint", permRead, endpointP),
		authn("GatewaySupportedProviders", pAJAX3, "GET", "/mlflow/gateway/supported-providers"),
		authn("GatewaySupportedModels", pAJAX3, "GET", "/mlflow/gateway/supported-models"),
		authn("GatewayProviderConfig", pAJAX3, "GET", "/mlflow/gateway/provider-config"),
		authn("GatewaySecretsConfig", pAJAX3, "GET", "/mlflow/gateway/secrets/config"),

		// Webhooks (webhooks.proto): admin only, as in MLflow since 3.11.
		admin("CreateWebhook", v2, "POST", "/mlflow/webhooks"),
		admin("ListWebhooks", v2, "GET", "/mlflow/webhooks"),
		admin("Webhook", v2, "GET,PATCH,DELETE", "/mlflow/webhooks/{webhook_id}"),
		admin("TestWebhook", v2, "POST", "/mlflow/webhooks/{webhook_id}/test"),

		// Proxied artifacts (mlflow_artifacts.proto), presigned URLs included:
		// MLflow's _is_proxy_artifact_path does not list the presigned path.
		res("DownloadArtifact", v2, "GET", "/mlflow-artifacts/artifacts/{artifact_path...}", permRead, artP),
		res("UploadArtifact", v2, "PUT", "/mlflow-artifacts/artifacts/{artifact_path...}", permUpdate, artP),
		res("DeleteArtifact", v2, "DELETE", "/mlflow-artifacts/artifacts/{artifact_path...}", permManage, artP),
		res("ListProxiedArtifacts", v2, "GET", "/mlflow-artifacts/artifacts", permRead, pr(idArtifactPath, srcQuery, "path")),
		res("CreateMultipartUpload", v2, "POST", "/mlflow-artifacts/mpu/create/{artifact_path...}", permUpdate, artP),
		res("CompleteMultipartUpload", v2, "POST", "/mlflow-artifacts/mpu/complete/{artifact_path...}", permUpdate, artP),
		res("AbortMultipartUpload", v2, "POST", "/mlflow-artifacts/mpu/abort/{artifact_path...}", permUpdate, artP),
		res("GetPresignedDownloadUrl", v2, "GET", "/mlflow-artifacts/presigned/{artifact_path...}", permRead, artP),

		// Flask-only routes (mlflow/server/__init__.py,
		// mlflow/server/auth/routes.py).
		res("GetArtifact", pUI, "GET", "/get-artifact", permRead, pr(idRun, srcQuery, "run_id").or("run_uuid")),
		res("GetModelVersionArtifact", pUI, "GET", "/model-versions/get-artifact", permRead, pr(idModel, srcQuery, "name")),
		res("UploadRunArtifact", pAJAX2, "POST", "/mlflow/upload-artifact", permUpdate, pr(idRun, srcQuery, "run_id").or("run_uuid")),
		res("GetTraceArtifact", pAJAX2, "GET", "/mlflow/get-trace-artifact", permRead, pr(idTrace, srcQuery, "request_id")),
		res("GetTraceArtifactV3", pAJAX3, "GET", "/mlflow/get-trace-artifact", permRead, pr(idTrace, srcQuery, "request_id").or("trace_id")),
		res("GetMetricHistoryBulk", pAJAX2, "GET", "/mlflow/metrics/get-history-bulk", permRead, prList(idRun, srcQuery, "run_id")),
		// Only the Flask ajax route: the proto's REST path lacks a slash
		// (/api/2.0mlflow/...) and its handler is not implemented.
		res("SearchDatasets", pAJAX2, "POST", "/mlflow/experiments/search-datasets", permRead, expsP),
		res("CreatePromptlabRun", pAJAX2, "POST", "/mlflow/runs/create-promptlab-run", permUpdate, expP),
		authn("GatewayProxy", pAJAX2, "GET,POST", "/mlflow/gateway-proxy"),
		// Applying a scorer, or issue detection, to traces: UPDATE on the
		// experiment (validate_can_invoke_scorer); issue detection also USE
		// on the secret it decrypts (validate_can_invoke_issue_detection).
		// The job then reads every trace named, whatever its experiment,
		// and may write assessments onto it, and calls the gateway endpoint
		// named, unchecked behind the sidecar: EDIT on each trace's
		// experiment and USE on the endpoint too (MLflow checks neither).
		res("InvokeScorer", pAJAX3, "POST", "/mlflow/scorer/invoke", permUpdate, expP, prList(idTrace, srcParam, "trace_ids")),
		authn("UITelemetry", pAJAX3, "GET,POST", "/mlflow/ui-telemetry"),
		authn("ServerInfo", v3, "GET", "/mlflow/server-info"),
		res("InvokeIssueDetection", pAJAX3, "POST", "/mlflow/issues/invoke", permUpdate, expP, prList(idTrace, srcParam, "trace_ids"),
			secretP.opt().withPerm(permUse), pr(idEndpointName, srcParam, "endpoint_name").opt().withPerm(permUse)),
		// An evaluation job over traces (after 3.11): UPDATE on the experiment
		// (INVOKE_GENAI_EVALUATE: validate_can_update_experiment); EDIT on
		// every trace too, as for scorer invoke, since the job reads and
		// annotates each whatever its experiment.
		res("InvokeGenAIEvaluate", pAJAX3, "POST", "/mlflow/genai/evaluate/invoke", permUpdate, expP, prList(idTrace, srcParam, "trace_ids")),
		authn("DemoGenerate", pAJAX3, "POST", "/mlflow/demo/generate"),
		admin("DemoDelete", pAJAX3, "POST", "/mlflow/demo/delete"),
		// Jobs (Flask views, static-prefixed). Every job MLflow runs names
		// its experiment in params (invoke_scorer, issue detection, prompt
		// optimization, online scoring); MLflow's newest rule is the job's
		// creator, a column 3.11's jobs table lacks.
		res("GetJob", pAJAX3, "GET", "/mlflow/jobs/{job_id}", permRead, jobP),
		res("CancelJob", pAJAX3, "PATCH", "/mlflow/jobs/cancel/{job_id}", permUpdate, jobP),
		authn("Version", pUI, "GET", "/version"),
		authn("UI", pUI, "GET", "/"),
		anyone("StaticFiles", pUI, "GET", "/static-files/{path...}"),
		anyone("Health", pUI, "GET", "/health"),
		// MLflow's auth app adds /signup unprefixed (auth.create_app).
		admin("Signup", pRoot, "GET", "/signup"),
		admin("CreateUserUI", pAPI2, "POST", "/mlflow/users/create-ui"),
		{Name: "GraphQL", Methods: []string{"GET", "POST"}, Path: "/graphql", Access: AccessResource, prefixes: pUI, graphql: true},

		// FastAPI-native routes (mlflow/server/fastapi_app.py, checked by
		// MLflow's fastapi_permission_middleware).
		// Spans naming a trace that exists are written into it where it is
		// (sqlalchemy_store.log_spans), so each such trace needs EDIT too;
		// MLflow checks the header's experiment only (_get_otel_validator).
		res("OTLPTraces", pRoot, "POST", "/v1/traces", permUpdate, pr(idExperiment, srcHeader, "x-mlflow-experiment-id"),
			prList(idTrace, srcOTLP, "spans").opt().allowEmpty().ifExisting()),
		res("GatewayInvocations", pRoot, "POST", "/gateway/{endpoint_name}/mlflow/invocations", permUse, pr(idEndpointName, srcPath, "endpoint_name")),
		res("GatewayChatCompletions", pRoot, "POST", "/gateway/mlflow/v1/chat/completions", permUse, pr(idEndpointName, srcBody, "model")),
		res("GatewayOpenAIChatCompletions", pRoot, "POST", "/gateway/openai/v1/chat/completions", permUse, pr(idEndpointName, srcBody, "model")),
		res("GatewayOpenAIEmbeddings", pRoot, "POST", "/gateway/openai/v1/embeddings", permUse, pr(idEndpointName, srcBody, "model")),
		res("GatewayOpenAIResponses", pRoot, "POST", "/gateway/openai/v1/responses", permUse, pr(idEndpointName, srcBody, "model")),
		res("GatewayAnthropicMessages", pRoot, "POST", "/gateway/anthropic/v1/messages", permUse, pr(idEndpointName, srcBody, "model")),
		res("GatewayGeminiGenerate", pRoot, "POST", "/gateway/gemini/v1beta/models/{endpoint_name}:generateContent", permUse, pr(idEndpointName, srcPath, "endpoint_name")),
		res("GatewayGeminiStream", pRoot, "POST", "/gateway/gemini/v1beta/models/{endpoint_name}:streamGenerateContent", permUse, pr(idEndpointName, srcPath, "endpoint_name")),
		// After 3.11: the raw provider proxy names its endpoint in the path
		// (_extract_gateway_endpoint_name, /gateway/proxy/{endpoint_name}/...),
		// and the model list is open to any signed-in user, MLflow then
		// dropping the endpoints the caller may not use from the response.
		res("GatewayRawProxy", pRoot, "GET,POST,PUT,PATCH,DELETE", "/gateway/proxy/{endpoint_name}/{rest...}", permUse, pr(idEndpointName, srcPath, "endpoint_name")),
		authn("GatewayListModels", pRoot, "GET", "/gateway/mlflow/v1/models"),
		// The jobs router (mlflow/server/job_api.py, prefix /ajax-api/3.0/jobs;
		// submit is "/" so its path ends in a slash). Submitting runs any
		// registered job function with the caller's params, in a worker that
		// checks nothing: admin only, as the UI never submits directly.
		res("GetJobFastAPI", pRoot, "GET", "/ajax-api/3.0/jobs/{job_id}", permRead, jobP),
		res("CancelJobFastAPI", pRoot, "PATCH", "/ajax-api/3.0/jobs/cancel/{job_id}", permUpdate, jobP),
		admin("SubmitJob", pRoot, "POST", "/ajax-api/3.0/jobs/"),
		authn("SearchJobs", pRoot, "POST", "/ajax-api/3.0/jobs/search"),
		// The assistant router (mlflow/server/assistant/api.py) runs a coding
		// agent on the server and is localhost-only (_require_localhost);
		// behind the sidecar every request comes from localhost: admin only.
		admin("Assistant", pRoot, "GET,POST,PUT,PATCH", "/ajax-api/3.0/mlflow/assistant/{rest...}"),

		// Auth management (mlflow/server/auth/routes.py; REST only).
		// After 3.11 every user route is mirrored under /ajax-api/2.0 for the
		// UI, and /users/current tells the caller who they are.
		admin("CreateUser", v2, "POST", "/mlflow/users/create"),
		rt("GetUser", v2, "GET", "/mlflow/users/get", AccessSelf, 0, pr(idUsername, srcParam, "username")),
		authn("GetCurrentUser", v2, "GET", "/mlflow/users/current"),
		admin("ListUsers", v2, "GET", "/mlflow/users/list"),
		rt("UpdateUserPassword", v2, "PATCH", "/mlflow/users/update-password", AccessSelf, 0, pr(idUsername, srcParam, "username")),
		admin("UpdateUserAdmin", v2, "PATCH", "/mlflow/users/update-admin"),
		admin("DeleteUser", v2, "DELETE", "/mlflow/users/delete"),
		// The role API of MLflow's auth app after 3.11 (RBAC). Behind
		// mlflow-authz MLflow runs without its auth app, so these routes exist
		// only where an operator keeps it; they are for admins, and a user may
		// read their own roles and grants. MLflow also lets a workspace's
		// admins manage its roles and a resource's MANAGE holders grant on
		// it; here grants are managed through mlflow-authz's admin API and CLI.
		rt("ListUserRoles", v3, "GET", "/mlflow/users/roles/list", AccessSelf, 0, pr(idUsername, srcParam, "username")),
		rt("GetUserPermission", v3, "GET", "/mlflow/users/permissions/get", AccessSelf, 0, pr(idUsername, srcParam, "username")),
		admin("GrantUserPermission", v3, "POST", "/mlflow/users/permissions/grant"),
		admin("RevokeUserPermission", v3, "POST", "/mlflow/users/permissions/revoke"),
		admin("ListWorkspacePermissions", pAPI3, "GET,POST,DELETE", "/mlflow/workspaces/{workspace}/permissions"),
		admin("WorkspacePermissions", pAPI3, "GET", "/mlflow/workspace-permissions"),

		// Workspaces (service.proto). Writes are for admins; a workspace
		// is read by those who see it (validate_can_view_workspace), and
		// the ext_proc filter lists only those (filter_list_workspaces).
		authn("ListWorkspaces", v3, "GET", "/mlflow/workspaces"),
		admin("CreateWorkspace", v3, "POST", "/mlflow/workspaces"),
		rt("GetWorkspace", v3, "GET", "/mlflow/workspaces/{workspace}", AccessWorkspace, 0, pr(idWorkspaceName, srcPath, "workspace")),
		admin("UpdateWorkspace", v3, "PATCH,DELETE", "/mlflow/workspaces/{workspace}"),
	}
	perms := []struct {
		name string
		px   prefix
		path string
		p    param
	}{
		{"Experiment", pAPI2, "/mlflow/experiments/permissions/", expP},
		{"RegisteredModel", pAPI2, "/mlflow/registered-models/permissions/", modelP},
		{"Scorer", pAPI3, "/mlflow/scorers/permissions/", param{name: "experiment_id", name2: "scorer_name", kind: idScorer, src: srcParam}},
		{"GatewaySecret", pAPI3, "/mlflow/gateway/secrets/permissions/", secretP},
		{"GatewayEndpoint", pAPI3, "/mlflow/gateway/endpoints/permissions/", endpointP},
		{"GatewayModelDefinition", pAPI3, "/mlflow/gateway/model-definitions/permissions/", modelDefP},
	}
	verbs := []struct{ op, method string }{{"get", "GET"}, {"create", "POST"}, {"update", "PATCH"}, {"delete", "DELETE"}}
	for _, p := range perms {
		for _, v := range verbs {
			t = append(t, res(strings.ToUpper(v.op[:1])+v.op[1:]+p.name+"Permission", p.px, v.method, p.path+v.op, permManage, p.p))
		}
	}
	// Roles (mlflow/server/auth/__init__.py, _RBAC_ROUTES, after 3.11):
	// admins only, see the user routes above.
	for _, r := range []struct{ name, method, path string }{
		{"CreateRole", "POST", "/mlflow/roles/create"},
		{"GetRole", "GET", "/mlflow/roles/get"},
		{"ListRoles", "GET", "/mlflow/roles/list"},
		{"UpdateRole", "PATCH", "/mlflow/roles/update"},
		{"DeleteRole", "DELETE", "/mlflow/roles/delete"},
		{"AddRolePermission", "POST", "/mlflow/roles/permissions/add"},
		{"RemoveRolePermission", "DELETE", "/mlflow/roles/permissions/remove"},
		{"ListRolePermissions", "GET", "/mlflow/roles/permissions/list"},
		{"UpdateRolePermission", "PATCH", "/mlflow/roles/permissions/update"},
		{"AssignRole", "POST", "/mlflow/roles/assign"},
		{"UnassignRole", "DELETE", "/mlflow/roles/unassign"},
		{"ListRoleUsers", "GET", "/mlflow/roles/users/list"},
	} {
		t = append(t, admin(r.name, v3, r.method, r.path))
	}
	for _, r := range t {
		r.segs = parsePattern(r.Path)
		for i := range r.params {
			p := &r.params[i]
			p.namePath = splitBodyPath(p.name, nil)
			if p.alt != "" {
				p.altPath = splitBodyPath(p.alt, nil)
			}
		}
		switch r.Name {
		case "CreateRun", "SetTag", "LogBatch":
			r.integrity = true
		case "CreateExperiment", "CreateRegisteredModel", "RegisterScorer", "CreateGatewayEndpoint", "CreateGatewayModelDefinition":
			r.newName = "name"
		case "CreateGatewaySecret":
			r.newName = "secret_name"
		case "RenameRegisteredModel":
			r.newName = "new_name"
		case "CreatePresignedUploadUrl":
			r.exclusive = []string{"run_id", "model_id"}
		case "GetGatewayEndpoint":
			r.exclusive = []string{"endpoint_id", "name"}
		}
	}
	return t
}
