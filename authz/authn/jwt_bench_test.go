package authn_test

import (
	"testing"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
)

// BenchmarkJWTCached is the hot path: a token already verified, as with the
// UI's bursts of XHRs.
func BenchmarkJWTCached(b *testing.B) {
	k := jwtRSAKey(b)
	ti := newJWTTestIssuer(b, "ml", k)
	j := newTestJWT(b, newJWTClock(), jwtTestConfig(ti.URL))
	req := jwtRequest(b, "Bearer "+authntest.Token(b, k, jwtUserClaims(ti.URL)))
	if _, err := j.Authenticate(b.Context(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := j.Authenticate(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJWTUncached is a cache miss: full parse, RS256 verify and claim
// mapping. A one-entry cache and two alternating tokens make every call miss.
func BenchmarkJWTUncached(b *testing.B) {
	k := jwtRSAKey(b)
	ti := newJWTTestIssuer(b, "ml", k)
	clock := newJWTClock()
	j, err := authn.NewJWT(b.Context(), []authn.IssuerConfig{jwtTestConfig(ti.URL)},
		authn.WithJWTClock(clock.Now), authn.WithTokenCache(1, time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(j.Close)
	c2 := jwtUserClaims(ti.URL)
	c2["jti"] = "other"
	r0 := jwtRequest(b, "Bearer "+authntest.Token(b, k, jwtUserClaims(ti.URL)))
	r1 := jwtRequest(b, "Bearer "+authntest.Token(b, k, c2))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := r0
		if i%2 == 1 {
			r = r1
		}
		i++
		if _, err := j.Authenticate(b.Context(), r); err != nil {
			b.Fatal(err)
		}
	}
}
