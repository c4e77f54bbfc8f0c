package authn_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
)

// FuzzBearerHeader drives arbitrary Authorization headers through the JWT
// authenticator. Invariants: it never panics; any identity it returns came
// from a token whose signature verifies under the test issuer's key
// (checked independently with crypto/rsa); and a deny is always a
// CredentialError or a plain error, never both an identity and an error.
func FuzzBearerHeader(f *testing.F) {
	k := jwtRSAKey(f)
	ti := newJWTTestIssuer(f, "ml", k)
	j := newTestJWT(f, newJWTClock(), jwtTestConfig(ti.URL))
	valid := authntest.Token(f, k, jwtUserClaims(ti.URL))
	parts := strings.Split(valid, ".")

	for _, seed := range []string{
		"", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Bearer " + valid, "bearer\t" + valid,
		"Bearer " + valid + "," + "Bearer " + valid, "Bearer a.b.c", "Bearer ..", "Bearer " + parts[0] + "." + parts[1] + ".",
		"Bearer " + parts[0] + ".e30." + parts[2], "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer phx_abcdef",
		"Bearer " + strings.Repeat("A", 17000),
	} {
		f.Add(seed)
	}
	pub := rsa1(f).Public().(*rsa.PublicKey)
	f.Fuzz(func(t *testing.T, header string) {
		req := jwtRequest(t, header)
		id, err := j.Authenticate(t.Context(), req)
		if err != nil {
			require.Nil(t, id)
			return
		}
		if id == nil {
			return
		}
		// An identity: the credential must be one token signed by our key.
		h := strings.Trim(req.Header("authorization"), " \t")
		require.True(t, len(h) > 7 && strings.EqualFold(h[:6], "bearer"), "identity for a non-bearer header %q", header)
		tok := strings.Trim(h[6:], " \t")
		p := strings.Split(tok, ".")
		require.Len(t, p, 3)
		sig, derr := b64Dec(p[2])
		require.NoError(t, derr)
		digest := sha256.Sum256([]byte(p[0] + "." + p[1]))
		require.NoError(t, rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig), "identity for a token not signed by the test key")
		require.Equal(t, "alice", id.Username)
		require.True(t, id.Expiry.After(jwtTestNow.Add(-time.Minute)))
	})
}
