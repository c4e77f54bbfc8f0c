package mlflow

import (
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

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

// reader reads parameters of one request, parsing the query and body at
// most once and only when a route reads them.
type reader struct {
	req      *authz.Request
	vars     *pathVars
	body     map[string]any
	bodyDone bool
	bodyDeny *authz.Decision
}

// loadBody parses the JSON body. strictType applies Flask's POST rule:
// MLflow refuses a POST whose Content-Type is not application/json.
func (rd *reader) loadBody(strictType bool) (map[string]any, *authz.Decision) {
	if strictType && !isJSONType(rd.req.Header("content-type")) {
		return nil, deny(http.StatusBadRequest, ReasonUnsupportedContentType, "MLflow reads this endpoint's parameters from a JSON body; send Content-Type: application/json")
	}
	if rd.bodyDone {
		return rd.body, rd.bodyDeny
	}
	rd.bodyDone = true
	switch {
	case rd.req.BodyTruncated:
		rd.bodyDeny = deny(http.StatusRequestEntityTooLarge, authz.ReasonBodyTruncated, "the request body is too large to check the ids it names")
	case len(rd.req.Body) == 0:
		rd.body = map[string]any{}
	default:
		m, err := parseJSONObject(rd.req.Body)
		switch err {
		case nil:
			rd.body = m
		case errJSONDuplicate:
			rd.bodyDeny = deny(http.StatusBadRequest, ReasonDuplicateParameter, "duplicate key in the JSON body")
		default:
			rd.bodyDeny = deny(http.StatusBadRequest, ReasonInvalidJSON, "the body is not a JSON object MLflow could read: "+strings.TrimPrefix(err.Error(), "mlflow: "))
		}
	}
	return rd.body, rd.bodyDeny
}

func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// resolveSrc turns MLflow's method-dependent rule into query or body.
func (rd *reader) resolveSrc(p *param) (src, bool) {
	if p.src != srcParam {
		return p.src, false
	}
	switch rd.req.Method {
	case http.MethodGet:
		return srcQuery, false
	case http.MethodPost, http.MethodPut:
		return srcBody, true
	case http.MethodDelete:
		// MLflow's proto handlers parse a DELETE body whatever its
		// Content-Type, while its auth app reads the query unless the type
		// is JSON. A body therefore always wins, and the id must not also
		// be in the query (checked by the caller).
		if len(rd.req.Body) > 0 || rd.req.BodyTruncated {
			return srcBody, false
		}
		return srcQuery, false
	default: // PATCH: parsed whatever the Content-Type (get_json(force=True))
		return srcBody, false
	}
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

func hasKey(q url.Values, k string) bool {
	if k == "" {
		return false
	}
	if _, ok := q[k]; ok {
		return true
	}
	if c := camel(k); c != k {
		_, ok := q[c]
		return ok
	}
	return false
}

// values reads p's values from s. Single-valued parameters yield at most
// one value; every ambiguity is a 400.
func (rd *reader) values(s src, strict bool, p *param) ([]string, *authz.Decision) {
	switch s {
	case srcPath:
		v := rd.vars.get(p.name)
		if v == "" {
			return nil, nil
		}
		// An artifact path was checked by CanonicalPath and may be long.
		if p.kind != idArtifactPath && !validID(v) {
			return nil, badParam(p.name + " is not a valid id")
		}
		return []string{v}, nil
	case srcHeader:
		v := rd.req.Header(p.name)
		if v == "" {
			return nil, deny(http.StatusBadRequest, ReasonMissingParameter, "missing required header "+p.name)
		}
		return []string{v}, nil
	case srcQuery:
		q, err := rd.req.Query()
		if err != nil {
			return nil, badParam("the query string cannot be parsed unambiguously")
		}
		return queryValues(q, p)
	default:
		body, d := rd.loadBody(strict)
		if d != nil {
			return nil, d
		}
		return bodyValues(body, p)
	}
}

func queryValues(q url.Values, p *param) ([]string, *authz.Decision) {
	get := func(k string) ([]string, *authz.Decision) {
		if k == "" {
			return nil, nil
		}
		vs := q[k]
		if c := camel(k); c != k {
			if _, both := q[c]; both {
				if len(vs) > 0 {
					return nil, deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameter "+k+" given in both spellings ("+k+", "+c+")")
				}
				// MLflow reads only the proto field name from the query;
				// a lone camel spelling is ignored by it, so by us too.
			}
		}
		if !p.list && len(vs) > 1 {
			return nil, deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameter "+k+" repeated in the query")
		}
		out := vs[:0:0]
		for _, v := range vs {
			if v == "" {
				if p.list {
					return nil, badParam("empty value in " + k)
				}
				continue
			}
			if p.kind == idArtifactPath {
				if len(v) > authz.MaxPathLength || !utf8.ValidString(v) {
					return nil, badParam(k + " is not a valid path")
				}
			} else if !validID(v) {
				return nil, badParam(k + " is not a valid id")
			}
			out = append(out, v)
		}
		return out, nil
	}
	a, d := get(p.name)
	if d != nil {
		return nil, d
	}
	b, d := get(p.alt)
	if d != nil {
		return nil, d
	}
	return pickAlt(p, a, b)
}

// pickAlt applies the run_id → run_uuid fallback, refusing two different ids.
func pickAlt(p *param, a, b []string) ([]string, *authz.Decision) {
	if len(b) == 0 {
		return a, nil
	}
	if len(a) == 0 {
		return b, nil
	}
	if len(a) != 1 || len(b) != 1 || a[0] != b[0] {
		return nil, deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameters "+p.name+" and "+p.alt+" name different ids")
	}
	return a, nil
}

func bodyValues(body map[string]any, p *param) ([]string, *authz.Decision) {
	a, d := jsonPathValues(body, p.name, p.list)
	if d != nil {
		return nil, d
	}
	var b []string
	if p.alt != "" {
		if b, d = jsonPathValues(body, p.alt, p.list); d != nil {
			return nil, d
		}
	}
	return pickAlt(p, a, b)
}

// jsonPathValues reads the strings at path ("a.b[].c") in m. Each key may be
// spelled in snake or camel case, as protobuf's JSON parser accepts both;
// both at once is refused. A non-string where an id belongs is refused: a
// JSON number for a string field is rejected by MLflow's parser, and we
// would rather not guess how.
func jsonPathValues(m map[string]any, path string, list bool) ([]string, *authz.Decision) {
	var out []string
	var walk func(v any, rest string) *authz.Decision
	walk = func(v any, rest string) *authz.Decision {
		seg, tail, more := strings.Cut(rest, ".")
		key, isList := strings.CutSuffix(seg, "[]")
		obj, ok := v.(map[string]any)
		if !ok {
			return badParam("expected an object at " + key)
		}
		val, present, d := lookupKey(obj, key)
		if d != nil || !present || val == nil {
			return d
		}
		last := !more
		switch {
		case isList:
			arr, ok := val.([]any)
			if !ok {
				return badParam(key + " must be a list")
			}
			for _, e := range arr {
				if last {
					s, ok := e.(string)
					if !ok {
						return badParam(key + " must hold strings")
					}
					out = append(out, s)
					continue
				}
				if d := walk(e, tail); d != nil {
					return d
				}
			}
		case !last:
			return walk(val, tail)
		case list && !strings.Contains(path, "[]"):
			arr, ok := val.([]any)
			if !ok {
				return badParam(key + " must be a list of strings")
			}
			for _, e := range arr {
				s, ok := e.(string)
				if !ok {
					return badParam(key + " must be a list of strings")
				}
				out = append(out, s)
			}
		default:
			s, ok := val.(string)
			if !ok {
				return badParam(key + " must be a string")
			}
			out = append(out, s)
		}
		return nil
	}
	if d := walk(m, path); d != nil {
		return nil, d
	}
	if !list && len(out) > 1 {
		return nil, deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameter "+path+" has several values")
	}
	res := out[:0]
	for _, s := range out {
		if s == "" {
			if list {
				return nil, badParam("empty value in " + path)
			}
			continue // proto: an empty string is an unset field
		}
		if !validID(s) {
			return nil, badParam(path + " is not a valid id")
		}
		res = append(res, s)
	}
	return res, nil
}

func lookupKey(obj map[string]any, key string) (any, bool, *authz.Decision) {
	v, ok := obj[key]
	if c := camel(key); c != key {
		if cv, cok := obj[c]; cok {
			if ok {
				return nil, false, deny(http.StatusBadRequest, ReasonDuplicateParameter, "field "+key+" given in both spellings ("+key+", "+c+")")
			}
			return cv, true, nil
		}
	}
	return v, ok, nil
}

// camel is protobuf's json_name for a snake_case field name.
func camel(s string) string {
	if strings.IndexByte(s, '_') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	up := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			up = true
			continue
		}
		if up && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b.WriteByte(c)
	}
	return b.String()
}

// validExperimentID accepts what MLflow's int() and the auth tables' string
// comparison agree on: ASCII digits, no sign, no leading zero, no spaces, no
// Unicode digits, at most 18 digits (so it fits every integer column).
func validExperimentID(s string) bool {
	if s == "" || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validID bounds an opaque id (run, trace, model name…): non-empty, short,
// valid UTF-8, no control characters and no U+FFFD (a decoder's replacement
// would make two readers see different ids).
func validID(s string) bool {
	if s == "" || len(s) > 1024 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// artifactExperiment takes the experiment id from a proxied artifact path in
// MLflow's default layout, <experiment_id>/<run_id>/artifacts/...
func artifactExperiment(p string) (string, bool) {
	exp, rest, ok := strings.Cut(p, "/")
	if !ok || rest == "" || !validExperimentID(exp) {
		return "", false
	}
	return exp, true
}

func safeArtifactPath(p string) bool {
	if p == "" || p[0] == '/' || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// claims collects the user names a run-writing request asks MLflow to
// record. Both spellings of one of these fields is refused like any other
// id: protobuf would pick one, and the check must see the one it picks.
func (rd *reader) claims(op *Operation) *authz.Decision {
	body, d := rd.loadBody(false)
	if d != nil {
		return d
	}
	str := func(v any) string { s, _ := v.(string); return s }
	get := func(m map[string]any, k string) (string, *authz.Decision) {
		v, _, d := lookupKey(m, k)
		return str(v), d
	}
	userID, d := get(body, "user_id")
	if d != nil {
		return d
	}
	if userID != "" {
		op.ClaimedUsers = append(op.ClaimedUsers, userID)
	}
	key, d := get(body, "key")
	if d != nil {
		return d
	}
	if key == mlflowUserTag {
		v, d := get(body, "value")
		if d != nil {
			return d
		}
		if v != "" {
			op.ClaimedUsers = append(op.ClaimedUsers, v)
		}
	}
	tags, _ := body["tags"].([]any)
	for _, t := range tags {
		m, ok := t.(map[string]any)
		if !ok {
			continue
		}
		if str(m["key"]) == mlflowUserTag && str(m["value"]) != "" {
			op.ClaimedUsers = append(op.ClaimedUsers, str(m["value"]))
		}
	}
	return nil
}

const mlflowUserTag = "mlflow.user"
