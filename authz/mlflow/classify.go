package mlflow

import (
	"net/http"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// StaticPrefixMode names which of MLflow's routes its --static-prefix
// moves, which changed with MLflow's version.
type StaticPrefixMode string

// Static-prefix modes, the values of apps[].mlflow.static_prefix_mode.
const (
	// StaticPrefixAPI is MLflow 3.12 and later (mlflow#22159:
	// handlers._get_rest_path applies _add_static_prefix): the /api/...
	// routes are served under the prefix as well, and only there.
	StaticPrefixAPI StaticPrefixMode = "api"
	// StaticPrefixAjax is MLflow before 3.12: the prefix moves the UI,
	// /ajax-api/..., /graphql and the UI's Flask routes; /api/... stays at
	// the root.
	StaticPrefixAjax StaticPrefixMode = "ajax"
)

// ParseStaticPrefixMode reads a static_prefix_mode setting; "" is the
// current MLflow's, StaticPrefixAPI.
func ParseStaticPrefixMode(s string) (StaticPrefixMode, bool) {
	switch StaticPrefixMode(s) {
	case "", StaticPrefixAPI:
		return StaticPrefixAPI, true
	case StaticPrefixAjax:
		return StaticPrefixAjax, true
	}
	return "", false
}

// Classifier matches requests against the route table for one MLflow
// mount (its --static-prefix). Its routes are immutable; it is safe for
// concurrent use.
type Classifier struct {
	staticPrefix string
	// apiAtRoot: /api/... is served at the root, not under staticPrefix
	// (StaticPrefixAjax).
	apiAtRoot bool
	exact     [numPrefixes]map[string][]*Route
	templated [numPrefixes][]*Route
	routes    []*Route
	gql       gqlDocs
}

// NewClassifier builds the route index for an MLflow run with staticPrefix
// ("" or a path like "/mlflow", no trailing slash), mounted as mode says
// (ParseStaticPrefixMode validates it; anything but StaticPrefixAjax is
// StaticPrefixAPI). Without a prefix the modes do not differ.
func NewClassifier(staticPrefix string, mode StaticPrefixMode) *Classifier {
	c := &Classifier{staticPrefix: strings.TrimSuffix(staticPrefix, "/"), apiAtRoot: mode == StaticPrefixAjax, routes: routeTable()}
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

// Classify matches req to a route and reads, exactly as MLflow would, the ids
// the route acts on. It is pure: no store, no identity. It is the only step
// that reads the request's parameters; nothing after it does. On a refusal
// it returns a deny; the Operation still carries the matched Route, so that
// an anonymous caller can be told to authenticate first.
func (c *Classifier) Classify(req *authz.Request) (Operation, *authz.Decision) {
	var vars pathVars
	r := c.match(req.Method, req.Path, &vars)
	if r == nil {
		return Operation{}, deny(http.StatusNotFound, authz.ReasonUnknownRoute, "no MLflow endpoint "+req.Method+" "+req.Path+c.prefixHint(req.Path))
	}
	op := Operation{Route: r, Access: r.Access}
	var d *authz.Decision
	switch {
	case r.graphql:
		d = c.needsFromGraphQL(req, &op)
	case len(r.params) > 0 || r.integrity || r.newName != "" || len(r.exclusive) > 0:
		d = needsFromParams(req, &vars, r, &op)
	default:
		// The route reads nothing: its Access is the whole answer (a
		// resource route without params stays one, and is refused later).
		return op, nil
	}
	if d != nil {
		return op, d
	}
	if op.Access == AccessResource && len(op.Needs) == 0 {
		// Only optional ids or an allowed-empty list were absent (runs/search
		// with no experiment_ids, an endpoint without model configs, a
		// GraphQL document of fields that need no id): the request names
		// nothing, so MLflow only needs an authenticated caller.
		op.Access = AccessAuthenticated
	}
	return op, nil
}
