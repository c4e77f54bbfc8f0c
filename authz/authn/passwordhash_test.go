package authn

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// werkzeugVector is one entry of testdata/werkzeug_hashes.json: a
// users.password_hash value and the password it was made from. The file is
// written by testdata/werkzeug_hashes.py, which reproduces werkzeug's
// generate_password_hash with Python's hashlib (OpenSSL's scrypt and
// PBKDF2), an implementation independent of golang.org/x/crypto.
type werkzeugVector struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Hash     string `json:"hash"`
}

func werkzeugVectors(t testing.TB) []werkzeugVector {
	t.Helper()
	b, err := os.ReadFile("testdata/werkzeug_hashes.json")
	require.NoError(t, err)
	var v []werkzeugVector
	require.NoError(t, json.Unmarshal(b, &v))
	require.NotEmpty(t, v)
	return v
}

func TestWerkzeugVectors(t *testing.T) {
	for _, v := range werkzeugVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			h, err := parsePasswordHash(v.Hash)
			require.NoError(t, err)
			assert.True(t, h.verify(v.Password), "the right password")
			for _, wrong := range []string{"", v.Password + "x", v.Password[:len(v.Password)-1], strings.ToUpper(v.Password)} {
				assert.False(t, h.verify(wrong), "wrong password %q", wrong)
			}
			// One flipped digest character.
			d := []byte(h.digest)
			if d[0] == '0' {
				d[0] = '1'
			} else {
				d[0] = '0'
			}
			h.digest = string(d)
			assert.False(t, h.verify(v.Password), "a changed digest")
		})
	}
}

func TestParsePasswordHashRefuses(t *testing.T) {
	scryptDigest := strings.Repeat("ab", scryptKeyLen)
	pbkdf2Digest := strings.Repeat("cd", pbkdf2KeyLen)
	tests := []struct{ name, hash string }{
		{"empty", ""},
		{"no separators", "scrypt:32768:8:1"},
		{"one separator", "scrypt:32768:8:1$salt"},
		{"plain (werkzeug < 3)", "plain$$secret"},
		{"salted sha1 (werkzeug < 3)", "sha1$salt$" + strings.Repeat("ab", 20)},
		{"md5", "md5$salt$" + strings.Repeat("ab", 16)},
		{"scrypt without parameters", "scrypt$salt$" + scryptDigest},
		{"scrypt with two parameters", "scrypt:32768:8$salt$" + scryptDigest},
		{"scrypt N not a power of two", "scrypt:30000:8:1$salt$" + scryptDigest},
		{"scrypt N one", "scrypt:1:8:1$salt$" + scryptDigest},
		{"scrypt memory too large", "scrypt:1048576:8:1$salt$" + scryptDigest},
		{"scrypt r too large", "scrypt:32768:999999999:1$salt$" + scryptDigest},
		{"scrypt p too large", "scrypt:32768:8:64$salt$" + scryptDigest},
		{"scrypt zero r", "scrypt:32768:0:1$salt$" + scryptDigest},
		{"scrypt leading zero", "scrypt:032768:8:1$salt$" + scryptDigest},
		{"scrypt sign", "scrypt:32768:+8:1$salt$" + scryptDigest},
		{"scrypt space", "scrypt:32768: 8:1$salt$" + scryptDigest},
		{"scrypt ten digits", "scrypt:1073741824:8:1$salt$" + scryptDigest},
		{"scrypt short digest", "scrypt:32768:8:1$salt$" + pbkdf2Digest},
		{"scrypt upper-case digest", "scrypt:32768:8:1$salt$" + strings.ToUpper(scryptDigest)},
		{"scrypt digest with a dollar", "scrypt:32768:8:1$salt$" + scryptDigest[:127] + "$"},
		{"pbkdf2 without iterations", "pbkdf2:sha256$salt$" + pbkdf2Digest},
		{"pbkdf2 without hash name", "pbkdf2$salt$" + pbkdf2Digest},
		{"pbkdf2 sha1", "pbkdf2:sha1:260000$salt$" + strings.Repeat("ab", 20)},
		{"pbkdf2 sha512", "pbkdf2:sha512:260000$salt$" + strings.Repeat("ab", 64)},
		{"pbkdf2 zero iterations", "pbkdf2:sha256:0$salt$" + pbkdf2Digest},
		{"pbkdf2 too many iterations", "pbkdf2:sha256:2000001$salt$" + pbkdf2Digest},
		{"pbkdf2 long digest", "pbkdf2:sha256:1000$salt$" + scryptDigest},
		{"pbkdf2 extra part", "pbkdf2:sha256:1000:1$salt$" + pbkdf2Digest},
		{"empty salt", "pbkdf2:sha256:1000$$" + pbkdf2Digest},
		{"long salt", "pbkdf2:sha256:1000$" + strings.Repeat("s", maxSaltLen+1) + "$" + pbkdf2Digest},
		{"too long", "pbkdf2:sha256:1000$salt$" + strings.Repeat("a", maxPasswordHashLen)},
		{"upper-case method", "SCRYPT:32768:8:1$salt$" + scryptDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePasswordHash(tt.hash)
			require.ErrorIs(t, err, errUnsupportedHash)
		})
	}
}

// TestDefaultScryptHashCostsLikeWerkzeugs: the hash an unknown username is
// checked against has exactly the parameters werkzeug writes by default, so
// it costs what a real user's check costs.
func TestDefaultScryptHashCostsLikeWerkzeugs(t *testing.T) {
	for _, v := range werkzeugVectors(t) {
		if !strings.HasPrefix(v.Hash, "scrypt:32768:8:1$") {
			continue
		}
		h, err := parsePasswordHash(v.Hash)
		require.NoError(t, err)
		assert.Equal(t, [3]int{h.n, h.r, h.p}, [3]int{defaultScryptHash.n, defaultScryptHash.r, defaultScryptHash.p})
		assert.Equal(t, len(h.digest), len(defaultScryptHash.digest))
	}
	assert.False(t, defaultScryptHash.verify(""))
}

// BenchmarkVerify measures one check of each stored format: what a Basic
// request costs when its credentials are not cached.
func BenchmarkVerify(b *testing.B) {
	for _, v := range werkzeugVectors(b) {
		h, err := parsePasswordHash(v.Hash)
		require.NoError(b, err)
		b.Run(strings.ReplaceAll(v.Name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !h.verify(v.Password) {
					b.Fatal("no match")
				}
			}
		})
	}
}
