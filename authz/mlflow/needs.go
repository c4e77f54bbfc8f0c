package mlflow

import (
	"net/http"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// From parameters to needs: each id a route reads becomes a Need, the
// permission it requires and how the store finds the resource that owns it.

// maxListIDs bounds the ids one request may name: each costs a store
// lookup, and MLflow's own list endpoints cap far lower.
const maxListIDs = 1000

// needsFromParams is Classify's branch for every route but /graphql: it
// reads the route's parameters into op's Needs, then the user names the
// request claims and the name a create or rename gives its object.
func needsFromParams(req *authz.Request, vars *pathVars, r *Route, op *Operation) *authz.Decision {
	rd := reader{req: req, vars: *vars}
	defer rd.release()
	for i := range r.params {
		if d := rd.need(op, r, &r.params[i]); d != nil {
			return d
		}
	}
	if len(r.exclusive) > 0 {
		if d := exactlyOne(op, r.exclusive); d != nil {
			return d
		}
	}
	if r.integrity {
		if d := rd.claims(op); d != nil {
			return d
		}
	}
	if r.newName != "" {
		op.NewName = rd.bodyString(r.newName)
	}
	return nil
}

// exactlyOne refuses a request that names none, or more than one, of the
// parameters in names.
func exactlyOne(op *Operation, names []string) *authz.Decision {
	given := map[string]bool{}
	for _, n := range op.Needs {
		for _, name := range names {
			if n.Param == name {
				given[name] = true
			}
		}
	}
	switch len(given) {
	case 1:
		return nil
	case 0:
		return deny(http.StatusBadRequest, ReasonMissingParameter, "one of "+strings.Join(names, ", ")+" is required")
	}
	return deny(http.StatusBadRequest, ReasonDuplicateParameter, "give only one of "+strings.Join(names, ", "))
}

// need reads route parameter p and adds what it requires to op: Needs, or
// the Username of an AccessSelf route, or an Access made stricter.
func (rd *reader) need(op *Operation, r *Route, p *param) *authz.Decision {
	s, strict := rd.resolveSrc(p)
	if p.src == srcParam && rd.req.Method == http.MethodDelete && s == srcBody {
		q, err := rd.req.Query()
		if err == nil && (hasKey(q, p.name) || hasKey(q, p.alt) || hasKey(q, p.name2)) {
			return deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameter "+p.name+" given both in the query and in the body")
		}
	}
	var buf [2]string // the values, unless there are more
	vals, d := rd.values(s, strict, p, buf[:0])
	if d != nil {
		return d
	}
	if len(vals) == 0 && p.kind == idArtifactPath {
		// Listing the artifact root spans every experiment. MLflow's proxy
		// artifact validator (mlflow/server/auth/__init__.py:
		// _get_proxy_artifact_validator) falls back to the default
		// permission for a path that does not start with an experiment id
		// (mlflow/mlflow#13832); we require an admin.
		op.Access = AccessAdmin
		op.Note = "artifact path outside the <experiment_id>/ layout"
		return nil
	}
	if len(vals) == 0 {
		if p.optional || (p.list && p.empty) {
			return nil
		}
		if p.filterOptional {
			op.NeedsFilter = true
			return nil
		}
		if p.list {
			return deny(http.StatusBadRequest, ReasonMissingParameter, "at least one "+p.name+" is required")
		}
		return deny(http.StatusBadRequest, ReasonMissingParameter, "missing required parameter "+p.name)
	}
	if len(vals) > maxListIDs {
		return badParam("too many ids in " + p.name)
	}
	perm := r.Permission
	if p.perm != 0 {
		perm = p.perm
	}
	source := srcName(s)
	switch p.kind {
	case idUsername:
		op.Username = vals[0]
		return nil
	case idWorkspaceName:
		op.ViewWorkspace = vals[0]
		return nil
	case idScorer:
		var nameBuf [1]string
		names, d := rd.values(s, strict, &param{name: p.name2, kind: idModel}, nameBuf[:0])
		if d != nil {
			return d
		}
		if len(names) == 0 {
			return deny(http.StatusBadRequest, ReasonMissingParameter, "missing required parameter "+p.name2)
		}
		if !validExperimentID(vals[0]) {
			return badParam("experiment_id must be a decimal experiment id")
		}
		op.Needs = append(op.Needs, Need{Resource: store.Resource{Kind: store.Scorer, ID: vals[0], Name: names[0]}, Permission: perm, Source: source, Param: p.name + "," + p.name2})
		return nil
	case idModelSource:
		n, ok, d := modelSourceNeed(vals[0], perm, source)
		if d != nil {
			return d
		}
		if ok {
			op.Needs = append(op.Needs, n)
		}
		return nil
	case idArtifactPath:
		exp, ok := artifactExperiment(vals[0])
		if !ok {
			if !safeArtifactPath(vals[0]) {
				return badParam("artifact path is not a safe relative path")
			}
			op.Access = AccessAdmin
			op.Note = "artifact path outside the <experiment_id>/ layout"
			return nil
		}
		if s == srcQuery && !safeArtifactPath(vals[0]) {
			return badParam("artifact path is not a safe relative path")
		}
		op.Needs = append(op.Needs, Need{Lookup: store.ExperimentByID, Key: exp, Resource: store.Resource{Kind: store.Experiment}, Permission: perm, Source: source, Param: p.name})
		return nil
	}
	movedTo := ""
	if p.movesTo != "" {
		// The destination was read first (the route lists it first);
		// without one there is nothing the move could be checked against.
		for _, n := range op.Needs {
			if n.Param == p.movesTo {
				movedTo = n.Key
			}
		}
		if movedTo == "" {
			return deny(http.StatusBadRequest, ReasonMissingParameter, "missing required parameter "+p.movesTo)
		}
	}
	for _, v := range vals {
		n, d := needFor(p, v, perm, source)
		if d != nil {
			return d
		}
		n.FilterEnforced = p.byFilter
		n.IfExists, n.MovedTo = p.ifExists, movedTo
		op.Needs = append(op.Needs, n)
	}
	return nil
}

// needFor turns one id of kind p.kind into a Need: ids owned by an
// experiment (or a gateway endpoint) get the Lookup that finds the owner,
// resources with grants of their own are checked as they are.
func needFor(p *param, v string, perm store.Permission, source string) (Need, *authz.Decision) {
	n := Need{Key: v, Permission: perm, Source: source, Param: p.name, Resource: store.Resource{Kind: store.Experiment}}
	switch p.kind {
	case idExperiment:
		if !validExperimentID(v) {
			return n, badParam(p.name + " must be a decimal experiment id")
		}
		n.Lookup = store.ExperimentByID
	case idExperimentName:
		n.Lookup = store.ExperimentByName
	case idRun:
		n.Lookup = store.RunExperiment
	case idTrace:
		n.Lookup = store.TraceExperiment
	case idAssessment:
		n.Lookup = store.AssessmentExperiment
	case idLoggedModel:
		n.Lookup = store.LoggedModelExperiment
	case idJob:
		n.Lookup = store.JobExperiment
	case idIssue:
		n.Lookup = store.IssueExperiment
	case idDataset:
		n.Lookup = store.DatasetExperiments
	case idEndpointName:
		n.Lookup = store.GatewayEndpointByName
		n.Resource.Kind = store.GatewayEndpoint
	case idOnlineScorer:
		n.Lookup = store.OnlineScoringExperiments
	case idModel:
		n.Key, n.Resource = "", store.Resource{Kind: store.RegisteredModel, ID: v}
	case idSecret:
		n.Key, n.Resource = "", store.Resource{Kind: store.GatewaySecret, ID: v}
	case idEndpoint:
		n.Key, n.Resource = "", store.Resource{Kind: store.GatewayEndpoint, ID: v}
	case idModelDef:
		n.Key, n.Resource = "", store.Resource{Kind: store.GatewayModelDefinition, ID: v}
	default:
		return n, badParam("unsupported parameter " + p.name)
	}
	return n, nil
}

// modelSourceNeed reads a model version's source as MLflow's is_models_uri
// and _parse_model_uri do (mlflow/utils/uri.py,
// mlflow/store/artifact/utils/models.py): a models:/ URI names a registered
// model (models:/name/version, /stage, /latest, models:/name@alias) or a
// logged model (models:/model_id), which must then be readable. Any other
// source names no registered object (ok false). A models: URI that Python's
// urlparse could read in another way than the plain form is refused.
func modelSourceNeed(src string, perm store.Permission, source string) (Need, bool, *authz.Decision) {
	trimmed := strings.TrimLeft(src, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
	if len(trimmed) < len("models:") || !strings.EqualFold(trimmed[:len("models:")], "models:") {
		return Need{}, false, nil
	}
	bad := func() (Need, bool, *authz.Decision) {
		return Need{}, false, badParam("source is a models: URI MLflow would not read as models:/<name>/<version or stage>, models:/<name>@<alias> or models:/<model_id>")
	}
	if trimmed != src || strings.ContainsAny(src, "?#\\ \t\r\n") {
		return bad()
	}
	path := src[len("models:"):]
	if rest, ok := strings.CutPrefix(path, "//"); ok {
		// A netloc (a Databricks profile): the path follows it.
		_, path, _ = strings.Cut(rest, "/")
		path = "/" + path
	}
	if len(path) <= 1 || path[0] != '/' {
		return bad()
	}
	parts := strings.Split(path[1:], "/")
	if len(parts) > 2 || strings.TrimSpace(parts[0]) == "" {
		return bad()
	}
	p, name := &param{name: "source", kind: idModel}, parts[0]
	switch {
	case len(parts) == 2:
		if strings.TrimSpace(parts[1]) == "" {
			return bad()
		}
	case strings.Contains(name, "@"):
		i := strings.LastIndexByte(name, '@')
		if strings.TrimSpace(name[i+1:]) == "" {
			return bad()
		}
		name = name[:i]
	default:
		p.kind = idLoggedModel
	}
	if !validID(name) {
		return bad()
	}
	n, d := needFor(p, name, perm, source)
	return n, d == nil, d
}

// srcName names a parameter source for Need.Source and the explain trace.
func srcName(s src) string {
	switch s {
	case srcQuery:
		return "query"
	case srcBody:
		return "body"
	case srcPath:
		return "path"
	case srcHeader:
		return "header"
	case srcOTLP:
		return "otlp"
	case srcArgsOrJSON:
		return "args_or_json"
	}
	return "param"
}
