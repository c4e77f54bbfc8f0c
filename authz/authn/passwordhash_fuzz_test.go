package authn

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParsePasswordHash drives arbitrary users.password_hash values through
// the parser. Invariants: it never panics; what it accepts is exactly one
// of werkzeug's two formats written back byte for byte, with parameters
// inside the cost limits; and verifying a cheap accepted hash never panics.
func FuzzParsePasswordHash(f *testing.F) {
	for _, v := range werkzeugVectors(f) {
		f.Add(v.Hash, v.Password)
	}
	for _, s := range []string{"", "$$", "scrypt$$", "scrypt:2:1:1$s$" + strings.Repeat("0", 128), "pbkdf2:sha256:1$s$" + strings.Repeat("f", 64),
		"scrypt:16:1:1$s$" + strings.Repeat("0", 128) + "$", "pbkdf2:sha256:01$s$", "plain$$x", "scrypt:4294967296:8:1$s$"} {
		f.Add(s, "password")
	}
	f.Fuzz(func(t *testing.T, stored, password string) {
		h, err := parsePasswordHash(stored)
		if err != nil {
			require.ErrorIs(t, err, errUnsupportedHash)
			return
		}
		var method string
		if h.scrypt {
			method = "scrypt:" + strconv.Itoa(h.n) + ":" + strconv.Itoa(h.r) + ":" + strconv.Itoa(h.p)
			require.LessOrEqual(t, 128*h.n*h.r, maxScryptMemory)
			require.LessOrEqual(t, h.n*h.r*h.p, maxScryptWork)
			require.Len(t, h.digest, 2*scryptKeyLen)
		} else {
			method = "pbkdf2:sha256:" + strconv.Itoa(h.iter)
			require.LessOrEqual(t, h.iter, maxPBKDF2Iterations)
			require.Len(t, h.digest, 2*pbkdf2KeyLen)
		}
		require.Equal(t, stored, method+"$"+h.salt+"$"+h.digest)
		if (h.scrypt && h.n*h.r*h.p <= 1<<12) || (!h.scrypt && h.iter <= 1<<12) {
			h.verify(password)
		}
	})
}
