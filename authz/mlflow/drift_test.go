package mlflow

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The drift test holds the route table to MLflow's own source: every route
// an extraction of MLflow (tools/mlflow-routes, testdata/mlflow-source) lists
// must map to a row of the table that needs the same access, permissions and
// parameters as MLflow's validator for it, or be listed in deviations
// (deviations_test.go) with the reason. The deviations list is the README's
// table: -update rewrites that table from it.

var updateREADME = flag.Bool("update", false, "rewrite the README's deviations table from deviations_test.go")

// extraction is the part of an extract.py output file the test reads.
type extraction struct {
	Label  string `json:"label"`
	MLflow struct {
		Commit  string `json:"commit"`
		Version string `json:"version"`
	} `json:"mlflow"`
	Routes []struct {
		App, Method, Path, View string
		StaticPrefix            bool `json:"static_prefix"`
	} `json:"routes"`
	Tables                 map[string][]tableRow                     `json:"tables"`
	Validators             []validatorFacts                          `json:"validators"`
	FindValidator          []struct{ Uses []string }                 `json:"find_validator"`
	UnprotectedPrefixes    []struct{ Prefix string }                 `json:"unprotected_prefixes"`
	ProxyArtifactPrefixes  []struct{ Prefix string }                 `json:"proxy_artifact_prefixes"`
	ProxyArtifactValidator []struct{ Function, When string }         `json:"proxy_artifact_validator"`
	FastAPIPermissionRules []struct{ Function, Prefix, Else string } `json:"fastapi_permission_rules"`
	GraphQLSchema          struct {
		Fields []struct {
			Field, Root string
			Args        map[string]struct{ Fields []string }
		}
	} `json:"graphql_schema"`
}

type tableRow struct {
	Function, Method, Path, Pattern string
}

type validatorFacts struct {
	Function    string
	Verdict     string
	Permissions []string
	Params      []struct{ Source, Key string }
	EnvSwitches []string `json:"env_switches"`
}

// contractFiles are the extractions the table is held to (README of
// tools/mlflow-routes): the 3.11 baseline and the newest master read.
func loadExtractions(t *testing.T) []*extraction {
	t.Helper()
	files, err := filepath.Glob("testdata/mlflow-source/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no MLflow extraction in testdata/mlflow-source")
	var out []*extraction
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var e extraction
		require.NoError(t, json.Unmarshal(b, &e), f)
		require.NotEmpty(t, e.Routes, f)
		out = append(out, &e)
	}
	return out
}

// expectedFindValidator is the order in which MLflow's _find_validator
// consults its tables (mlflow/server/auth/__init__.py), which mlflowRule
// re-enacts. An extraction that reads another order fails the test: the
// re-enactment must be brought up to date first.
var expectedFindValidator = [][]string{
	{"LOGGED_MODEL_BEFORE_REQUEST_VALIDATORS"},
	{"WEBHOOK_BEFORE_REQUEST_VALIDATORS"},
	{"BEFORE_REQUEST_VALIDATORS"},
	{"MLFLOW_ENABLE_WORKSPACES", "_get_workspace_validator"},
	nil,
	nil,
	nil,
}

// rule is one side's decision for a route, normalised so MLflow's
// validator facts and a row of our table compare as strings: access,
// permissions, and the parameters read as source:key (the top-level key).
type rule struct {
	access string
	perms  []string
	params []string
}

func (r rule) String() string {
	s := r.access
	if len(r.perms) > 0 {
		s += " " + strings.Join(r.perms, "+")
	}
	if len(r.params) > 0 {
		s += " " + strings.Join(r.params, ",")
	}
	return s
}

var pathVarRE = regexp.MustCompile(`<(?:[a-z]+:)?([a-zA-Z_]+)>|\{([a-zA-Z_]+)(?::[a-z]+)?\}`)

// concrete fills a route template's variables with sample ids.
func concrete(tmpl string) (string, []string) {
	var vars []string
	out := pathVarRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		sub := pathVarRE.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		vars = append(vars, name)
		if strings.Contains(m, "path") {
			return "1/r1/artifacts/f"
		}
		return "x1"
	})
	return out, vars
}

// paramSource names where a parameter is read, MLflow's way: a proto
// parameter by the method's rule, a path variable as path.
func paramSource(method string) string {
	switch method {
	case "GET":
		return "query"
	case "DELETE":
		return "param"
	}
	return "body"
}

var permNames = map[string]string{"can_read": "READ", "can_use": "USE", "can_update": "EDIT", "can_delete": "MANAGE", "can_manage": "MANAGE"}

// mlflowRule re-enacts MLflow's _before_request for one route with
// workspaces off and no static prefix, from the extraction's tables and
// validator facts.
func mlflowRule(e *extraction, app, method, tmpl string) rule {
	path, vars := concrete(tmpl)
	if app == "fastapi" {
		for _, r := range e.FastAPIPermissionRules {
			if r.Prefix != "" && strings.HasPrefix(path, r.Prefix) {
				return e.validatorRule(r.Function, method, vars)
			}
		}
		return rule{access: "authenticated"}
	}
	for _, p := range e.UnprotectedPrefixes {
		if strings.HasPrefix(path, p.Prefix) {
			return rule{access: "anyone"}
		}
	}
	regexTable := func(name string) string {
		for _, r := range e.Tables[name] {
			if r.Method == method && regexp.MustCompile("^(?:"+r.Pattern+")$").MatchString(path) {
				return r.Function
			}
		}
		return ""
	}
	fn := ""
	switch {
	case strings.Contains(path, "/mlflow/logged-models"):
		fn = regexTable("LOGGED_MODEL_BEFORE_REQUEST_VALIDATORS")
	case strings.Contains(path, "/mlflow/webhooks"):
		fn = regexTable("WEBHOOK_BEFORE_REQUEST_VALIDATORS")
	default:
		for _, r := range e.Tables["BEFORE_REQUEST_VALIDATORS"] {
			if r.Path == path && r.Method == method {
				fn = r.Function
			}
		}
		if fn == "" && strings.Contains(path, "/workspaces/") {
			fn = regexTable("WORKSPACE_PARAMETERIZED_BEFORE_REQUEST_VALIDATORS")
		}
	}
	if fn == "" {
		for _, p := range e.ProxyArtifactPrefixes {
			if strings.HasPrefix(path, p.Prefix) {
				for _, v := range e.ProxyArtifactValidator {
					if (len(vars) == 0 && v.When == "view_args is None") || v.When == "method == '"+method+"'" {
						return e.validatorRule(v.Function, method, vars)
					}
				}
				return rule{access: "authenticated"}
			}
		}
		return rule{access: "authenticated"} // no validator: any authenticated caller
	}
	return e.validatorRule(fn, method, vars)
}

func (e *extraction) validatorRule(fn, method string, vars []string) rule {
	var v *validatorFacts
	for i := range e.Validators {
		if e.Validators[i].Function == fn {
			v = &e.Validators[i]
		}
	}
	if v == nil {
		return rule{access: "unknown-validator:" + fn}
	}
	switch v.Verdict {
	case "allow", "view_function":
		// A view function in a validator table runs and returns a truthy
		// response: any authenticated caller passes.
		return rule{access: "authenticated"}
	case "admin", "deny_unless_admin":
		return rule{access: "admin"}
	case "self_or_admin":
		return rule{access: "self", params: mlflowParams(v, method, vars)}
	case "permission":
		if len(v.Params) == 0 && slices.Contains(v.EnvSwitches, "MLFLOW_ENABLE_WORKSPACES") {
			// validate_can_create_*: a workspace permission, open with
			// workspaces off.
			return rule{access: "create"}
		}
		var perms []string
		for _, p := range v.Permissions {
			perms = append(perms, permNames[p])
		}
		return rule{access: "resource", perms: sortedSet(perms), params: mlflowParams(v, method, vars)}
	}
	return rule{access: v.Verdict + ":" + fn}
}

// mlflowParams normalises a validator's parameters: where they are read
// (a proto parameter by the method's rule, a path variable as path) and the
// key. Validator facts are the union over the function's branches, so the
// branches this route cannot take are dropped: a path variable the route
// does not have; the query's path when the route has its path variable
// (the proxy-artifact validators read view_args, else ?path=); the body's
// or the query's copy of one key, by the method (a validator that reads
// request.json on POST and request.args on GET). What a validator reads
// from a looked-up object (local:) or the response is resolution, not a
// request parameter, and run_uuid is always run_id's fallback.
func mlflowParams(v *validatorFacts, method string, vars []string) []string {
	got := map[string]map[string]bool{} // key → sources
	for _, p := range v.Params {
		src := p.Source
		switch {
		case p.Key == "run_uuid", strings.HasPrefix(src, "local:") && src != "local:body", src == "response", src == "request_message":
			continue
		case src == "path" && !slices.Contains(vars, p.Key):
			continue
		case src == "request_param" && slices.Contains(vars, p.Key):
			src = "path"
		case src == "request_param":
			src = paramSource(method)
		case strings.HasPrefix(src, "query"):
			src = "query"
		case strings.HasPrefix(src, "body"), src == "local:body":
			src = "body"
		}
		if got[p.Key] == nil {
			got[p.Key] = map[string]bool{}
		}
		got[p.Key][src] = true
	}
	hasPath := false
	for _, srcs := range got {
		hasPath = hasPath || srcs["path"]
	}
	var out []string
	for k, srcs := range got {
		if srcs["body"] && srcs["query"] {
			delete(srcs, map[bool]string{true: "body", false: "query"}[method == "GET"])
		}
		if hasPath && k == "path" {
			delete(srcs, "query")
		}
		for src := range srcs {
			out = append(out, src+":"+k)
		}
	}
	return sortedSet(out)
}

// ourRule is what route r needs for method, in the same form.
func ourRule(r *Route, method string) rule {
	if r.graphql {
		return rule{access: "graphql"}
	}
	out := rule{access: r.Access.String()}
	if r.Access != AccessResource && r.Access != AccessSelf {
		return out
	}
	var perms, params []string
	for _, p := range r.params {
		perm := r.Permission
		if p.perm != 0 {
			perm = p.perm
		}
		if p.kind != idUsername {
			perms = append(perms, perm.String())
		}
		src := map[src]string{srcQuery: "query", srcBody: "body", srcPath: "path", srcHeader: "header", srcOTLP: "otlp", srcArgsOrJSON: "args_or_json"}[p.src]
		if p.src == srcParam {
			src = paramSource(method)
		}
		key, _, _ := strings.Cut(p.name, ".")
		params = append(params, src+":"+strings.TrimSuffix(key, "[]"))
		if p.name2 != "" {
			params = append(params, src+":"+p.name2)
		}
	}
	if len(r.params) == 0 {
		perms = append(perms, r.Permission.String())
	}
	if r.Access == AccessResource {
		out.perms = sortedSet(perms)
	}
	out.params = sortedSet(params)
	return out
}

func sortedSet(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// routeKey names a route at the finest grain: our row, the method and the
// full path template.
type routeKey struct{ name, method, path string }

func (k routeKey) String() string { return k.name + " " + k.method + " " + k.path }

// driftResult is one extraction's comparison: what each route of MLflow
// maps to, and the differences.
type driftResult struct {
	diffs map[routeKey]string // key → MLflow's rule, where ours differs
	ours  map[routeKey]string // key → our rule, for the same keys
	hit   map[routeKey]bool   // our rows × methods × mounts some MLflow route reaches
}

func compareExtraction(t *testing.T, e *extraction, cls *Classifier) driftResult {
	t.Helper()
	res := driftResult{diffs: map[routeKey]string{}, ours: map[routeKey]string{}, hit: map[routeKey]bool{}}
	for _, rt := range e.Routes {
		if rt.App == "fastapi" && rt.Method == "*" {
			continue // the mount of the Flask app
		}
		path, _ := concrete(rt.Path)
		var vars pathVars
		r := cls.match(rt.Method, path, &vars)
		ml := mlflowRule(e, rt.App, rt.Method, rt.Path)
		if r == nil {
			k := routeKey{"-", rt.Method, rt.Path}
			res.diffs[k], res.ours[k] = ml.String(), "unknown"
			continue
		}
		k := routeKey{r.Name, rt.Method, rt.Path}
		res.hit[routeKey{r.Name, rt.Method, ourTemplate(r, path)}] = true
		if o := ourRule(r, rt.Method); o.String() != ml.String() {
			res.diffs[k], res.ours[k] = ml.String(), o.String()
		}
	}
	return res
}

// ourTemplate is the full path template of r under the mount through which
// path reaches it.
func ourTemplate(r *Route, path string) string {
	for _, m := range ourMounts(r) {
		var v pathVars
		if matchSegs(parsePattern(m), path, &v) {
			return m
		}
	}
	return path
}

// ourMounts lists the full path templates a row is served at, with no
// static prefix.
func ourMounts(r *Route) []string {
	var out []string
	for i, px := range []string{"/api/2.0", "/api/3.0", "/ajax-api/2.0", "/ajax-api/3.0", "", ""} {
		if r.prefixes&(1<<i) != 0 {
			out = append(out, px+r.Path)
		}
	}
	return out
}

// TestRouteTableAgainstMLflowSource is the drift test.
func TestRouteTableAgainstMLflowSource(t *testing.T) {
	cls := NewClassifier("", StaticPrefixAPI)
	dev := deviationIndex(t)
	used := map[string]bool{}
	for _, e := range loadExtractions(t) {
		t.Run(e.Label, func(t *testing.T) {
			var uses [][]string
			for _, f := range e.FindValidator {
				if len(f.Uses) == 0 {
					f.Uses = nil
				}
				uses = append(uses, f.Uses)
			}
			for len(uses) < len(expectedFindValidator) {
				uses = append(uses, nil)
			}
			require.Equal(t, expectedFindValidator, uses[:len(expectedFindValidator)],
				"MLflow %s chooses validators differently (_find_validator): update mlflowRule before trusting this test", e.MLflow.Commit)

			res := compareExtraction(t, e, cls)
			keys := make([]routeKey, 0, len(res.diffs))
			for k := range res.diffs {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				d, key := dev.lookup(k)
				switch {
				case d == nil:
					t.Errorf("MLflow %s route %s %s: MLflow needs %q, the table %s %q. Make the row match MLflow, or add a deviation with its reason (deviations_test.go)",
						e.Label, k.method, k.path, res.diffs[k], rowName(k), res.ours[k])
				case d.mlflow[key] != res.diffs[k] && d.mlflow[key] != "*":
					t.Errorf("MLflow %s route %s %s: the deviation %q records MLflow as %q, the extraction says %q: review the deviation",
						e.Label, k.method, k.path, d.title, d.mlflow[key], res.diffs[k])
				default:
					used[key] = true
				}
			}
			// Rows of ours that no route of MLflow reaches. A row of a
			// later MLflow (newest_test.go) is not in an older extraction.
			newer := newerRows()
			for _, r := range cls.Routes() {
				for _, m := range r.Methods {
					if newer[r.Name+" "+m] {
						continue
					}
					for _, p := range ourMounts(r) {
						k := routeKey{r.Name, m, p}
						if res.hit[k] {
							continue
						}
						d, key := dev.lookup(k)
						switch {
						case d == nil:
							t.Errorf("the table serves %s, which MLflow %s has no route for: remove the row, or add a deviation with its reason", k, e.Label)
						case d.mlflow[key] != "absent":
							t.Errorf("%s: MLflow %s has no route for it, the deviation %q records %q", k, e.Label, d.title, d.mlflow[key])
						default:
							used[key] = true
						}
					}
				}
			}
		})
	}
	used["graphql query test"], used["graphql mutation testMutation"] = true, true // TestGraphQLAgainstMLflowSchema
	for _, d := range deviations {
		for key := range d.mlflow {
			if !used[key] {
				t.Errorf("deviation %q lists %s, which now matches MLflow or does not exist: remove it", d.title, key)
			}
		}
	}
	checkREADME(t)
}

func rowName(k routeKey) string {
	if k.name == "-" {
		return "has no row (unknown route, 404) and so needs"
	}
	return "row " + k.name + " needs"
}

// TestStaticPrefixAgainstMLflowSource: which routes --static-prefix moves.
// Both extractions are of MLflow after mlflow#22159 (2026-04-01), which
// moves /api/... too, as StaticPrefixAPI does; the mode of the releases
// before it (StaticPrefixAjax) is held to #22159's diff by TestStaticPrefix.
func TestStaticPrefixAgainstMLflowSource(t *testing.T) {
	cls := NewClassifier("", StaticPrefixAPI)
	for _, e := range loadExtractions(t) {
		for _, rt := range e.Routes {
			path, _ := concrete(rt.Path)
			var vars pathVars
			r := cls.match(rt.Method, path, &vars)
			if r == nil || (rt.App == "fastapi" && rt.Method == "*") {
				continue
			}
			ours := r.prefixes&(pAPI2|pAPI3|pAJAX2|pAJAX3|pUI) != 0
			assert.Equal(t, rt.StaticPrefix, ours, "MLflow %s: does --static-prefix move %s %s? row %s", e.Label, rt.Method, rt.Path, r.Name)
		}
	}
}

// TestGraphQLAgainstMLflowSchema: every Query and Mutation field of
// MLflow's schema is one we check, with the input fields it defines, or a
// listed deviation; and we allow no field MLflow does not have.
func TestGraphQLAgainstMLflowSchema(t *testing.T) {
	dev := deviationIndex(t)
	for _, e := range loadExtractions(t) {
		seen := map[string]bool{}
		for _, f := range e.GraphQLSchema.Fields {
			ours := gqlQueries
			if f.Root == "mutation" {
				ours = gqlMutations
			}
			key := "graphql " + f.Root + " " + f.Field
			seen[key] = true
			spec, ok := ours[f.Field]
			if !ok {
				if d, k := dev.lookup(routeKey{name: key}); d == nil || d.mlflow[k] != "denied" {
					t.Errorf("MLflow %s: GraphQL %s field %s is not checked here: add it to graphql.go or list it as a deviation", e.Label, f.Root, f.Field)
				}
				continue
			}
			var want []string
			for _, in := range f.Args["input"].Fields {
				name, _, _ := strings.Cut(in, ":")
				want = append(want, name)
			}
			var got []string
			for k := range spec.input {
				got = append(got, k)
			}
			require.ElementsMatch(t, want, got, "MLflow %s: GraphQL %s %s input fields", e.Label, f.Root, f.Field)
		}
		for _, d := range deviations {
			for k := range d.mlflow {
				if strings.HasPrefix(k, "graphql ") && !seen[k] {
					t.Errorf("deviation %q lists %s, which MLflow %s's schema does not have: remove it", d.title, k, e.Label)
				}
			}
		}
		for root, fields := range map[string]map[string]gqlField{"query": gqlQueries, "mutation": gqlMutations} {
			for name := range fields {
				if !seen["graphql "+root+" "+name] {
					t.Errorf("graphql.go allows %s field %s, which MLflow %s's schema does not have", root, name, e.Label)
				}
			}
		}
	}
}
