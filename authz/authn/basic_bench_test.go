package authn_test

import (
	"testing"

	"github.com/mlflow-authz/mlflow-authz/authz/authn"
)

// BenchmarkBasicCached is a Basic request whose credentials were verified
// before: the HMAC, the cache lookup and the stored hash read through the
// store's cache, no scrypt. Compare with BenchmarkJWTCached.
func BenchmarkBasicCached(b *testing.B) {
	f := newBasicFixture(b, authn.BasicConfig{})
	req := mlflowRequest(b, basicHost, basicHeader("alice", vectors(b)["scrypt default"].Password))
	if _, err := f.basic.Authenticate(b.Context(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.basic.Authenticate(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
	if f.basic.Stats().Verifications != 1 {
		b.Fatalf("%d verifications", f.basic.Stats().Verifications)
	}
}
