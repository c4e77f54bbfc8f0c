package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"golang.org/x/sync/singleflight"
)

// JWKSMaxBodySize bounds discovery and JWKS responses.
const JWKSMaxBodySize = 1 << 20

// minRSABits refuses toy RSA keys even if an issuer publishes them: RFC 7518
// section 3.3 requires 2048 bits or more for RS* and PS*.
const minRSABits = 2048

// keySet is one fetched JWKS, immutable once published.
type keySet struct {
	keys map[string]publicKey // by kid
}

// publicKey is one usable public key from a JWKS.
type publicKey struct {
	alg string // the JWK's alg, "" if it has none
	raw any    // *rsa.PublicKey or *ecdsa.PublicKey
}

// fits reports whether alg may be verified with k: the JWK's own alg, when
// present, must match (so a key published for RS256 is never used for PS256:
// one key, one algorithm, RFC 8725 section 3.1), and the key type and curve
// must suit the algorithm.
func (k publicKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pk := k.raw.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pk.Curve == elliptic.P256()
		case "ES384":
			return pk.Curve == elliptic.P384()
		case "ES512":
			return pk.Curve == elliptic.P521()
		}
	}
	return false
}

// keySource keeps one issuer's signing keys fresh.
//
// We fetch and parse the JWKS ourselves (jwk.ParseKey per entry) rather than
// use jwx v3's jwk.Cache
// (https://pkg.go.dev/github.com/lestrrat-go/jwx/v3/jwk#Cache): its httprc
// scheduler runs on the wall clock, it does not refresh on an unknown kid,
// and a single bad entry in a set fails the whole parse. Here a refresh on kid-miss is rate-limited by the
// injected clock and single-flight, and unusable entries are just skipped.
type keySource struct {
	name         string
	issuer       string
	discoveryURL string
	jwksURL      string // from config; otherwise resolved by discovery
	client       *http.Client
	timeout      time.Duration
	refresh      time.Duration
	minRefresh   time.Duration
	clock        func() time.Time
	logger       *slog.Logger

	set      atomic.Pointer[keySet]
	resolved atomic.Pointer[string] // the JWKS URL once known

	sf         singleflight.Group
	mu         sync.Mutex
	lastForced time.Time // guarded by mu

	// failures and lastOK (unix nanoseconds, 0 before the first success)
	// feed JWKSStatus, so an operator can alert on a Keycloak that stopped
	// answering while the cached keys still work.
	failures atomic.Uint64
	lastOK   atomic.Int64
}

// current returns the last fetched key set, or nil before the first fetch.
func (s *keySource) current() *keySet {
	return s.set.Load()
}

// run fetches the keys until ctx ends: once right away (then calls
// firstDone, so NewJWT can return without waiting on a dead Keycloak), then
// every refresh interval, retrying failures with a capped backoff.
func (s *keySource) run(ctx context.Context, firstDone func()) {
	err := s.load(ctx)
	firstDone()
	backoff := time.Second
	for {
		delay := s.refresh
		if err != nil {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "jwks fetch failed",
				slog.String("issuer", s.name), slog.String("error", err.Error()))
			delay = backoff
			backoff = min(backoff*2, s.minRefresh)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err = s.load(ctx)
	}
}

// load resolves the JWKS URL (once) and fetches the keys.
func (s *keySource) load(ctx context.Context) error {
	u, err := s.url(ctx)
	if err == nil {
		err = s.fetch(ctx, u)
	}
	if err != nil {
		s.failures.Add(1)
		return err
	}
	s.lastOK.Store(s.clock().UnixNano())
	return nil
}

// url returns the JWKS URL, reading the discovery document if needed. The
// document's issuer must be exactly ours (OpenID Connect Discovery 1.0
// section 4.3): a mismatch means a misrouted discovery URL or hostname
// config, and its keys are not our issuer's.
func (s *keySource) url(ctx context.Context) (string, error) {
	if s.jwksURL != "" {
		return s.jwksURL, nil
	}
	if u := s.resolved.Load(); u != nil {
		return *u, nil
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	body, err := s.get(ctx, s.discoveryURL)
	if err != nil {
		return "", fmt.Errorf("authn: jwt: issuer %q: discovery: %w", s.name, err)
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("authn: jwt: issuer %q: discovery: %w", s.name, err)
	}
	if doc.Issuer != s.issuer {
		return "", fmt.Errorf("authn: jwt: issuer %q: discovery names issuer %q", s.name, doc.Issuer)
	}
	if err := checkHTTPURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("authn: jwt: issuer %q: discovery jwks_uri: %w", s.name, err)
	}
	s.resolved.Store(&doc.JWKSURI)
	return doc.JWKSURI, nil
}

// get fetches u with the issuer's timeout and a size cap.
func (s *keySource) get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, JWKSMaxBodySize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > JWKSMaxBodySize {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", u, JWKSMaxBodySize)
	}
	return body, nil
}

// fetch downloads and publishes the key set. On any failure the previous
// set stays in place.
func (s *keySource) fetch(ctx context.Context, u string) error {
	body, err := s.get(ctx, u)
	if err != nil {
		return fmt.Errorf("authn: jwt: issuer %q: jwks: %w", s.name, err)
	}
	set, err := parseKeySet(body)
	if err != nil {
		return fmt.Errorf("authn: jwt: issuer %q: jwks: %w", s.name, err)
	}
	s.set.Store(set)
	return nil
}

// parseKeySet keeps the usable signature keys of a JWKS document. Entries
// without a kid, for encryption, symmetric, too weak or unparsable are
// skipped; a kid published twice is dropped, since we could not tell which
// key it means (RFC 7517 section 4.5 asks for distinct kids in a set).
func parseKeySet(body []byte) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	out := &keySet{keys: make(map[string]publicKey, len(doc.Keys))}
	dup := map[string]bool{}
	for _, raw := range doc.Keys {
		k, err := jwk.ParseKey(raw)
		if err != nil {
			continue
		}
		kid, _ := k.KeyID()
		if kid == "" {
			continue
		}
		if use, ok := k.KeyUsage(); ok && use != "sig" {
			continue
		}
		var pub any
		if err := jwk.Export(k, &pub); err != nil {
			continue
		}
		switch p := pub.(type) {
		case *rsa.PrivateKey:
			pub = &p.PublicKey
		case *ecdsa.PrivateKey:
			pub = &p.PublicKey
		}
		switch p := pub.(type) {
		case *rsa.PublicKey:
			if p.N.BitLen() < minRSABits {
				continue
			}
		case *ecdsa.PublicKey:
		default:
			continue
		}
		var alg string
		if a, ok := k.Algorithm(); ok {
			alg = a.String()
		}
		if _, seen := out.keys[kid]; seen || dup[kid] {
			dup[kid] = true
			delete(out.keys, kid)
			continue
		}
		out.keys[kid] = publicKey{alg: alg, raw: pub}
	}
	if len(out.keys) == 0 {
		return nil, errors.New("no usable signing keys")
	}
	return out, nil
}

// refreshForKid re-fetches the JWKS because a token names a kid we do not
// have (the issuer rotated, or the token is forged). The kid itself is
// attacker-chosen, so it decides nothing but whether to refresh. It returns
// the key set to look in, which may be unchanged.
//
// Concurrent callers share one fetch, and a fetch that finds no new key
// (what every forged kid causes) closes the window for minRefresh: a flood
// of forged kids costs the issuer one request per interval. A fetch that
// does find new keys is a rotation, which forged tokens cannot cause; it
// leaves the window as it was, so the next rotation, or the next key of
// the same rotation, is fetched at once too. A new key is therefore
// refused for at most minRefresh, and only when some token with an unknown
// kid caused a fruitless fetch just before.
func (s *keySource) refreshForKid(ctx context.Context) *keySet {
	ch := s.sf.DoChan("kid-miss", func() (any, error) {
		now := s.clock()
		s.mu.Lock()
		if !s.lastForced.IsZero() && now.Sub(s.lastForced) < s.minRefresh {
			s.mu.Unlock()
			return nil, nil
		}
		prev := s.lastForced
		s.lastForced = now
		s.mu.Unlock()
		before := s.current()
		// The fetch serves every waiter, so one caller's cancellation must
		// not abort it; the timeout still bounds it.
		fctx := context.WithoutCancel(ctx)
		err := s.load(fctx)
		if err != nil {
			s.logger.LogAttrs(fctx, slog.LevelWarn, "jwks refresh for unknown kid failed",
				slog.String("issuer", s.name), slog.String("error", err.Error()))
		} else if after := s.current(); after.hasKeysNotIn(before) {
			s.mu.Lock()
			if s.lastForced.Equal(now) {
				s.lastForced = prev
			}
			s.mu.Unlock()
		}
		return nil, err
	})
	select {
	case <-ch:
	case <-ctx.Done():
	}
	return s.current()
}

// hasKeysNotIn reports whether s publishes a kid that old does not (old may
// be nil).
func (s *keySet) hasKeysNotIn(old *keySet) bool {
	for kid := range s.keys {
		if old == nil {
			return true
		}
		if _, ok := old.keys[kid]; !ok {
			return true
		}
	}
	return false
}
