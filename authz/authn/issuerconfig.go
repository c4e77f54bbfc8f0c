package authn

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// defaultAlgorithms are the asymmetric algorithms Keycloak realm keys sign
// with (RS256 unless configured otherwise). HMAC is never acceptable: the
// realm's HMAC keys are secret to Keycloak, and accepting HS* is how "sign
// with the public key as secret" attacks work (RFC 8725 section 2.1).
var defaultAlgorithms = []string{"RS256", "ES256", "PS256"}

// allowedAlgorithms are the only algorithms a config may list.
var allowedAlgorithms = map[string]jwa.SignatureAlgorithm{
	"RS256": jwa.RS256(), "RS384": jwa.RS384(), "RS512": jwa.RS512(),
	"PS256": jwa.PS256(), "PS384": jwa.PS384(), "PS512": jwa.PS512(),
	"ES256": jwa.ES256(), "ES384": jwa.ES384(), "ES512": jwa.ES512(),
}

// IssuerConfig configures one trusted token issuer (one Keycloak realm).
type IssuerConfig struct {
	// Name identifies the issuer in logs and errors. Defaults to Issuer.
	Name string `yaml:"name"`
	// Issuer is the exact iss claim, scheme and port included.
	Issuer string `yaml:"issuer"`
	// DiscoveryURL is read once at start for jwks_uri. Defaults to
	// <issuer>/.well-known/openid-configuration.
	DiscoveryURL string `yaml:"discovery_url"`
	// JWKSURL, when set, skips discovery.
	JWKSURL string `yaml:"jwks_url"`
	// Audiences are the accepted aud values; a token must carry at least one.
	Audiences []string `yaml:"audiences"`
	// Profile is the kind of provider: keycloak (the default: Keycloak's
	// access tokens, typ "Bearer", realm and client roles, service accounts
	// by preferred_username) or generic (any OpenID provider: RFC 9068
	// access tokens or tokens with no typ claim, the client in client_id
	// or azp, a client-credentials token when sub is the client).
	Profile string `yaml:"profile"`
	// UsernameClaim names the claims that may hold the MLflow username, in
	// order; the first the token carries as a non-empty string wins. A name
	// is a top-level claim or a dotted path into nested objects. Defaults
	// to preferred_username (keycloak) or sub (generic).
	UsernameClaim ClaimNames `yaml:"username_claim"`
	// GroupsClaim holds group paths: a claim name or a dotted path.
	// Defaults to groups.
	GroupsClaim string `yaml:"groups_claim"`
	// RolesClaim holds more roles: a claim name or a dotted path. Unset,
	// the keycloak profile reads realm_access and resource_access, and the
	// generic profile reads no roles.
	RolesClaim string `yaml:"roles_claim"`
	// AdminGroups make their members Identity.Admin.
	AdminGroups []string `yaml:"admin_groups"`
	// AdminRoles (realm roles, or "<client>/<role>") make holders Identity.Admin.
	AdminRoles []string `yaml:"admin_roles"`
	// Algorithms is the signature allowlist. Defaults to RS256, ES256, PS256.
	Algorithms []string `yaml:"algorithms"`
	// BasicPassword accepts this issuer's access tokens as the password of
	// Basic credentials whose username is the token's, for tools that can
	// send only a username and a password.
	BasicPassword bool `yaml:"basic_password"`
	// ServiceAccounts maps a client id to the MLflow username its
	// client-credentials tokens act as. Unmapped clients act as
	// service-account-<client>.
	ServiceAccounts map[string]string `yaml:"service_accounts"`
	// JWKSRefreshInterval is the background JWKS refresh period.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// JWKSMinRefreshInterval rate-limits refreshes caused by unknown kids
	// that bring no new key.
	JWKSMinRefreshInterval time.Duration `yaml:"jwks_min_refresh_interval"`
	// HTTPTimeout bounds each discovery and JWKS request.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
}

// Issuer profiles (IssuerConfig.Profile).
const (
	ProfileKeycloak = "keycloak"
	ProfileGeneric  = "generic"
)

// ClaimNames is one claim name or an ordered list of them. In YAML it is a
// string or a list of strings.
type ClaimNames []string

// UnmarshalYAML accepts a single name or a list of names.
func (c *ClaimNames) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		*c = ClaimNames{one}
		return nil
	}
	var list []string
	if err := unmarshal(&list); err != nil {
		return errors.New("want a claim name or a list of claim names")
	}
	*c = list
	return nil
}

// Validate checks one issuer's config. Errors name the offending key
// relative to the issuer ("audiences: ..."), for the config loader to prefix.
func (c IssuerConfig) Validate() error {
	_, err := c.compile()
	return err
}

// compile validates c and fills in its defaults.
func (c IssuerConfig) compile() (IssuerConfig, error) {
	if c.Issuer == "" {
		return c, errors.New("issuer: required")
	}
	if c.Name == "" {
		c.Name = c.Issuer
	}
	if c.JWKSURL != "" {
		if err := checkHTTPURL(c.JWKSURL); err != nil {
			return c, fmt.Errorf("jwks_url: %w", err)
		}
	} else {
		if c.DiscoveryURL == "" {
			c.DiscoveryURL = strings.TrimSuffix(c.Issuer, "/") + "/.well-known/openid-configuration"
		}
		if err := checkHTTPURL(c.DiscoveryURL); err != nil {
			return c, fmt.Errorf("discovery_url: %w", err)
		}
	}
	if len(c.Audiences) == 0 {
		return c, errors.New("audiences: at least one audience is required")
	}
	if slices.Contains(c.Audiences, "") {
		return c, errors.New("audiences: empty audience")
	}
	switch c.Profile {
	case "":
		c.Profile = ProfileKeycloak
	case ProfileKeycloak, ProfileGeneric:
	default:
		return c, fmt.Errorf("profile: %q is not %s or %s", c.Profile, ProfileKeycloak, ProfileGeneric)
	}
	if slices.Contains(c.UsernameClaim, "") {
		return c, errors.New("username_claim: empty claim name")
	}
	if len(c.UsernameClaim) == 0 {
		c.UsernameClaim = ClaimNames{"preferred_username"}
		if c.Profile == ProfileGeneric {
			// OpenID Connect Core 1.0 section 5.7: only iss and sub are
			// stable and unique; other providers may let people choose
			// their preferred_username.
			c.UsernameClaim = ClaimNames{"sub"}
		}
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = defaultAlgorithms
	}
	for _, a := range c.Algorithms {
		if _, ok := allowedAlgorithms[a]; !ok {
			return c, fmt.Errorf("algorithms: %q is not allowed (only RS*, PS* and ES*; never none or HS*)", a)
		}
	}
	for client, user := range c.ServiceAccounts {
		if client == "" || user == "" {
			return c, errors.New("service_accounts: empty client id or username")
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"jwks_refresh_interval", &c.JWKSRefreshInterval, JWTDefaultRefreshInterval},
		{"jwks_min_refresh_interval", &c.JWKSMinRefreshInterval, JWTDefaultMinRefreshInterval},
		{"http_timeout", &c.HTTPTimeout, JWTDefaultHTTPTimeout},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("%s: must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return c, nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}
