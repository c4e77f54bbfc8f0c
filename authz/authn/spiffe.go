package authn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// SPIFFEMethod is the Identity.Method of identities proven by an mTLS peer
// certificate.
const SPIFFEMethod = "spiffe"

// maxSPIFFEIDLength is the longest SPIFFE ID, in bytes (SPIFFE-ID
// specification section 2.3, https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md).
const maxSPIFFEIDLength = 2048

const spiffeScheme = "spiffe://"

// SPIFFEConfig maps mTLS peers to MLflow users. It is the `spiffe:` block of
// the configuration.
type SPIFFEConfig struct {
	// TrustDomain is the mesh's trust domain (meshConfig.trustDomain),
	// usually "cluster.local".
	TrustDomain string `yaml:"trust_domain"`
	// TrustDomainAliases are trust domains treated as TrustDomain, as Istio
	// does with meshConfig.trustDomainAliases.
	TrustDomainAliases []string `yaml:"trust_domain_aliases"`
	// Workloads are the peers that act as a user.
	Workloads []SPIFFEWorkloadConfig `yaml:"workloads"`
}

// SPIFFEWorkloadConfig maps one workload to the user it acts as.
type SPIFFEWorkloadConfig struct {
	// ID is "ns/<namespace>/sa/<service account>", relative to the trust
	// domain, or a full "spiffe://<trust domain>/<path>" ID in the trust
	// domain or one of its aliases.
	ID string `yaml:"id"`
	// Username is the MLflow user the workload acts as. Required.
	Username string `yaml:"username"`
	// Groups are the groups the workload belongs to (a leading "/" is
	// ignored).
	Groups []string `yaml:"groups"`
}

// SPIFFE authenticates a request by its mTLS peer, as Envoy reports it in
// attributes.source.principal (Request.Principal).
//
// It never reads x-forwarded-client-cert: Istio sidecars run APPEND_FORWARD,
// so on a plaintext (PERMISSIVE mode) connection a client-sent XFCC header
// reaches us unchanged, and anyone could claim any workload with it.
//
// A peer that is not listed is not an identity: at an application sidecar
// every browser request arrives from the ingress gateway's principal, so an
// unmapped principal proves nothing about the user. Such requests stay
// anonymous (their principal is still on the Request for rules that match
// mTLS peers, such as trace writers). Peers from foreign trust domains and
// unparsable principals are treated the same way.
//
// The engine runs SPIFFE last, after the bearer-token authenticators, so a
// token sent through a mapped workload's sidecar still wins.
type SPIFFE struct {
	// byID holds one entry per workload and accepted trust domain, keyed by
	// the full canonical SPIFFE ID. Keys are valid IDs, so an exact string
	// match needs no parsing on the hot path. The identities are shared
	// between requests and must be treated as read-only.
	byID map[string]*authz.Identity
}

// NewSPIFFE validates cfg and returns its authenticator. An empty cfg (no
// trust domain, aliases or workloads: the `spiffe:` block left out) is valid
// and identifies nobody.
func NewSPIFFE(cfg SPIFFEConfig) (*SPIFFE, error) {
	if cfg.TrustDomain == "" && len(cfg.TrustDomainAliases) == 0 && len(cfg.Workloads) == 0 {
		return &SPIFFE{byID: map[string]*authz.Identity{}}, nil
	}
	if err := checkTrustDomain(cfg.TrustDomain); err != nil {
		return nil, fmt.Errorf("authn: spiffe: trust_domain: %w", err)
	}
	domains := []string{cfg.TrustDomain}
	for i, a := range cfg.TrustDomainAliases {
		if err := checkTrustDomain(a); err != nil {
			return nil, fmt.Errorf("authn: spiffe: trust_domain_aliases[%d]: %w", i, err)
		}
		for _, d := range domains {
			if d == a {
				return nil, fmt.Errorf("authn: spiffe: trust_domain_aliases[%d]: %q is listed twice", i, a)
			}
		}
		domains = append(domains, a)
	}

	s := &SPIFFE{byID: map[string]*authz.Identity{}}
	seen := map[string]int{} // workload path → index, across all domains
	for i, w := range cfg.Workloads {
		path, err := workloadPath(w.ID, domains)
		if err != nil {
			return nil, fmt.Errorf("authn: spiffe: workloads[%d].id: %w", i, err)
		}
		if prev, dup := seen[path]; dup {
			return nil, fmt.Errorf("authn: spiffe: workloads[%d].id: %q names the same workload as workloads[%d]", i, w.ID, prev)
		}
		seen[path] = i
		if w.Username == "" {
			return nil, fmt.Errorf("authn: spiffe: workloads[%d].username: required", i)
		}
		if strings.TrimSpace(w.Username) != w.Username || hasControl(w.Username) {
			return nil, fmt.Errorf("authn: spiffe: workloads[%d].username: %q has surrounding spaces or control characters", i, w.Username)
		}
		groups := make([]string, 0, len(w.Groups))
		for j, g := range w.Groups {
			g = authz.NormalizeGroup(g)
			if g == "" || hasControl(g) {
				return nil, fmt.Errorf("authn: spiffe: workloads[%d].groups[%d]: empty or invalid group name", i, j)
			}
			groups = append(groups, g)
		}
		for _, d := range domains {
			id := spiffeScheme + d + path
			s.byID[id] = &authz.Identity{
				Kind:     authz.KindWorkload,
				Username: w.Username,
				Groups:   groups,
				SPIFFEID: id,
				Method:   SPIFFEMethod,
			}
		}
	}
	return s, nil
}

// Authenticate returns the workload identity of the request's mTLS peer, or
// (nil, nil) when the peer is absent, unmapped, foreign or unparsable. It
// never fails: a peer certificate was already verified by Envoy, so there is
// no "invalid credential" case here.
func (s *SPIFFE) Authenticate(ctx context.Context, r *authz.Request) (*authz.Identity, error) {
	if r.Principal == "" {
		return nil, nil
	}
	id := s.byID[r.Principal]
	if tr := authz.TraceFrom(ctx); tr != nil {
		if id != nil {
			tr.Addf("identity", "mTLS peer %s is workload user %q", r.Principal, id.Username)
		} else {
			tr.Addf("identity", "mTLS peer %s is not a configured workload; not used as an identity", r.Principal)
		}
	}
	if id == nil {
		return nil, nil
	}
	return id, nil
}

// workloadPath returns the SPIFFE path of a configured workload id, checking
// that a full ID lies in one of our trust domains: a foreign one could never
// match, since Authenticate ignores foreign peers.
func workloadPath(id string, domains []string) (string, error) {
	if strings.HasPrefix(id, spiffeScheme) {
		td, path, err := ParseSPIFFEID(id)
		if err != nil {
			return "", err
		}
		if path == "" {
			return "", fmt.Errorf("%q is a trust domain, not a workload", id)
		}
		for _, d := range domains {
			if d == td {
				return path, nil
			}
		}
		return "", fmt.Errorf("%q is outside trust domain %s and its aliases", id, domains[0])
	}
	segs := strings.Split(id, "/")
	if len(segs) != 4 || segs[0] != "ns" || segs[2] != "sa" {
		return "", fmt.Errorf("%q is neither ns/<namespace>/sa/<service account> nor a spiffe:// ID", id)
	}
	path := "/" + id
	if _, _, err := ParseSPIFFEID(spiffeScheme + domains[0] + path); err != nil {
		return "", err
	}
	return path, nil
}

// ErrInvalidSPIFFEID is wrapped by every ParseSPIFFEID error.
var ErrInvalidSPIFFEID = errors.New("invalid SPIFFE ID")

// ParseSPIFFEID splits a SPIFFE ID into its trust domain and path, following
// the SPIFFE-ID specification
// (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md)
// strictly: scheme "spiffe://", a non-empty lower-case trust domain of
// [a-z0-9.-_], and an optional path of non-empty segments of [a-zA-Z0-9.-_]
// that are not "." or "..". Percent-encoding,
// user info, ports, queries and fragments are all refused, and the whole ID
// is at most 2048 bytes. The path is "" for a trust-domain ID, otherwise it
// starts with "/". For every accepted s, "spiffe://"+trustDomain+path == s.
func ParseSPIFFEID(s string) (trustDomain, path string, err error) {
	if len(s) > maxSPIFFEIDLength {
		return "", "", fmt.Errorf("authn: %w: longer than %d bytes", ErrInvalidSPIFFEID, maxSPIFFEIDLength)
	}
	rest, ok := strings.CutPrefix(s, spiffeScheme)
	if !ok {
		return "", "", fmt.Errorf("authn: %w: scheme is not spiffe://", ErrInvalidSPIFFEID)
	}
	td, _, _ := strings.Cut(rest, "/")
	if err := checkTrustDomain(td); err != nil {
		return "", "", err
	}
	if len(td) == len(rest) {
		return td, "", nil
	}
	path = rest[len(td):]
	for seg := range strings.SplitSeq(path[1:], "/") {
		switch seg {
		case "":
			return "", "", fmt.Errorf("authn: %w: empty path segment", ErrInvalidSPIFFEID)
		case ".", "..":
			return "", "", fmt.Errorf("authn: %w: dot segment in path", ErrInvalidSPIFFEID)
		}
		for i := 0; i < len(seg); i++ {
			if !isPathChar(seg[i]) {
				return "", "", fmt.Errorf("authn: %w: character %q not allowed in path", ErrInvalidSPIFFEID, seg[i])
			}
		}
	}
	return td, path, nil
}

func checkTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("authn: %w: empty trust domain", ErrInvalidSPIFFEID)
	}
	if len(spiffeScheme)+len(td) > maxSPIFFEIDLength {
		return fmt.Errorf("authn: %w: trust domain too long", ErrInvalidSPIFFEID)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("authn: %w: character %q not allowed in trust domain (lower-case letters, digits, '.', '-', '_')", ErrInvalidSPIFFEID, c)
		}
	}
	return nil
}

func isPathChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_'
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
