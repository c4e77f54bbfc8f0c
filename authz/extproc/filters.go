package extproc

import (
	"context"
	"slices"
	"strconv"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// The response filters, one per MLflow after-request handler that decides
// what a listing shows (mlflow/server/auth/__init__.py, the newest release
// read: AFTER_REQUEST_PATH_HANDLERS). Each reads MLflow's JSON as MLflow
// writes it (message_to_json: the proto field names in snake_case) and
// decides every row with the same predicate as the point route for that
// row, so a row is listed exactly when it could be opened.
//
// MLflow's newest handlers also consult child tiers (assessment, model
// version, scorer version) that its role model has and ours does not: a
// grant exists only on experiments, registered models, scorers and gateway
// objects. Where a handler falls back from the child tier to its parent,
// the parent decides here, which is what MLflow does for every caller
// without a child-tier grant.

// rowReader is what a filter asks of the permission model: *mlflow.Rows.
type rowReader interface {
	CanRead(ctx context.Context, res store.Resource) (bool, error)
	CanViewWorkspace(ctx context.Context, name string) (bool, error)
}

// responseFilter edits one response body, through d's edits.
type responseFilter func(ctx context.Context, d *jsonDoc, rows rowReader) error

// responseFilters maps a route (mlflow.Route.Name) to its filter.
var responseFilters = map[string]responseFilter{
	// filter_search_experiments: rows whose experiment is unreadable.
	"SearchExperiments": listFilter("experiments", rowByID(store.Experiment, "experiment_id")),
	// filter_search_registered_models: rows whose model (or prompt) is
	// unreadable. The latest_versions of a kept row stay: a version is
	// readable with its model (_withhold_denied_latest_versions falls back
	// to the model).
	"SearchRegisteredModels": listFilter("registered_models", rowByID(store.RegisteredModel, "name")),
	// filter_search_model_versions: versions whose model is unreadable.
	"SearchModelVersions": listFilter("model_versions", rowByID(store.RegisteredModel, "name")),
	// filter_search_logged_models: models whose experiment is unreadable.
	"SearchLoggedModels": listFilter("models", loggedModelRow),
	// filter_list_scorers: scorers whose experiment or whose own grant
	// (scorer_permissions) does not allow READ.
	"ListScorers": listFilter("scorers", scorerRow),
	// filter_list_gateway_secrets, filter_list_gateway_endpoints,
	// filter_list_gateway_model_definitions.
	"ListGatewaySecretInfos":      listFilter("secrets", rowByID(store.GatewaySecret, "secret_id")),
	"ListGatewayEndpoints":        listFilter("endpoints", rowByID(store.GatewayEndpoint, "endpoint_id")),
	"ListGatewayModelDefinitions": listFilter("model_definitions", rowByID(store.GatewayModelDefinition, "model_definition_id")),
	// redact_secrets_config_for_non_admins: whether gateway secrets use the
	// default passphrase is for admins only (admins never reach a filter).
	"GatewaySecretsConfig": dropMembers("using_default_passphrase"),
	// redact_trace_assessments, redact_trace_info_v3_assessments,
	// redact_batch_trace_assessments, redact_batch_trace_info_assessments,
	// redact_search_traces_v3_assessments: a trace's assessments go when
	// its experiment is unreadable.
	"GetTrace":           traceAssessments("trace", true),
	"GetTraceInfoV3":     traceAssessments("trace", true),
	"BatchGetTraces":     traceAssessments("traces", false),
	"BatchGetTraceInfos": traceInfoAssessments("trace_infos"),
	"SearchTracesV3":     traceInfoAssessments("traces"),
	// redact_get_registered_model_versions: the embedded latest_versions go
	// when the model's versions are unreadable.
	"GetRegisteredModel": registeredModelVersions,
	// filter_list_workspaces: workspaces the caller does not see.
	"ListWorkspaces": listFilter("workspaces", workspaceRow),
}

// workspaceRow keeps a Workspace whose name the caller sees.
func workspaceRow(ctx context.Context, d *jsonDoc, row []member, rows rowReader) (bool, error) {
	name, ok, err := stringField(d, row, "name")
	if err != nil || !ok {
		return false, err
	}
	return rows.CanViewWorkspace(ctx, name)
}

// rowFunc decides one row from its members.
type rowFunc func(ctx context.Context, d *jsonDoc, row []member, rows rowReader) (bool, error)

// listFilter drops the rows of the top-level array key that keep refuses.
// MLflow leaves an empty repeated field out of its JSON, so an absent key
// is the empty result; null is read the same way.
func listFilter(key string, keep rowFunc) responseFilter {
	return func(ctx context.Context, d *jsonDoc, rows rowReader) error {
		_, err := d.rootWith(key, func(start int) (int, error) {
			return d.rowsAt(start, 1, func(row []member) (bool, error) {
				return keep(ctx, d, row, rows)
			})
		})
		return err
	}
}

// rowByID keeps a row whose string field key names a readable resource. A
// row without it names nothing anyone could open, and goes.
func rowByID(kind store.ResourceKind, key string) rowFunc {
	return func(ctx context.Context, d *jsonDoc, row []member, rows rowReader) (bool, error) {
		id, ok, err := stringField(d, row, key)
		if err != nil || !ok {
			return false, err
		}
		return rows.CanRead(ctx, store.Resource{Kind: kind, ID: id})
	}
}

// loggedModelRow reads info.experiment_id of a LoggedModel.
func loggedModelRow(ctx context.Context, d *jsonDoc, row []member, rows rowReader) (bool, error) {
	info, ok := find(row, "info")
	if !ok || d.kind(info.val) != '{' {
		return false, nil
	}
	ms, err := d.members(info.val, 3)
	if err != nil {
		return false, err
	}
	return rowByID(store.Experiment, "experiment_id")(ctx, d, ms, rows)
}

// scorerRow keeps a scorer readable through both its experiment and its
// own grant, as filter_list_scorers requires. A Scorer's experiment_id is
// an int32, so MLflow writes it as a JSON number.
func scorerRow(ctx context.Context, d *jsonDoc, row []member, rows rowReader) (bool, error) {
	exp, ok := find(row, "experiment_id")
	if !ok {
		return false, nil
	}
	var id string
	switch d.kind(exp.val) {
	case '"':
		s, err := d.unquote(exp.val)
		if err != nil {
			return false, err
		}
		id = s
	case 'n':
		return false, nil
	default:
		id = string(d.b[exp.val.start:exp.val.end])
	}
	if n, err := strconv.ParseInt(id, 10, 32); err != nil || n < 0 || strconv.FormatInt(n, 10) != id {
		return false, nil
	}
	name, ok, err := stringField(d, row, "scorer_name")
	if err != nil || !ok {
		return false, err
	}
	if ok, err := rows.CanRead(ctx, store.Resource{Kind: store.Experiment, ID: id}); err != nil || !ok {
		return false, err
	}
	return rows.CanRead(ctx, store.Resource{Kind: store.Scorer, ID: id, Name: name})
}

// stringField returns the string member key of an object; ok is false when
// it is absent, null or empty (proto3: an empty string is an unset field).
func stringField(d *jsonDoc, ms []member, key string) (string, bool, error) {
	m, found := find(ms, key)
	if !found {
		return "", false, nil
	}
	s, ok, err := d.text(m.val)
	if err != nil || !ok || s == "" {
		return "", false, err
	}
	return s, true, nil
}

// dropMembers removes top-level members for every non-admin caller.
func dropMembers(keys ...string) responseFilter {
	return func(_ context.Context, d *jsonDoc, _ rowReader) error {
		root, err := d.root()
		if err != nil {
			return err
		}
		d.dropKeys(root, keys...)
		return nil
	}
}

// traceAssessments redacts the Trace (single) or the list of Traces under
// key: each Trace's trace_info is a TraceInfoV3.
func traceAssessments(key string, single bool) responseFilter {
	return func(ctx context.Context, d *jsonDoc, rows rowReader) error {
		root, err := d.root()
		if err != nil {
			return err
		}
		m, ok := find(root, key)
		if !ok || d.kind(m.val) == 'n' {
			return nil
		}
		redact := func(trace span) error {
			if d.kind(trace) != '{' {
				return errMalformed
			}
			ms, err := d.members(trace, 2)
			if err != nil {
				return err
			}
			info, ok := find(ms, "trace_info")
			if !ok || d.kind(info.val) == 'n' {
				return nil
			}
			return redactAssessments(ctx, d, info.val, rows)
		}
		if single {
			return redact(m.val)
		}
		es, err := d.elements(m.val, 1)
		if err != nil {
			return err
		}
		for _, e := range es {
			if err := redact(e); err != nil {
				return err
			}
		}
		return nil
	}
}

// traceInfoAssessments redacts the list of TraceInfoV3 under key.
func traceInfoAssessments(key string) responseFilter {
	return func(ctx context.Context, d *jsonDoc, rows rowReader) error {
		root, err := d.root()
		if err != nil {
			return err
		}
		m, ok := find(root, key)
		if !ok || d.kind(m.val) == 'n' {
			return nil
		}
		es, err := d.elements(m.val, 1)
		if err != nil {
			return err
		}
		for _, e := range es {
			if err := redactAssessments(ctx, d, e, rows); err != nil {
				return err
			}
		}
		return nil
	}
}

// redactAssessments removes the assessments of one TraceInfoV3 whose
// experiment (trace_location.mlflow_experiment.experiment_id) the caller
// cannot read: _withhold_denied_assessments, where the assessment tier
// falls back to the experiment. A trace with no experiment location is
// judged as experiment "", which only the default permission can open,
// as MLflow judges it.
func redactAssessments(ctx context.Context, d *jsonDoc, info span, rows rowReader) error {
	if d.kind(info) != '{' {
		return errMalformed
	}
	ms, err := d.members(info, 3)
	if err != nil {
		return err
	}
	as, ok := find(ms, "assessments")
	if !ok || d.kind(as.val) == 'n' {
		return nil
	}
	exp := ""
	if loc, ok := find(ms, "trace_location"); ok && d.kind(loc.val) == '{' {
		lms, err := d.members(loc.val, 4)
		if err != nil {
			return err
		}
		if mx, ok := find(lms, "mlflow_experiment"); ok && d.kind(mx.val) == '{' {
			xms, err := d.members(mx.val, 5)
			if err != nil {
				return err
			}
			if exp, _, err = stringField(d, xms, "experiment_id"); err != nil {
				return err
			}
		}
	}
	return d.dropUnless(ctx, ms, "assessments", store.Resource{Kind: store.Experiment, ID: exp}, rows)
}

// dropUnless removes member key of an object unless the caller reads res.
func (d *jsonDoc) dropUnless(ctx context.Context, ms []member, key string, res store.Resource, rows rowReader) error {
	readable, err := rows.CanRead(ctx, res)
	if err != nil || readable {
		return err
	}
	d.dropKeys(ms, key)
	return nil
}

// dropKeys removes the members called keys.
func (d *jsonDoc) dropKeys(ms []member, keys ...string) {
	keep := make([]bool, len(ms))
	for i, m := range ms {
		keep[i] = !slices.Contains(keys, string(m.key))
	}
	d.dropMembers(ms, keep)
}

// registeredModelVersions is GetRegisteredModel's redaction of the model's
// embedded latest_versions.
func registeredModelVersions(ctx context.Context, d *jsonDoc, rows rowReader) error {
	root, err := d.root()
	if err != nil {
		return err
	}
	m, ok := find(root, "registered_model")
	if !ok || d.kind(m.val) == 'n' {
		return nil
	}
	if d.kind(m.val) != '{' {
		return errMalformed
	}
	ms, err := d.members(m.val, 1)
	if err != nil {
		return err
	}
	if _, ok := find(ms, "latest_versions"); !ok {
		return nil
	}
	name, _, err := stringField(d, ms, "name")
	if err != nil {
		return err
	}
	return d.dropUnless(ctx, ms, "latest_versions", store.Resource{Kind: store.RegisteredModel, ID: name}, rows)
}
