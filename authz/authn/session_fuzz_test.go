package authn

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzKey is a fixed cookie key, so a crasher replays.
const fuzzKey = "q8LVpd6oEdh2aGr1V3Yx6b1qv9cT0m4kQ6cGJp2kZ8w="

// FuzzSessionCookie feeds arbitrary cookie values to the session cookie
// parser. Invariants: no panic; nothing but a value we sealed opens (the
// seeds include real ones and near misses); what opens re-seals to a
// value that opens to the same session.
func FuzzSessionCookie(f *testing.F) {
	r := ring(f, fuzzKey)
	st := &sessionState{Issuer: "https://sso.example.com/realms/ml", User: "alice", Groups: []string{"team-a"}, Expiry: 1, End: 2, Refresh: "r"}
	valid, err := r.sealState(purposeSession, testHost, st)
	require.NoError(f, err)
	for _, seed := range []string{"", "A", valid, valid[:len(valid)-1], valid + "A", strings.ToUpper(valid), "AQAAAAA", strings.Repeat("A", 200)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, err := decodeSessionCookie(r, testHost, value)
		if err != nil {
			require.Nil(t, got)
			return
		}
		again, err := r.sealState(purposeSession, testHost, got)
		require.NoError(t, err)
		back, err := decodeSessionCookie(r, testHost, again)
		require.NoError(t, err)
		require.Equal(t, got, back)
		if value != valid {
			// AES-GCM authenticates: only our own seal opens.
			require.Equal(t, st.User, got.User)
		}
	})
}

// FuzzLoginStateCookie does the same for login-state cookies, and checks
// that a session never opens as a login state.
func FuzzLoginStateCookie(f *testing.F) {
	r := ring(f, fuzzKey)
	fs := flowState{State: strings.Repeat("s", stateBytesEncoded), Nonce: "n", Verifier: "v", Return: "/", Expiry: 1}
	valid, err := r.sealState(purposeLogin, testHost, fs)
	require.NoError(f, err)
	session, err := r.sealState(purposeSession, testHost, &sessionState{Issuer: "i", User: "u", End: 1})
	require.NoError(f, err)
	for _, seed := range []string{"", valid, session, valid[:10], valid + valid} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, err := decodeFlowCookie(r, testHost, value)
		if err != nil {
			require.Nil(t, got)
			return
		}
		require.NotEqual(t, session, value)
		require.Equal(t, fs, *got)
	})
}

// FuzzSafeReturnPath checks the redirect-target rule against how a browser
// resolves a Location: whatever it accepts stays on the same origin.
func FuzzSafeReturnPath(f *testing.F) {
	for _, seed := range []string{"/", "/a?b=c", "//evil", `/\evil`, "https://evil", "/%2F%2Fevil", "/a/../b", "/\t/evil", "/?x=//evil", "/@evil", "/a:b"} {
		f.Add(seed)
	}
	base, _ := url.Parse("https://mlflow.example.com/deep/page")
	f.Fuzz(func(t *testing.T, target string) {
		if !SafeReturnPath(target) {
			return
		}
		u, err := url.Parse(target)
		require.NoError(t, err)
		got := base.ResolveReference(u)
		require.Equal(t, "https", got.Scheme, "%q", target)
		require.Equal(t, base.Host, got.Host, "%q", target)
		// Browsers also read a backslash as a slash (WHATWG URL "special
		// scheme"); none may remain to turn /\host into //host.
		require.NotContains(t, target, `\`)
		require.False(t, strings.HasPrefix(target, "//"))
	})
}

// FuzzFindCookie checks the Cookie header scanner against a plain split.
func FuzzFindCookie(f *testing.F) {
	for _, seed := range []string{"", "a=1", "a=1; b=2", "a=1,a=2", " a = 1 ", ";;=;a", "a=b=c"} {
		f.Add(seed, "a")
	}
	f.Fuzz(func(t *testing.T, header, name string) {
		value, n := findCookie(header, name)
		want := 0
		var last string
		for _, part := range strings.FieldsFunc(header, func(r rune) bool { return r == ';' || r == ',' }) {
			k, v, ok := strings.Cut(strings.Trim(part, " \t"), "=")
			if ok && k == name {
				want++
				last = v
			}
		}
		require.Equal(t, want, n)
		require.Equal(t, last, value)
	})
}
