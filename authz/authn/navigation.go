package authn

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// apiSegments are the first path segments of what the MLflow UI, Phoenix
// and Kiali fetch from script, and of MLflow's REST API; under a prefix
// (MLflow's --static-prefix, Kiali's web_root) they are second.
var apiSegments = map[string]bool{"ajax-api": true, "api": true, "graphql": true, "get-artifact": true, "v1": true}

// isNavigation reports whether r is a top-level page load by a person: a
// GET or HEAD that accepts HTML, carries no Authorization and is not a
// script's request. Only those are sent to the identity provider; the
// rest get a 401, which a script can act on.
func isNavigation(r *authz.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header("authorization") != "" || r.Header("x-requested-with") != "" {
		return false
	}
	// Fetch Metadata (https://www.w3.org/TR/fetch-metadata/): when the
	// browser says how the request was made, only "navigate" is a page.
	if mode := r.Header("sec-fetch-mode"); mode != "" && mode != "navigate" {
		return false
	}
	if !acceptsHTML(r.Header("accept")) {
		return false
	}
	rest := strings.TrimPrefix(r.Path, "/")
	for range 2 {
		seg, tail, _ := strings.Cut(rest, "/")
		if apiSegments[seg] {
			return false
		}
		rest = tail
	}
	return true
}

// acceptsHTML reports whether an Accept header asks for text/html and not
// for JSON. */* alone (fetch's default) is not a page load.
func acceptsHTML(accept string) bool {
	html := false
	for part := range strings.SplitSeq(accept, ",") {
		media, params, _ := strings.Cut(part, ";")
		if q, ok := qValue(params); ok && q == 0 {
			continue // q=0: explicitly not acceptable (RFC 9110 section 12.4.2)
		}
		switch strings.ToLower(strings.TrimSpace(media)) {
		case "application/json":
			return false
		case "text/html":
			html = true
		}
	}
	return html
}

// qValue reads the q parameter of an Accept element's parameters.
func qValue(params string) (float64, bool) {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(k, "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return q, err == nil
		}
	}
	return 0, false
}

// returnPath is the request's own path and query, as the browser sent
// them, when they are a safe place to return to; "/" otherwise.
func returnPath(r *authz.Request) string {
	target := r.Header(":path")
	if target == "" {
		target = (&url.URL{Path: r.Path, RawQuery: r.RawQuery}).RequestURI()
	}
	if !SafeReturnPath(target) {
		return "/"
	}
	return target
}

// SafeReturnPath reports whether target may follow a login or logout as a
// Location: a path and query on this same host, nothing a browser could
// read as another host. Browsers treat "//evil" and "/\evil" as
// scheme-relative URLs to host evil, so both are refused with every
// absolute URL, control character and non-canonical path.
func SafeReturnPath(target string) bool {
	if target == "" || len(target) > maxReturnPath || target[0] != '/' {
		return false
	}
	if len(target) > 1 && (target[1] == '/' || target[1] == '\\') {
		return false
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c < 0x21 || c == 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return false
	}
	path, _, _ := strings.Cut(target, "?")
	_, reason := authz.CanonicalPath(path)
	return reason == ""
}

// validAuthority reports whether a is a plausible host[:port], so it can
// go into a URL unescaped.
func validAuthority(a string) bool {
	if a == "" || len(a) > 255 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-.:[]", c) >= 0) {
			return false
		}
	}
	return true
}
