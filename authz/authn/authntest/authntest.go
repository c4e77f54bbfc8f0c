// Package authntest is the test kit for code that authenticates bearer
// JWTs: testing.TB wrappers around devissuer, the one token issuer of this
// repository, and private keys shared by the tests of one binary.
//
//	iss := authntest.Start(t, devissuer.WithRealm("ml"))
//	k, _ := iss.Key(devissuer.DefaultKeyID)
//	token := authntest.Token(t, k, map[string]any{"iss": iss.URL, ...})
//
// It imports package testing: never import it outside tests.
package authntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
)

// Start starts an issuer on loopback that is closed when the test ends.
func Start(tb testing.TB, opts ...devissuer.Option) *devissuer.Issuer {
	tb.Helper()
	iss, err := devissuer.Start("127.0.0.1:0", opts...)
	if err != nil {
		tb.Fatalf("authntest: %v", err)
	}
	tb.Cleanup(func() { _ = iss.Close() })
	return iss
}

// NewKey generates a fresh key for alg (see devissuer.NewKey).
func NewKey(tb testing.TB, id, alg string) devissuer.Key {
	tb.Helper()
	k, err := devissuer.NewKey(id, alg)
	if err != nil {
		tb.Fatalf("authntest: %v", err)
	}
	return k
}

// Sign is devissuer.Sign: header and claims exactly as given, signed with
// alg and key.
func Sign(tb testing.TB, header, claims map[string]any, alg string, key any) string {
	tb.Helper()
	s, err := devissuer.Sign(header, claims, alg, key)
	if err != nil {
		tb.Fatalf("authntest: %v", err)
	}
	return s
}

// Token signs claims with k under Keycloak's header (see devissuer.Key.Sign).
func Token(tb testing.TB, k devissuer.Key, claims map[string]any) string {
	tb.Helper()
	s, err := k.Sign(claims)
	if err != nil {
		tb.Fatalf("authntest: %v", err)
	}
	return s
}

// JWK returns the public JWK of k, for tests that embed one in a token
// header or serve it from an attacker's JWKS.
func JWK(tb testing.TB, k devissuer.Key) jwk.Key {
	tb.Helper()
	pub, err := k.JWK()
	if err != nil {
		tb.Fatalf("authntest: %v", err)
	}
	return pub
}

var (
	sharedMu  sync.Mutex
	sharedRSA = map[string]*rsa.PrivateKey{}
	sharedEC  = map[string]*ecdsa.PrivateKey{}
)

// RSAKey returns the 2048-bit RSA key called name, generated on first use
// and then shared by every test of the binary: RSA generation is slow, and
// tests need distinct keys, not fresh ones. Different names are different
// keys.
func RSAKey(tb testing.TB, name string) *rsa.PrivateKey {
	tb.Helper()
	return shared(tb, sharedRSA, name, func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
}

// ECKey returns the P-256 key called name, shared like RSAKey's.
func ECKey(tb testing.TB, name string) *ecdsa.PrivateKey {
	tb.Helper()
	return shared(tb, sharedEC, name, func() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) })
}

func shared[K any](tb testing.TB, keys map[string]K, name string, generate func() (K, error)) K {
	tb.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if k, ok := keys[name]; ok {
		return k
	}
	k, err := generate()
	if err != nil {
		tb.Fatalf("authntest: %v", err)
	}
	keys[name] = k
	return k
}
