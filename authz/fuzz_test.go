package authz_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// FuzzCanonicalPath checks that every path CanonicalPath accepts is
// canonical, and that it is exactly the path the upstream would route on:
// the same decoding, the same segments. A path where we and the upstream
// could disagree must be refused.
func FuzzCanonicalPath(f *testing.F) {
	for _, tt := range canonicalPathCases {
		f.Add(tt.raw)
	}
	for _, s := range []string{
		"/a/%2e", "/a/.%2E", "/%2e%2e/", "/a/b/..", "/a%2F..%2Fb", "/a\\..\\b", "/%C0%AF", "/%E2%80%A8",
		"/%c2%a0", "/a%20/", "/ /", "/a:b@c", "/~user", "/a%7e", "/a%2B", "/\u00e9", "/%F0%9F%98%80",
		"/", "//", "/.", "/..", "/...", "/.a", "/a.", "/a/", "/a//", "/a/.", "/a/../", "//a#", "/./?", "/a\u00e9/..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, reason := authz.CanonicalPath(raw)
		if wp, wr := authz.CanonicalPathGeneral(raw); p != wp || reason != wr {
			t.Fatalf("%q → %q (%s), the general path gives %q (%s)", raw, p, reason, wp, wr)
		}
		if reason != "" {
			if p != "" {
				t.Fatalf("refused %q (%s) but returned %q", raw, reason, p)
			}
			return
		}

		// Canonical.
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("%q → %q: not absolute", raw, p)
		}
		if strings.Contains(p, "//") {
			t.Fatalf("%q → %q: empty segment", raw, p)
		}
		if clean := path.Clean(p); clean != p && clean+"/" != p {
			t.Fatalf("%q → %q: path.Clean gives %q", raw, p, clean)
		}
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q → %q: dot segment", raw, p)
			}
		}
		if !utf8.ValidString(p) {
			t.Fatalf("%q → %q: invalid UTF-8", raw, p)
		}
		for _, r := range p {
			if unicode.IsControl(r) {
				t.Fatalf("%q → %q: control character %U", raw, p, r)
			}
		}

		// What the upstream sees.
		if un, err := url.PathUnescape(raw); err != nil || un != p {
			t.Fatalf("%q → %q: PathUnescape gives %q, %v", raw, p, un, err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%q accepted but net/url refuses it: %v", raw, err)
		}
		if u.Path != p || u.Scheme != "" || u.Host != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("%q → %q: net/url reads %#v", raw, p, u)
		}
		if n, m := strings.Count(raw, "/"), strings.Count(p, "/"); n != m {
			t.Fatalf("%q → %q: %d segments became %d", raw, p, n, m)
		}

		// Idempotent: the decoded path is itself canonical.
		if p2, reason := authz.CanonicalPath(p); reason != "" || p2 != p {
			t.Fatalf("%q → %q → %q (%s): not idempotent", raw, p, p2, reason)
		}
	})
}

// FuzzQuery checks that query parsing never panics, that the raw query is
// kept byte for byte, that the parsed Query reads exactly as url.ParseQuery's
// url.Values (its oracle), and that an accepted query keeps every key and
// round-trips through encoding.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "a=1", "a=1&b=2", "a=1&a=2", "a=1;b=2", "a=%zz", "a=%2F..%2F", "a", "=x", "&&", "a=b=c",
		"run_id=abc&runId=def", "+=%20", "experiment_ids=1&experiment_ids=2", "a=%00", "%ff=1", "a=\xff", "a=1#frag",
		"a=1&b=2&a=3&c&d=&a=4&e=5&f=6", "a=1&&b=%41&a", "x=%zz&y=1;z", "a+b=c+d&a%20b=e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "h", Target: "/a?" + rawQuery})
		if d != nil {
			t.Fatalf("path /a refused with query %q: %v", rawQuery, d)
		}
		if r.Path != "/a" || r.RawQuery != rawQuery {
			t.Fatalf("split /a?%s into %q and %q", rawQuery, r.Path, r.RawQuery)
		}
		q, err := r.Query()
		// The Query is url.ParseQuery's answer: the same refusal and, per
		// key, the same values in the same order, as Has, Count, Get and
		// Values read them.
		want, wantErr := url.ParseQuery(rawQuery)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("query %q: error %v, url.ParseQuery %v", rawQuery, err, wantErr)
		}
		if !reflect.DeepEqual(q.URLValues(), want) {
			t.Fatalf("query %q: parsed %q, url.ParseQuery %q", rawQuery, q.URLValues(), want)
		}
		if q.Empty() != (len(want) == 0) {
			t.Fatalf("query %q: Empty %v with %d keys", rawQuery, q.Empty(), len(want))
		}
		for k, vs := range want {
			if !q.Has(k) || q.Count(k) != len(vs) || q.Get(k) != want.Get(k) || !slices.Equal(q.Values(k), vs) {
				t.Fatalf("query %q: key %q reads %v/%d/%q/%q, url.ParseQuery %q", rawQuery, k, q.Has(k), q.Count(k), q.Get(k), q.Values(k), vs)
			}
		}
		if q.Has("\x00absent") || q.Values("\x00absent") != nil || q.Count("\x00absent") != 0 {
			t.Fatalf("query %q: an absent key is present", rawQuery)
		}
		if err != nil {
			return
		}
		for pair := range strings.SplitSeq(rawQuery, "&") {
			if pair == "" {
				continue
			}
			k, _, _ := strings.Cut(pair, "=")
			key, err := url.QueryUnescape(k)
			if err != nil {
				t.Fatalf("query %q accepted with undecodable key %q", rawQuery, k)
			}
			if !q.Has(key) {
				t.Fatalf("query %q lost key %q", rawQuery, key)
			}
		}
		again, err := url.ParseQuery(want.Encode())
		if err != nil {
			t.Fatalf("re-encoded query %q does not parse: %v", want.Encode(), err)
		}
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("query %q: %q became %q", rawQuery, want, again)
		}
	})
}

// FuzzRequestHeaders holds NewRequest's header names to strings.ToLower's:
// a name already in lower case (as Envoy sends every one) is kept as it
// is, any other is lowered, by Unicode's rules and with invalid UTF-8
// replaced, exactly as strings.ToLower does; two names that lower to one
// are refused.
func FuzzRequestHeaders(f *testing.F) {
	for _, k := range [][2]string{
		{"authorization", "x-request-id"}, {"Authorization", "cookie"}, {":authority", "X-Envoy-Auth-Partial-Body"},
		{"x-ÄB", "content-type"}, {"\xff", "a"}, {"ǅ", "ß"}, {"", "K"}, {"Authorization", "authorization"}, {"\u212a", "k"},
	} {
		f.Add(k[0], k[1])
	}
	f.Fuzz(func(t *testing.T, k1, k2 string) {
		in := map[string]string{k1: "1", k2: "2"}
		r, d := authz.NewRequest(authz.RequestInput{Method: "GET", Host: "h", Target: "/a", Headers: in})
		want := map[string]string{}
		for k, v := range in {
			want[strings.ToLower(k)] = v
		}
		if len(want) < len(in) {
			if d == nil || d.Status != http.StatusBadRequest || d.Reason != authz.ReasonBadRequest {
				t.Fatalf("%q: names that lower to one not refused: %v", in, d)
			}
			return
		}
		if d != nil {
			t.Fatalf("%q refused: %v", in, d)
		}
		if len(r.Headers) != len(want) {
			t.Fatalf("%q: headers %q, want the names of %q", in, r.Headers, want)
		}
		for k, v := range want {
			got, ok := r.Headers[k]
			if !ok {
				t.Fatalf("%q: %q missing from %q", in, k, r.Headers)
			}
			if got != v {
				t.Fatalf("%q: %q = %q, want %q", in, k, got, v)
			}
		}
	})
}

// FuzzErrorBody holds a deny's body to json.Marshal's reading of its three
// fields, byte for byte, whichever way ErrorBody writes it.
func FuzzErrorBody(f *testing.F) {
	f.Add(403, "EDIT on experiment 12 required", "permission_denied")
	f.Add(404, `registered model "a\b" not found`, "resource_not_found")
	f.Add(400, "<script>", "bad_request")
	f.Add(403, "a & b", "forbidden")
	f.Add(401, "caf\u00e9 \u2028 \x7f \x00 \xff", "invalid_token")
	f.Fuzz(func(t *testing.T, status int, message, reason string) {
		d := authz.Deny(status, authz.Reason(reason), message)
		want, err := json.Marshal(struct {
			ErrorCode string `json:"error_code"`
			Message   string `json:"message"`
			Reason    string `json:"reason"`
		}{d.ErrorCode(), message, reason})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.ErrorBody(); string(got) != string(want) {
			t.Fatalf("ErrorBody() = %s, json.Marshal: %s", got, want)
		}
	})
}
