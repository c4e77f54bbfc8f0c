package authn

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/pbkdf2"
	"golang.org/x/crypto/scrypt"
)

// MLflow stores werkzeug.security.generate_password_hash(password) in
// users.password_hash (mlflow/server/auth/sqlalchemy_store.py, create_user
// and update_user) and checks it with check_password_hash. Werkzeug writes
// "method$salt$hexdigest"
// (https://github.com/pallets/werkzeug/blob/3.1.8/src/werkzeug/security.py):
//
//	scrypt:N:r:p$salt$hex     hashlib.scrypt(pw, salt=salt, n=N, r=r, p=p), 64 bytes
//	pbkdf2:sha256:I$salt$hex  hashlib.pbkdf2_hmac("sha256", pw, salt, I), 32 bytes
//
// where the password and the salt string are UTF-8 encoded as they are (the
// salt is never decoded), and the digest is lower-case hex compared as a
// string. werkzeug >= 3.0 writes scrypt:32768:8:1 by default; 2.3 wrote
// pbkdf2:sha256:600000 and older releases pbkdf2:sha256:260000.

// Limits on stored hashes. Parameters come from a database row that anyone
// with write access to the users table controls; a row asking for gigabytes
// of scrypt memory or a billion PBKDF2 rounds would let one Basic request
// stall a replica, so such hashes are refused as unsupported.
const (
	// maxPasswordHashLen bounds the whole stored value (MLflow's column is
	// VARCHAR(255); werkzeug's default scrypt hash is about 162 characters).
	maxPasswordHashLen = 1024
	// maxSaltLen bounds the salt (werkzeug: 16 characters, or 22 from
	// token_urlsafe(16)).
	maxSaltLen = 128
	// maxScryptMemory bounds 128*N*r bytes, scrypt's working memory: twice
	// werkzeug's default (32 MiB).
	maxScryptMemory = 64 << 20
	// maxScryptWork bounds N*r*p: four times werkzeug's default (2^18).
	maxScryptWork = 1 << 20
	// maxPBKDF2Iterations is twice werkzeug 3.1's default for new pbkdf2
	// hashes (1,000,000).
	maxPBKDF2Iterations = 2_000_000
	// scryptKeyLen and pbkdf2KeyLen are the digest sizes werkzeug writes:
	// hashlib.scrypt's default dklen and SHA-256's size.
	scryptKeyLen = 64
	pbkdf2KeyLen = sha256.Size
)

// errUnsupportedHash is any stored hash this package will not verify.
var errUnsupportedHash = errors.New("authn: unsupported password hash")

// passwordHash is one parsed werkzeug hash.
type passwordHash struct {
	scrypt  bool
	n, r, p int // scrypt
	iter    int // pbkdf2 (always SHA-256)
	salt    string
	digest  string // lower-case hex, as stored
}

// defaultScryptHash has werkzeug's default parameters and a digest no
// password produces in practice. Verifying against it costs what verifying
// a real user's default hash costs, so an unknown username takes as long as
// a wrong password.
var defaultScryptHash = passwordHash{scrypt: true, n: 1 << 15, r: 8, p: 1,
	salt: "mlflowauthzdummy", digest: strings.Repeat("0", 2*scryptKeyLen)}

// parsePasswordHash parses a werkzeug hash. It accepts exactly the two
// formats above with explicit parameters (werkzeug always stores them) and
// refuses anything else: unknown methods, digests other than SHA-256,
// parameters out of range, a digest of the wrong length or case.
func parsePasswordHash(s string) (passwordHash, error) {
	var h passwordHash
	if len(s) > maxPasswordHashLen {
		return h, fmt.Errorf("%w: longer than %d bytes", errUnsupportedHash, maxPasswordHashLen)
	}
	method, rest, ok1 := strings.Cut(s, "$")
	salt, digest, ok2 := strings.Cut(rest, "$")
	if !ok1 || !ok2 {
		return h, fmt.Errorf("%w: not method$salt$digest", errUnsupportedHash)
	}
	if salt == "" || len(salt) > maxSaltLen {
		return h, fmt.Errorf("%w: salt length %d", errUnsupportedHash, len(salt))
	}
	h.salt, h.digest = salt, digest
	parts := strings.Split(method, ":")
	switch {
	case parts[0] == "scrypt" && len(parts) == 4:
		h.scrypt = true
		var err error
		if h.n, err = hashParam(parts[1]); err != nil {
			return h, err
		}
		if h.r, err = hashParam(parts[2]); err != nil {
			return h, err
		}
		if h.p, err = hashParam(parts[3]); err != nil {
			return h, err
		}
		if h.n > maxScryptWork || h.r > maxScryptWork || h.p > maxScryptWork {
			// Checked first, so the products below cannot overflow.
			return h, fmt.Errorf("%w: scrypt parameters %d:%d:%d too costly", errUnsupportedHash, h.n, h.r, h.p)
		}
		if h.n < 2 || h.n&(h.n-1) != 0 {
			return h, fmt.Errorf("%w: scrypt N %d is not a power of two", errUnsupportedHash, h.n)
		}
		if 128*h.n*h.r > maxScryptMemory || h.n*h.r*h.p > maxScryptWork {
			return h, fmt.Errorf("%w: scrypt parameters %d:%d:%d too costly", errUnsupportedHash, h.n, h.r, h.p)
		}
		return h, checkDigest(digest, scryptKeyLen)
	case parts[0] == "pbkdf2" && len(parts) == 3 && parts[1] == "sha256":
		var err error
		if h.iter, err = hashParam(parts[2]); err != nil {
			return h, err
		}
		if h.iter > maxPBKDF2Iterations {
			return h, fmt.Errorf("%w: %d pbkdf2 iterations", errUnsupportedHash, h.iter)
		}
		return h, checkDigest(digest, pbkdf2KeyLen)
	}
	return h, fmt.Errorf("%w: method %q", errUnsupportedHash, cutAt(method, 32))
}

// hashParam parses a positive decimal parameter as werkzeug writes it: no
// sign, no leading zero, no spaces, at most nine digits (so products of
// parameters cannot overflow).
func hashParam(s string) (int, error) {
	if s == "" || len(s) > 9 || s[0] == '0' {
		return 0, fmt.Errorf("%w: parameter %q", errUnsupportedHash, cutAt(s, 16))
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: parameter %q", errUnsupportedHash, cutAt(s, 16))
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: parameter %q", errUnsupportedHash, s)
	}
	return n, nil
}

// checkDigest requires size bytes of lower-case hex: werkzeug compares hex
// strings, so an upper-case digest never matches there either.
func checkDigest(d string, size int) error {
	if len(d) != 2*size {
		return fmt.Errorf("%w: digest is %d characters, not %d", errUnsupportedHash, len(d), 2*size)
	}
	for i := range len(d) {
		if c := d[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: digest is not lower-case hex", errUnsupportedHash)
		}
	}
	return nil
}

func cutAt(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// verify reports whether password matches h, comparing in constant time.
// Its cost is the stored parameters' (bounded by parsePasswordHash).
func (h passwordHash) verify(password string) bool {
	var key []byte
	if h.scrypt {
		var err error
		key, err = scrypt.Key([]byte(password), []byte(h.salt), h.n, h.r, h.p, scryptKeyLen)
		if err != nil {
			return false
		}
	} else {
		key = pbkdf2.Key([]byte(password), []byte(h.salt), h.iter, pbkdf2KeyLen, sha256.New)
	}
	return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(key)), []byte(h.digest)) == 1
}
