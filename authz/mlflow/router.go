package mlflow

import "strings"

// The router: the first step of Classify. It finds the route table row for a
// method and a canonical path and captures the path's template variables;
// it reads nothing else of the request.

// pathVars holds the template variables of one match. It is a fixed array,
// not a map, so that matching allocates nothing.
type pathVars struct {
	n     int
	names [3]string
	vals  [3]string
}

func (v *pathVars) get(name string) string {
	for i := 0; i < v.n; i++ {
		if v.names[i] == name {
			return v.vals[i]
		}
	}
	return ""
}

func (v *pathVars) add(name, val string) {
	if v.n < len(v.names) {
		v.names[v.n], v.vals[v.n] = name, val
		v.n++
	}
}

// match finds the route for method and path. A path that matches a row
// under another method is still unknown: we never guess at a method.
// --static-prefix applies to the UI, ajax, graphql and get-artifact routes,
// and since MLflow 3.12 to /api/... too (mlflow#22159: handlers.py's
// _get_rest_path applies _add_static_prefix, as _get_ajax_path always did);
// the mode says which (apiAtRoot before 3.12). Either way a route is served
// at one place only, so the other is unknown. The FastAPI routes stay at
// the root, some of them under /ajax-api/3.0 (the jobs and assistant
// routers): a path there that no ajax row matches is looked up at the root.
func (c *Classifier) match(method, path string, vars *pathVars) *Route {
	if c.apiAtRoot {
		if r, ok := c.matchAPI(method, path, vars); ok {
			return r
		}
	}
	if rest, ok := c.cutStatic(path); ok {
		if !c.apiAtRoot {
			if r, ok := c.matchAPI(method, rest, vars); ok {
				return r
			}
		}
		var r *Route
		switch {
		case strings.HasPrefix(rest, ajax2):
			r = c.matchIn(2, method, rest[len(ajax2)-1:], vars)
		case strings.HasPrefix(rest, ajax3):
			r = c.matchIn(3, method, rest[len(ajax3)-1:], vars)
		default:
			r = c.matchIn(4, method, rest, vars)
		}
		if r != nil {
			return r
		}
	}
	return c.matchIn(5, method, path, vars)
}

const api2, api3, ajax2, ajax3 = "/api/2.0/", "/api/3.0/", "/ajax-api/2.0/", "/ajax-api/3.0/"

// matchAPI decides a path under /api/2.0 or /api/3.0 (ok), in that mount
// only: a miss there is an unknown route, never a row of another mount.
func (c *Classifier) matchAPI(method, path string, vars *pathVars) (*Route, bool) {
	switch {
	case strings.HasPrefix(path, api2):
		return c.matchIn(0, method, path[len(api2)-1:], vars), true
	case strings.HasPrefix(path, api3):
		return c.matchIn(1, method, path[len(api3)-1:], vars), true
	}
	return nil, false
}

// prefixHint explains an unknown /api path that the other static-prefix
// mode would serve: the setting names the wrong MLflow version.
func (c *Classifier) prefixHint(path string) string {
	if c.staticPrefix == "" {
		return ""
	}
	rest, under := c.cutStatic(path)
	isAPI := func(p string) bool { return strings.HasPrefix(p, api2) || strings.HasPrefix(p, api3) }
	switch {
	case c.apiAtRoot && under && path != rest && isAPI(rest):
		return " (/api is at the root before MLflow 3.12; for 3.12 and later set mlflow.static_prefix_mode: api)"
	case !c.apiAtRoot && isAPI(path):
		return " (/api is under --static-prefix since MLflow 3.12; for an older MLflow set mlflow.static_prefix_mode: ajax)"
	}
	return ""
}

// cutStatic strips --static-prefix from path, only at a segment boundary.
func (c *Classifier) cutStatic(path string) (string, bool) {
	if c.staticPrefix == "" {
		return path, true
	}
	rest, ok := strings.CutPrefix(path, c.staticPrefix)
	switch {
	case !ok:
		return "", false
	case rest == "":
		return "/", true
	case rest[0] == '/':
		return rest, true
	}
	return "", false
}

// matchIn looks for the row in mount i (a bit of prefix): exact paths
// first, then templates in table order.
func (c *Classifier) matchIn(i int, method, rest string, vars *pathVars) *Route {
	for _, r := range c.exact[i][rest] {
		if r.allows(method) {
			return r
		}
	}
	for _, r := range c.templated[i] {
		if r.allows(method) && matchSegs(r.segs, rest, vars) {
			return r
		}
	}
	return nil
}

// matchSegs matches path against a parsed template, capturing its variables.
func matchSegs(segs []segment, path string, vars *pathVars) bool {
	vars.n = 0
	rest := strings.TrimPrefix(path, "/")
	for i, s := range segs {
		if s.kind == segTail {
			if rest == "" || i != len(segs)-1 {
				return false
			}
			vars.add(s.name, rest)
			return true
		}
		seg, tail, more := strings.Cut(rest, "/")
		switch s.kind {
		case segLit:
			if seg != s.lit {
				return false
			}
		case segVar:
			v, ok := strings.CutSuffix(seg, s.lit)
			if !ok || v == "" {
				return false
			}
			vars.add(s.name, v)
		}
		if i == len(segs)-1 {
			return !more
		}
		if !more {
			return false
		}
		rest = tail
	}
	return false
}

// segKind is the kind of one template segment.
type segKind uint8

const (
	segLit segKind = iota
	segVar
	segTail
)

// segment is one parsed segment of a route's Path.
type segment struct {
	kind segKind
	lit  string // literal, or the suffix after {var}
	name string
}

// parsePattern parses a route's Path once, when the table is built.
func parsePattern(p string) []segment {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	segs := make([]segment, 0, len(parts))
	for _, s := range parts {
		switch {
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}"):
			segs = append(segs, segment{kind: segTail, name: s[1 : len(s)-4]})
		case strings.HasPrefix(s, "{"):
			end := strings.IndexByte(s, '}')
			segs = append(segs, segment{kind: segVar, name: s[1:end], lit: s[end+1:]})
		default:
			segs = append(segs, segment{kind: segLit, lit: s})
		}
	}
	return segs
}

func (r *Route) templated() bool { return strings.IndexByte(r.Path, '{') >= 0 }

func (r *Route) allows(method string) bool {
	for _, m := range r.Methods {
		if m == method {
			return true
		}
	}
	return false
}
