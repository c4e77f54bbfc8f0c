package authn

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// FuzzBasicHeader drives arbitrary Authorization headers through the Basic
// header parser. Invariants: it never panics; a header it takes for Basic
// either yields a non-empty UTF-8 username without a colon and a non-empty
// UTF-8 password that encode back to exactly the credential sent (one
// credential, standard base64 with padding), or a basic_malformed refusal
// with the Basic challenge.
func FuzzBasicHeader(f *testing.F) {
	enc := base64.StdEncoding.EncodeToString
	for _, s := range []string{"", "Basic", "Basic ", "basic " + enc([]byte("alice:secret")), "Basic " + enc([]byte("a:b:c")),
		"Basic " + enc([]byte("alice:")), "Basic " + enc([]byte(":x")), "Basic " + enc([]byte("alice")),
		"Basic " + enc([]byte("alice:secret")) + ", Basic " + enc([]byte("bob:x")), "Basic YWxpY2U6c2VjcmV0", "Basic YWxpY2U6c2VjcmV0=",
		"Basic\t" + enc([]byte("ü:ö")), "Basic " + enc([]byte("\xff:\xfe")), "Bearer x", "Basicx", "BAsiC A006A\n000", "Basic " + enc([]byte("alice:secret"))[:4] + "\r" + enc([]byte("alice:secret"))[4:], "BASIC  " + enc([]byte("a:b")) + "  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		h := strings.Trim(header, " \t")
		if !isBasic(h) {
			return
		}
		user, password, cerr := parseBasic(h)
		if cerr != nil {
			require.Equal(t, ReasonBasicMalformed, cerr.Reason)
			require.Equal(t, BasicChallenge, cerr.Challenge)
			require.Empty(t, user)
			require.Empty(t, password)
			return
		}
		require.NotEmpty(t, user)
		require.NotEmpty(t, password)
		require.NotContains(t, user, ":")
		require.True(t, utf8.ValidString(user) && utf8.ValidString(password))
		require.Equal(t, strings.Trim(h[len("basic"):], " \t"), enc([]byte(user+":"+password)))
	})
}

// TestBasicUsernameHoldsNoPassword: the username outlives the request (the
// failure limiter's bucket of a username that failed, the caches, creator-
// grant records), so it is a string of its own, not the front of the
// decoded "user:password" with the password behind it.
func TestBasicUsernameHoldsNoPassword(t *testing.T) {
	user, password, cerr := parseBasic("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:a-wrong-password")))
	require.Nil(t, cerr)
	require.Equal(t, "alice", user)
	require.Equal(t, "a-wrong-password", password)
	behindUser := unsafe.Add(unsafe.Pointer(unsafe.StringData(user)), len(user)+len(":"))
	require.NotEqual(t, behindUser, unsafe.Pointer(unsafe.StringData(password)), "the password lies in the username's memory")
}
