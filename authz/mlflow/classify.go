package mlflow

import (
	"net/http"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// maxListIDs bounds the ids one request may name: each costs a store
// lookup, and MLflow's own list endpoints cap far lower.
const maxListIDs = 1000

// Classifier matches requests against the route table for one MLflow
// mount (its --static-prefix). It is immutable and safe for concurrent use.
type Classifier struct {
	staticPrefix string
	exact        [numPrefixes]map[string][]*Route
	templated    [numPrefixes][]*Route
	routes       []*Route
}

// NewClassifier builds the route index for an MLflow run with staticPrefix
// ("" or a path like "/mlflow", no trailing slash).
func NewClassifier(staticPrefix string) *Classifier {
	c := &Classifier{staticPrefix: strings.TrimSuffix(staticPrefix, "/"), routes: routeTable()}
	for i := range c.exact {
		c.exact[i] = map[string][]*Route{}
	}
	for _, r := range c.routes {
		for i := 0; i < numPrefixes; i++ {
			if r.prefixes&(1<<i) == 0 {
				continue
			}
			if r.templated() {
				c.templated[i] = append(c.templated[i], r)
			} else {
				c.exact[i][r.Path] = append(c.exact[i][r.Path], r)
			}
		}
	}
	return c
}

// Routes returns the route table rows.
func (c *Classifier) Routes() []*Route { return c.routes }

var defaultClassifier = NewClassifier("")

// Classify is Classifier.Classify for an MLflow without a static prefix.
func Classify(req *authz.Request) (Operation, *authz.Decision) {
	return defaultClassifier.Classify(req)
}

// Classify matches req to a route and reads, exactly as MLflow would, the ids
// the route acts on. It is pure: no store, no identity. On a refusal it
// returns a deny; the Operation still carries the matched Route, so that an
// anonymous caller can be told to authenticate first.
func (c *Classifier) Classify(req *authz.Request) (Operation, *authz.Decision) {
	var vars pathVars
	r := c.match(req.Method, req.Path, &vars)
	if r == nil {
		return Operation{}, deny(http.StatusNotFound, authz.ReasonUnknownRoute, "no MLflow endpoint "+req.Method+" "+req.Path)
	}
	op := Operation{Route: r, Access: r.Access}
	if r.graphql {
		return op, classifyGraphQL(req, &op)
	}
	if len(r.params) == 0 && !r.integrity {
		return op, nil
	}
	rd := reader{req: req, vars: &vars}
	for i := range r.params {
		if d := rd.need(&op, r, &r.params[i]); d != nil {
			return op, d
		}
	}
	if r.integrity {
		if d := rd.claims(&op); d != nil {
			return op, d
		}
	}
	if op.Access == AccessResource && len(op.Needs) == 0 {
		// Only optional ids or an allowed-empty list were absent (runs/search
		// with no experiment_ids, an endpoint without model configs): the
		// request names nothing, so MLflow only needs an authenticated caller.
		op.Access = AccessAuthenticated
	}
	return op, nil
}

func (rd *reader) need(op *Operation, r *Route, p *param) *authz.Decision {
	s, strict := rd.resolveSrc(p)
	if p.src == srcParam && rd.req.Method == http.MethodDelete && s == srcBody {
		q, err := rd.req.Query()
		if err == nil && (hasKey(q, p.name) || hasKey(q, p.alt) || hasKey(q, p.name2)) {
			return deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameter "+p.name+" given both in the query and in the body")
		}
	}
	vals, d := rd.values(s, strict, p)
	if d != nil {
		return d
	}
	if len(vals) == 0 && p.kind == idArtifactPath {
		// Listing the artifact root spans every experiment: upstream falls
		// back to the default permission here (B§9 #6), we to admins.
		op.Access = AccessAdmin
		op.Note = "artifact path outside the <experiment_id>/ layout"
		return nil
	}
	if len(vals) == 0 {
		if p.optional || (p.list && p.empty) {
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
	case idScorer:
		names, d := rd.values(s, strict, &param{name: p.name2, kind: idModel})
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
	for _, v := range vals {
		n, d := needFor(p, v, perm, source)
		if d != nil {
			return d
		}
		op.Needs = append(op.Needs, n)
	}
	return nil
}

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
	}
	return "param"
}
