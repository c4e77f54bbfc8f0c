package mlflow

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// The parameter reader: where a route's ids are read, exactly as MLflow
// reads them (query string, JSON body, path variable, header), with every
// ambiguity refused. JSON bodies are validated by scanJSONObject and read
// field by field (json.go).

// reader reads parameters of one request, validating the query and body at
// most once and only when a route reads them.
type reader struct {
	req *authz.Request
	// vars is a copy, not a pointer to Classify's: escape analysis does not
	// tell a struct's fields apart, and the body's document, which goes
	// back to a sync.Pool, would take a pointer held here to the heap.
	vars     pathVars
	body     jsonObject
	bodyDone bool
	bodyDeny *authz.Decision
}

// loadBody validates the JSON body. strictType applies Flask's POST rule:
// MLflow refuses a POST whose Content-Type is not application/json.
func (rd *reader) loadBody(strictType bool) (jsonObject, *authz.Decision) {
	if strictType && !isJSONType(rd.req.Header("content-type")) {
		return jsonObject{}, deny(http.StatusBadRequest, ReasonUnsupportedContentType, "MLflow reads this endpoint's parameters from a JSON body; send Content-Type: application/json")
	}
	if rd.bodyDone {
		return rd.body, rd.bodyDeny
	}
	rd.bodyDone = true
	switch {
	case rd.req.BodyTruncated:
		rd.bodyDeny = deny(http.StatusRequestEntityTooLarge, authz.ReasonBodyTruncated, "the request body is too large to check the ids it names")
	case len(rd.req.Body) == 0:
		// An empty body is an empty object: the zero jsonObject.
	default:
		obj, err := scanJSONObject(rd.req.Body)
		switch err {
		case nil:
			rd.body = obj
		case errJSONDuplicate:
			rd.bodyDeny = deny(http.StatusBadRequest, ReasonDuplicateParameter, "duplicate key in the JSON body")
		default:
			rd.bodyDeny = deny(http.StatusBadRequest, ReasonInvalidJSON, "the body is not a JSON object MLflow could read: "+strings.TrimPrefix(err.Error(), "mlflow: "))
		}
	}
	return rd.body, rd.bodyDeny
}

// release gives back what reading the body took (see jsonDoc.release):
// nothing read from it may be used after.
func (rd *reader) release() {
	rd.body.doc.release()
	rd.body = jsonObject{}
}

// isJSONType reports whether a Content-Type is application/json, with or
// without parameters.
func isJSONType(ct string) bool {
	if ct == "application/json" {
		return true // what clients send, without a parse
	}
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

// hasKey reports whether the query holds k in either spelling.
func hasKey(q authz.Query, k string) bool {
	if k == "" {
		return false
	}
	if q.Has(k) {
		return true
	}
	if c := camel(k); c != k {
		return q.Has(c)
	}
	return false
}

// values reads p's values from s. Single-valued parameters yield at most
// one value; every ambiguity is a 400. Values read from the path, a header
// or the body are stored in out's spare room, storage the caller may keep
// on its stack: a request's ids then cost no slice of their own.
func (rd *reader) values(s src, strict bool, p *param, out []string) ([]string, *authz.Decision) {
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
		return append(out[len(out):], v), nil
	case srcOTLP:
		return otlpTraceIDs(rd.req)
	case srcArgsOrJSON:
		return rd.argsOrJSON(p, out)
	case srcHeader:
		v := rd.req.Header(p.name)
		if v == "" {
			return nil, deny(http.StatusBadRequest, ReasonMissingParameter, "missing required header "+p.name)
		}
		return append(out[len(out):], v), nil
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
		return bodyValues(body, p, out)
	}
}

// argsOrJSON reads p as MLflow's _get_validated_flask_request_json does
// (mlflow/server/handlers.py): from the query string when a GET has one,
// else from the JSON body, whatever the content type. A GET that names p in
// both is refused, since only one of them is read.
func (rd *reader) argsOrJSON(p *param, out []string) ([]string, *authz.Decision) {
	q, err := rd.req.Query()
	if err != nil {
		return nil, badParam("the query string cannot be parsed unambiguously")
	}
	if rd.req.Method == http.MethodGet && !q.Empty() {
		if body, d := rd.loadBody(false); d == nil && hasBodyKey(body, p.name) {
			return nil, deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameter "+p.name+" given both in the query and in the body")
		}
		return queryValues(q, p)
	}
	body, d := rd.loadBody(rd.req.Method != http.MethodGet)
	if d != nil {
		return nil, d
	}
	return bodyValues(body, p, out)
}

func hasBodyKey(body jsonObject, k string) bool {
	_, has, _ := body.lookup(k)
	return has
}

// queryValues reads p from the query string. Only the proto field name
// counts, as in MLflow; a repeated single value or both spellings is a 400.
func queryValues(q authz.Query, p *param) ([]string, *authz.Decision) {
	get := func(k string) ([]string, *authz.Decision) {
		if k == "" {
			return nil, nil
		}
		vs := q.Values(k)
		if c := camel(k); c != k {
			if q.Has(c) {
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
		empty := 0
		for _, v := range vs {
			if v == "" {
				if p.list {
					return nil, badParam("empty value in " + k)
				}
				empty++
				continue
			}
			if p.kind == idArtifactPath {
				if len(v) > authz.MaxPathLength || !utf8.ValidString(v) {
					return nil, badParam(k + " is not a valid path")
				}
			} else if !validID(v) {
				return nil, badParam(k + " is not a valid id")
			}
		}
		if empty == 0 {
			// Every value counts: the query's own slice, with no copy.
			return vs, nil
		}
		out := make([]string, 0, len(vs)-empty)
		for _, v := range vs {
			if v != "" {
				out = append(out, v)
			}
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

// bodyValues reads p, and its fallback spelling, from a validated JSON
// body, appending to out.
func bodyValues(body jsonObject, p *param, out []string) ([]string, *authz.Decision) {
	a, d := jsonPathValues(body, p.name, p.namePath, p.list, p.emptyUnset, out)
	if d != nil {
		return nil, d
	}
	var b []string
	if p.alt != "" {
		// After a's values, never over them.
		if b, d = jsonPathValues(body, p.alt, p.altPath, p.list, p.emptyUnset, a[len(a):]); d != nil {
			return nil, d
		}
	}
	return pickAlt(p, a, b)
}

// jsonPathValues reads the strings at path ("a.b[].c") in body. Each key may
// be spelled in snake or camel case, as protobuf's JSON parser accepts both;
// both at once is refused. A non-string where an id belongs is refused: a
// JSON number for a string field is rejected by MLflow's parser, and we
// would rather not guess how. A null is an absent field. An empty string in
// a list is refused, unless emptyUnset says it is protobuf's unset field,
// which MLflow fills in. segs is path split by splitBodyPath, or nil to
// split it here; the strings are stored in out's spare room.
func jsonPathValues(body jsonObject, path string, segs []pathSeg, list, emptyUnset bool, out []string) ([]string, *authz.Decision) {
	if segs == nil {
		var buf [8]pathSeg
		segs = splitBodyPath(path, buf[:0])
	}
	out, d := walkPath(body, true, segs, list && !strings.Contains(path, "[]"), out[len(out):])
	if d != nil {
		return nil, d
	}
	return pathIDs(out, path, list, emptyUnset)
}

// splitBodyPath splits a body path ("a.b[].c") into its fields, their
// lookups prepared (fieldKey), appended to segs: a path through a list is
// walked again for every element, and a route's paths are split once,
// with the route table (param.namePath).
func splitBodyPath(path string, segs []pathSeg) []pathSeg {
	for rest, more := path, true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, ".")
		key, isList := strings.CutSuffix(seg, "[]")
		segs = append(segs, pathSeg{field: newFieldKey(key), list: isList})
	}
	return segs
}

// pathIDs checks the strings read at path: one at most unless list, each a
// valid id; an empty string is protobuf's unset field, dropped, or refused
// in a list unless emptyUnset.
func pathIDs(out []string, path string, list, emptyUnset bool) ([]string, *authz.Decision) {
	if !list && len(out) > 1 {
		return nil, deny(http.StatusBadRequest, ReasonDuplicateParameter, "parameter "+path+" has several values")
	}
	res := out[:0]
	for _, s := range out {
		if s == "" {
			if list && !emptyUnset {
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

// pathSeg is one field of a path: "a" or, for a list of objects or
// strings the path goes through, "a[]".
type pathSeg struct {
	field fieldKey
	list  bool
}

// walkPath appends to out the strings at the rest of a path, segs, in obj,
// which isObj says is an object. listField says the path yields a list and
// goes through none, so its last field is itself a list of strings. The
// strings go through a result, not through a pointer: a slice stored
// through a pointer goes to the heap, and out is the caller's stack.
func walkPath(obj jsonObject, isObj bool, segs []pathSeg, listField bool, out []string) ([]string, *authz.Decision) {
	seg := &segs[0]
	key := seg.field.snake
	if !isObj {
		return out, badParam("expected an object at " + key)
	}
	val, present, both := obj.lookupField(&seg.field)
	if both {
		return out, bothSpellings(key)
	}
	if !present || val.isNull() {
		return out, nil
	}
	last := len(segs) == 1
	switch {
	case seg.list:
		if !val.isArray() {
			return out, badParam(key + " must be a list")
		}
		if !last && val.lacks(&segs[1].field) {
			// Every element is an object, none with the field (no metric
			// with a model_id): nothing to read, and nothing to refuse.
			return out, nil
		}
		for e, more := val.firstElem(); more; e, more = val.nextElem(e) {
			if last {
				s, ok := e.str()
				if !ok {
					return out, badParam(key + " must hold strings")
				}
				out = append(out, s)
				continue
			}
			o, ok := e.object()
			if ok && o.lacks(&segs[1].field) {
				// What walkPath would find: nothing (a metric without
				// model_id), for one test and no call.
				continue
			}
			var d *authz.Decision
			if out, d = walkPath(o, ok, segs[1:], listField, out); d != nil {
				return out, d
			}
		}
		return out, nil
	case !last:
		o, ok := val.object()
		return walkPath(o, ok, segs[1:], listField, out)
	case listField:
		if !val.isArray() {
			return out, badParam(key + " must be a list of strings")
		}
		for e, more := val.firstElem(); more; e, more = val.nextElem(e) {
			s, ok := e.str()
			if !ok {
				return out, badParam(key + " must be a list of strings")
			}
			out = append(out, s)
		}
		return out, nil
	default:
		s, ok := val.str()
		if !ok {
			return out, badParam(key + " must be a string")
		}
		return append(out, s), nil
	}
}

// lookupKey reads key from obj in snake or camel case; both is a 400.
func lookupKey(obj jsonObject, key *fieldKey) (jsonValue, bool, *authz.Decision) {
	v, present, both := obj.lookupField(key)
	if both {
		return jsonValue{}, false, bothSpellings(key.snake)
	}
	return v, present, nil
}

func bothSpellings(key string) *authz.Decision {
	return deny(http.StatusBadRequest, ReasonDuplicateParameter, "field "+key+" given in both spellings ("+key+", "+camel(key)+")")
}

// lookupMapKey is lookupKey for a decoded JSON object.
func lookupMapKey(obj map[string]any, key string) (any, bool, *authz.Decision) {
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
	for c, i, ok := camelNext(s, 0); ok; c, i, ok = camelNext(s, i) {
		b.WriteByte(c)
	}
	return b.String()
}

// isCamelOf reports whether k is camel(snake), without building it.
func isCamelOf[K []byte | string](k K, snake string) bool {
	j := 0
	for c, i, ok := camelNext(snake, 0); ok; c, i, ok = camelNext(snake, i) {
		if j >= len(k) || k[j] != c {
			return false
		}
		j++
	}
	return j == len(k)
}

// camelNext returns the byte of camel(s) that s[i:] starts with, and where
// the rest of s starts: underscores dropped, the letter after one upper
// case.
func camelNext(s string, i int) (c byte, next int, ok bool) {
	up := false
	for ; i < len(s); i++ {
		c = s[i]
		if c == '_' {
			up = true
			continue
		}
		if up && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		return c, i + 1, true
	}
	return 0, i, false
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
	if s == "" || len(s) > 1024 {
		return false
	}
	// Ids are printable ASCII, as a rule: one pass over the bytes, eight
	// at a time, and the passes over the runes only for the others.
	if printableASCII(s) {
		return true
	}
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// printableASCII reports whether every byte of s is from ' ' to '~'. A
// word with none outside that range has no mark: a byte below ' ' borrows
// in w-' ', one at 0x7f carries into its top bit in w+1, one from 0x80 up
// has it already (a mark above another may be wrong, none is missed).
func printableASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if ((w-lanesLow*' ')|(w+lanesLow)|w)&lanesHigh != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
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

// safeArtifactPath accepts a relative path with no backslash, NUL or empty,
// "." or ".." segment. It is stricter than MLflow's validate_path_is_safe
// (mlflow/utils/uri.py), so a path it accepts names one place to every reader.
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
	get := func(k *fieldKey) (string, *authz.Decision) {
		v, _, d := lookupKey(body, k)
		s, _ := v.str()
		return s, d
	}
	userID, d := get(&userIDField)
	if d != nil {
		return d
	}
	if userID != "" {
		op.ClaimedUsers = append(op.ClaimedUsers, userID)
	}
	key, _, d := lookupKey(body, &keyField)
	if d != nil {
		return d
	}
	if key.strIs(mlflowUserTag) {
		v, d := get(&valueField)
		if d != nil {
			return d
		}
		if v != "" {
			op.ClaimedUsers = append(op.ClaimedUsers, v)
		}
	}
	if tags, _ := body.get("tags"); tags.isArray() {
		for t, more := tags.firstElem(); more; t, more = tags.nextElem(t) {
			m, ok := t.object()
			if !ok {
				continue
			}
			if k, _ := m.get("key"); k.strIs(mlflowUserTag) {
				v, _ := m.get("value")
				if vs, _ := v.str(); vs != "" {
					op.ClaimedUsers = append(op.ClaimedUsers, vs)
				}
			}
		}
	}
	return nil
}

const mlflowUserTag = "mlflow.user"

// The fields claims reads, prepared for lookups once.
var userIDField, keyField, valueField = newFieldKey("user_id"), newFieldKey("key"), newFieldKey("value")

// bodyString reads a single string field of the JSON body exactly as a
// route parameter is read (both spellings, duplicates refused), for a value
// that is recorded rather than checked: "" when absent or unreadable, never
// a deny.
func (rd *reader) bodyString(field string) string {
	var buf [1]string
	vals, d := rd.values(srcBody, true, &param{name: field, kind: idModel}, buf[:0])
	if d != nil || len(vals) != 1 {
		return ""
	}
	return vals[0]
}
