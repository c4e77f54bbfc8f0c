package authn_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
)

// rotationFixture is an issuer publishing "old", a JWT authenticator with
// the default jwks_min_refresh_interval, and its clock.
type rotationFixture struct {
	ti    *devissuer.Issuer
	j     *authn.JWT
	clock interface {
		Now() time.Time
		Advance(time.Duration)
	}
	old devissuer.Key
}

func newRotationFixture(t *testing.T) rotationFixture {
	old := devissuer.Key{ID: "old", Alg: "RS256", Private: rsa1(t)}
	ti := newJWTTestIssuer(t, "ml", old)
	clock := newJWTClock()
	j := newTestJWT(t, clock, jwtTestConfig(ti.URL))
	require.Equal(t, 1, ti.JWKSFetches())
	return rotationFixture{ti: ti, j: j, clock: clock, old: old}
}

// tokenWith signs alice's token with k, whose kid the issuer may or may not
// publish (a forgery when it does not).
func (f rotationFixture) tokenWith(t *testing.T, k devissuer.Key) string {
	c := jwtUserClaims(f.ti.URL)
	c["exp"] = f.clock.Now().Add(5 * time.Minute).Unix()
	return authntest.Token(t, k, c)
}

func (f rotationFixture) accepted(t *testing.T, token string) bool {
	t.Helper()
	id, err := f.j.Authenticate(t.Context(), jwtRequest(t, "Bearer "+token))
	if err == nil {
		require.Equal(t, "alice", id.Username)
		return true
	}
	ce, ok := authz.AsCredentialError(err)
	require.True(t, ok, "error: %v", err)
	require.Equal(t, authn.ReasonTokenUnknownKey, ce.Reason)
	return false
}

func forgedKey(t *testing.T, kid string) devissuer.Key {
	return devissuer.Key{ID: kid, Alg: "RS256", Private: rsaEvil(t)}
}

// TestJWTRotationBound: the worst case. A forged kid made a fruitless
// refresh one second before the rotation; the new key is then refused until
// jwks_min_refresh_interval (5s by default) after that refresh, and
// accepted from then on.
func TestJWTRotationBound(t *testing.T) {
	require.Equal(t, 5*time.Second, authn.JWTDefaultMinRefreshInterval)
	f := newRotationFixture(t)
	require.False(t, f.accepted(t, f.tokenWith(t, forgedKey(t, "forged"))))
	require.Equal(t, 2, f.ti.JWKSFetches(), "the forged kid cost one fetch")
	forgedAt := f.clock.Now()

	f.clock.Advance(time.Second)
	newKey := devissuer.Key{ID: "new", Alg: "RS256", Private: rsa2(t)}
	setKeys(t, f.ti, f.old, newKey)
	token := f.tokenWith(t, newKey)
	for f.clock.Now().Sub(forgedAt) < authn.JWTDefaultMinRefreshInterval {
		require.False(t, f.accepted(t, token), "at %v", f.clock.Now().Sub(forgedAt))
		f.clock.Advance(250 * time.Millisecond)
	}
	assert.Equal(t, 2, f.ti.JWKSFetches(), "no fetch inside the window")
	require.True(t, f.accepted(t, token), "the new key is accepted once the window reopens")
	assert.Equal(t, 3, f.ti.JWKSFetches())
	t.Logf("new key accepted %v after the fruitless refresh (the bound is %v)",
		f.clock.Now().Sub(forgedAt), authn.JWTDefaultMinRefreshInterval)
}

// TestJWTRotationsInQuickSuccession: a refresh that finds new keys does not
// close the window, so a second rotation (or a second new key of the same
// rotation) a moment later is fetched at once as well; a fruitless refresh
// still closes it.
func TestJWTRotationsInQuickSuccession(t *testing.T) {
	f := newRotationFixture(t)
	k2 := devissuer.Key{ID: "k2", Alg: "RS256", Private: rsa2(t)}
	setKeys(t, f.ti, f.old, k2)
	require.True(t, f.accepted(t, f.tokenWith(t, k2)))
	require.Equal(t, 2, f.ti.JWKSFetches())

	f.clock.Advance(time.Second)
	k3 := devissuer.Key{ID: "k3", Alg: "ES256", Private: ec1(t)}
	setKeys(t, f.ti, f.old, k2, k3)
	require.True(t, f.accepted(t, f.tokenWith(t, k3)), "accepted at once, one second after the first rotation")
	require.Equal(t, 3, f.ti.JWKSFetches())

	f.clock.Advance(time.Second)
	require.False(t, f.accepted(t, f.tokenWith(t, forgedKey(t, "forged-1"))))
	require.Equal(t, 4, f.ti.JWKSFetches(), "the window is still open for an unknown kid")
	f.clock.Advance(time.Second)
	require.False(t, f.accepted(t, f.tokenWith(t, forgedKey(t, "forged-2"))))
	assert.Equal(t, 4, f.ti.JWKSFetches(), "the fruitless refresh closed it")
}

// TestJWTRotationDuringFlood: forged kids arrive every 100ms for 30s, and
// the issuer rotates in the middle. The flood costs one fetch per
// jwks_min_refresh_interval, and the new key is accepted within one
// interval of the rotation.
func TestJWTRotationDuringFlood(t *testing.T) {
	f := newRotationFixture(t)
	const (
		step     = 100 * time.Millisecond
		duration = 30 * time.Second
		rotateAt = 12300 * time.Millisecond
	)
	newKey := devissuer.Key{ID: "new", Alg: "RS256", Private: rsa2(t)}
	var newToken string
	acceptedAfter := time.Duration(-1)
	for elapsed := time.Duration(0); elapsed < duration; elapsed += step {
		for i := range 5 {
			require.False(t, f.accepted(t, f.tokenWith(t, forgedKey(t, fmt.Sprintf("forged-%d-%d", elapsed, i)))))
		}
		if elapsed == rotateAt {
			setKeys(t, f.ti, f.old, newKey)
			newToken = f.tokenWith(t, newKey)
		}
		if newToken != "" && acceptedAfter < 0 && f.accepted(t, newToken) {
			acceptedAfter = elapsed - rotateAt
		}
		f.clock.Advance(step)
	}
	fetches := f.ti.JWKSFetches() - 1
	limit := int(duration/authn.JWTDefaultMinRefreshInterval) + 1
	t.Logf("%d forged tokens in %v cost %d JWKS fetches (limit %d); the new key was accepted %v after the rotation",
		5*int(duration/step), duration, fetches, limit, acceptedAfter)
	require.GreaterOrEqual(t, acceptedAfter, time.Duration(0), "the new key was never accepted")
	assert.LessOrEqual(t, acceptedAfter, authn.JWTDefaultMinRefreshInterval)
	assert.LessOrEqual(t, fetches, limit)
}
