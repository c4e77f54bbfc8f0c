package authz

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPathLength bounds the request target we are willing to reason about.
// Longer targets are denied rather than matched.
const MaxPathLength = 8192

// Request is a transport-free, immutable view of one HTTP request. Build it
// with NewRequest; nothing in the pipeline mutates it afterwards.
type Request struct {
	// ID is Envoy's request id (x-request-id), for the log.
	ID string
	// Method is the HTTP method, upper case.
	Method string
	// Host is the :authority with any port stripped, lower case.
	Host string
	// Path is the decoded, canonical path: exactly what the upstream routes on.
	Path string
	// RawQuery is the query string after "?", undecoded.
	RawQuery string
	// Headers holds the request headers with lower-case names. Envoy joins
	// repeated headers with commas.
	Headers map[string]string
	// Body is the request body as Envoy sent it (possibly truncated).
	Body []byte
	// BodyTruncated is true when Envoy sent only part of the body.
	BodyTruncated bool
	// Principal is the mTLS peer identity (Envoy's source.principal), usually
	// a SPIFFE ID. Empty on plaintext connections.
	Principal string

	query    Query
	queryErr error
	// queryBuf holds the usual short query's pairs inside the Request's
	// own allocation.
	queryBuf [queryInline]queryPair
}

// RequestInput is the raw material for a Request, as the transport saw it.
type RequestInput struct {
	ID        string
	Method    string
	Host      string
	Target    string // the request target: path and query, undecoded
	Headers   map[string]string
	Body      []byte
	Principal string
}

// NewRequest canonicalizes in into a Request. A target that the upstream
// could route differently from the way we would match it, or two header
// names that differ only in case, are refused with a 400 decision: we never
// guess.
func NewRequest(in RequestInput) (*Request, *Decision) {
	rawPath, rawQuery, _ := strings.Cut(in.Target, "?")
	p, reason := CanonicalPath(rawPath)
	if reason != "" {
		d := Deny(http.StatusBadRequest, ReasonPathNotCanonical, "request path refused: "+reason)
		return nil, &d
	}
	headers, ok := lowerKeys(in.Headers)
	if !ok {
		d := Deny(http.StatusBadRequest, ReasonBadRequest, "two header names differ only in case: which value the upstream reads cannot be known")
		return nil, &d
	}
	r := &Request{
		ID:        in.ID,
		Method:    strings.ToUpper(in.Method),
		Host:      canonicalHost(in.Host),
		Headers:   headers,
		Body:      in.Body,
		Principal: in.Principal,
	}
	r.BodyTruncated = r.Headers["x-envoy-auth-partial-body"] == "true"
	r.Path = p
	r.RawQuery = rawQuery
	if rawQuery != "" {
		r.query, r.queryErr = parseQuery(rawQuery, r.queryBuf[:])
	}
	return r, nil
}

// Query returns the parsed query string, or an error when it cannot be
// parsed unambiguously (for example a ";" separator or a bad escape).
func (r *Request) Query() (Query, error) {
	return r.query, r.queryErr
}

// Header returns the value of a header, by lower-case name.
func (r *Request) Header(name string) string {
	return r.Headers[name]
}

// LogValue keeps credentials out of logs: only the method, host and path are
// ever logged, never headers, query or body.
func (r *Request) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.Path),
	)
}

// CanonicalPath decodes a raw request path and checks that it is canonical:
// absolute, valid UTF-8, free of control characters, encoded separators, dot
// segments and empty segments. It returns the decoded path, or a non-empty
// reason why the path is refused.
//
// The decoded path is what MLflow (werkzeug), Phoenix (starlette) and Kiali
// (Go net/http) route on; since we refuse every encoding that could change the
// segment structure, decoding cannot make our match differ from theirs.
func CanonicalPath(raw string) (string, string) {
	scan, reason := scanPath(raw)
	switch {
	case reason != "":
		return "", reason
	case scan.escaped:
		return decodedPath(raw)
	// The usual path is ASCII without escapes, its own decoding: the byte
	// loop has done the segment checks too, and their reasons come after
	// any byte's, as in decodedPath.
	case scan.emptySeg:
		return "", "empty path segment (//)"
	case scan.dotSeg:
		return "", "dot segment in path"
	}
	return raw, ""
}

// pathScan is what scanPath found in a path it did not refuse.
type pathScan struct {
	escaped  bool // a percent-escape or a non-ASCII byte: decodedPath decides
	emptySeg bool // "//"
	dotSeg   bool // a "." or ".." segment
}

// scanPath refuses a raw path for what its bytes alone show, and notes
// what CanonicalPath needs to finish without decoding it.
func scanPath(raw string) (pathScan, string) {
	var scan pathScan
	switch {
	case raw == "":
		return scan, "empty path"
	case len(raw) > MaxPathLength:
		return scan, "path too long"
	case raw[0] != '/':
		return scan, "not an origin-form path"
	}
	seg := 1 // where the current segment starts
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '/':
			if i > 0 {
				scan.emptySeg = scan.emptySeg || i == seg
				scan.dotSeg = scan.dotSeg || isDotSegment(raw[seg:i])
				seg = i + 1
			}
		case c >= utf8.RuneSelf:
			scan.escaped = true
		case c < 0x20 || c == 0x7f:
			return scan, "control character in path"
		case c == '\\':
			return scan, "backslash in path"
		case c == '#':
			return scan, "fragment in path"
		case c == ';':
			return scan, "path parameter (;) in path"
		case c == '?':
			// NewRequest splits the query off first; a "?" here means the
			// caller did not, and the upstream would see a query.
			return scan, "query delimiter in path"
		case c == '%':
			scan.escaped = true
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return scan, "malformed percent-encoding"
			}
			switch b := unhex(raw[i+1])<<4 | unhex(raw[i+2]); {
			case b == '/' || b == '\\':
				return scan, "encoded slash or backslash in path"
			case b == '.':
				return scan, "encoded dot in path"
			case b == '%':
				return scan, "encoded percent in path"
			case b == ';' || b == '?' || b == '#':
				return scan, "encoded delimiter in path"
			case b < 0x20 || b == 0x7f:
				return scan, "encoded control character in path"
			}
		}
	}
	scan.dotSeg = scan.dotSeg || isDotSegment(raw[seg:])
	return scan, ""
}

// decodedPath finishes CanonicalPath for a path scanPath accepted: it
// decodes it and checks what only the decoded path shows.
func decodedPath(raw string) (string, string) {
	p := raw
	if strings.IndexByte(raw, '%') >= 0 {
		var err error
		if p, err = url.PathUnescape(raw); err != nil {
			return "", "malformed percent-encoding"
		}
	}
	if !utf8.ValidString(p) {
		return "", "invalid UTF-8 in path"
	}
	if hasControlRune(p) {
		return "", "control character in path"
	}
	if strings.Contains(p, "//") {
		return "", "empty path segment (//)"
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if isDotSegment(seg) {
			return "", "dot segment in path"
		}
	}
	return p, ""
}

// isDotSegment reports a "." or ".." segment.
func isDotSegment(seg string) bool {
	return seg == "." || seg == ".."
}

// hasControlRune reports C1 control characters (U+0080–U+009F), which
// survive the byte checks above: Python's str.splitlines and some log
// pipelines treat U+0085 as a line break, so we refuse rather than reason
// about them. ASCII-only paths return at once.
func hasControlRune(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] >= utf8.RuneSelf {
			for _, r := range p[i:] {
				if unicode.IsControl(r) {
					return true
				}
			}
			return false
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isLower reports whether strings.ToLower(s) == s, testing the ASCII names
// Envoy sends byte by byte instead of calling it for each of a request's
// headers.
func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			return strings.ToLower(s) == s
		case 'A' <= c && c <= 'Z':
			return false
		}
	}
	return true
}

// canonicalHost strips the port and lower-cases, so that "MLflow.example.com:443"
// and "mlflow.example.com" select the same application.
func canonicalHost(h string) string {
	if strings.HasPrefix(h, "[") { // IPv6 literal
		if end := strings.IndexByte(h, ']'); end > 0 {
			return strings.ToLower(h[:end+1])
		}
		return strings.ToLower(h)
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// lowerKeys returns m with lower-case keys, reusing m when it already is (as
// Envoy sends it, joining repeated headers), so the common case costs
// nothing. It reports false when two names lower to one ("Authorization"
// and "authorization"): which of their values the upstream reads cannot be
// known, and map order must not pick it.
func lowerKeys(m map[string]string) (map[string]string, bool) {
	for k := range m {
		if !isLower(k) {
			out := make(map[string]string, len(m))
			for k, v := range m {
				out[strings.ToLower(k)] = v
			}
			return out, len(out) == len(m)
		}
	}
	return m, true
}
