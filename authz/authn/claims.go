package authn

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

const (
	// serviceAccountPrefix starts the username Keycloak gives a client's
	// service-account user.
	serviceAccountPrefix = "service-account-"
	// jwtMethod is the Identity.Method of identities proven by a bearer
	// JWT. Each authenticator has its own (SPIFFEMethod for mTLS peers).
	jwtMethod = "jwt"
)

// identity validates verified claims and maps them to an Identity.
func (iss *issuer) identity(claims map[string]any, now time.Time) (*authz.Identity, error) {
	if s, _ := claims["iss"].(string); s != iss.cfg.Issuer {
		return nil, denyForeign(ReasonTokenUnknownIssuer, "token issuer is not trusted here")
	}
	exp, ok, bad := numericDate(claims, "exp")
	switch {
	case bad:
		return nil, deny(ReasonTokenMalformed, "token exp is not a number")
	case !ok:
		return nil, deny(ReasonTokenMissingExp, "token has no expiry (exp)")
	case !now.Before(exp.Add(JWTClockSkew)):
		return nil, deny(ReasonTokenExpired, "token has expired")
	}
	for _, name := range []string{"nbf", "iat"} {
		t, ok, bad := numericDate(claims, name)
		if bad {
			return nil, deny(ReasonTokenMalformed, "token "+name+" is not a number")
		}
		if ok && now.Add(JWTClockSkew).Before(t) {
			return nil, deny(ReasonTokenNotYetValid, "token is not valid yet")
		}
	}
	if !iss.audienceOK(claims["aud"]) {
		return nil, deny(ReasonTokenWrongAudience, "token is not meant for this service (aud)")
	}
	generic := iss.cfg.Profile == ProfileGeneric
	typ, hasTyp := claims["typ"]
	switch {
	// Keycloak marks access tokens "Bearer"; ID, refresh and logout tokens
	// say "ID", "Refresh" and "Logout" (org.keycloak.util.TokenUtil) and
	// must never pass as access tokens.
	case !generic && typ != "Bearer":
		return nil, deny(ReasonTokenWrongType, "token is not an access token (typ)")
	// Other providers type access tokens in the header (RFC 9068 section
	// 2.1: at+jwt), or not at all; a typ claim other than Keycloak's
	// "Bearer" says it is another kind of token.
	case generic && hasTyp && typ != "Bearer":
		return nil, deny(ReasonTokenWrongType, "token is not an access token (typ)")
	}

	id := &authz.Identity{
		Kind:    authz.KindUser,
		Issuer:  iss.cfg.Issuer,
		Expiry:  exp,
		Method:  jwtMethod,
		Subject: claimString(claims, "sub"),
	}
	if generic {
		if err := iss.genericUser(id, claims); err != nil {
			return nil, err
		}
	} else {
		id.ClientID = claimString(claims, "azp")
		preferred := claimString(claims, "preferred_username")
		if strings.HasPrefix(preferred, serviceAccountPrefix) {
			if err := iss.serviceAccount(id, claims, preferred); err != nil {
				return nil, err
			}
		} else if id.Username = iss.username(claims); id.Username == "" {
			return nil, deny(ReasonTokenMissingUsername, fmt.Sprintf(
				"token has none of the claims %q; if the client uses lightweight access tokens, enable \"Add to lightweight access token\" on that claim's mapper",
				[]string(iss.cfg.UsernameClaim)))
		}
	}

	groups, ok := claimList(claims, iss.cfg.GroupsClaim, generic)
	if !ok {
		return nil, deny(ReasonTokenMalformed, "token groups claim is not a list of strings")
	}
	for k, g := range groups {
		groups[k] = authz.NormalizeGroup(g)
	}
	id.Groups = groups
	var roles []string
	if !generic {
		var err error
		if roles, err = keycloakRoles(claims); err != nil {
			return nil, err
		}
	}
	if iss.cfg.RolesClaim != "" {
		more, ok := claimList(claims, iss.cfg.RolesClaim, generic)
		if !ok {
			return nil, deny(ReasonTokenMalformed, "token roles claim is not a list of strings")
		}
		roles = append(roles, more...)
	}
	id.Roles = roles
	id.Admin = slices.ContainsFunc(id.Groups, func(g string) bool { return slices.Contains(iss.adminGroups, g) }) ||
		slices.ContainsFunc(id.Roles, func(r string) bool { return slices.Contains(iss.cfg.AdminRoles, r) })
	return id, nil
}

// serviceAccount fills id for a client-credentials token. Keycloak names the
// service-account user "service-account-<clientId>" (lower-cased; the prefix
// is ServiceAccountConstants.SERVICE_ACCOUNT_USER_PREFIX), with the
// client in client_id (older clients: clientId; azp as a last resort). We
// insist the two agree and that there is no user session (sid), so a human
// who registered a username starting with "service-account-" cannot pose as
// a client's service account.
func (iss *issuer) serviceAccount(id *authz.Identity, claims map[string]any, preferred string) error {
	client := claimString(claims, "client_id")
	if client == "" {
		client = claimString(claims, "clientId")
	}
	if client == "" {
		client = claimString(claims, "azp")
	}
	if client == "" || !strings.EqualFold(preferred, serviceAccountPrefix+client) || claimString(claims, "sid") != "" {
		return deny(ReasonTokenBadServiceAcct, "service-account token does not match its client")
	}
	id.Kind = authz.KindServiceAccount
	id.ClientID = client
	if u, ok := iss.cfg.ServiceAccounts[client]; ok {
		id.Username = u
	} else {
		id.Username = serviceAccountPrefix + client
	}
	return nil
}

// username returns the first of the issuer's username claims that the
// token carries as a non-empty string.
func (iss *issuer) username(claims map[string]any) string {
	for _, name := range iss.cfg.UsernameClaim {
		if v, ok := claimAt(claims, name); ok {
			if s, _ := v.(string); s != "" {
				return s
			}
		}
	}
	return ""
}

// genericUser fills id for the generic profile. The client is client_id
// (RFC 9068 section 2.2) or else azp. A token whose sub is its client is a
// client-credentials token, which RFC 9068 section 2.2 says carries the
// client's identifier as sub: it acts as the client's service account,
// named as Keycloak names them unless service_accounts maps it. Any other
// token is a person's, and may not take a name of the service-account
// form, which would give it a client's grants.
func (iss *issuer) genericUser(id *authz.Identity, claims map[string]any) error {
	client := claimString(claims, "client_id")
	if client == "" {
		client = claimString(claims, "azp")
	}
	id.ClientID = client
	if client != "" && id.Subject == client {
		id.Kind = authz.KindServiceAccount
		if u, ok := iss.cfg.ServiceAccounts[client]; ok {
			id.Username = u
		} else {
			id.Username = serviceAccountPrefix + client
		}
		return nil
	}
	id.Username = iss.username(claims)
	switch {
	case id.Username == "":
		return deny(ReasonTokenMissingUsername, fmt.Sprintf("token has none of the claims %q", []string(iss.cfg.UsernameClaim)))
	case strings.HasPrefix(strings.ToLower(id.Username), serviceAccountPrefix):
		return deny(ReasonTokenBadServiceAcct, "a person's token may not name a service account")
	}
	return nil
}

// claimAt returns the claim called name: the top-level claim of exactly
// that name when there is one (namespaced claims such as
// "https://example.com/roles" hold dots), else the value at the dotted
// path through nested objects ("realm_access.roles").
func claimAt(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// claimList reads a list of strings at name. A missing claim is an empty
// list; with single, a lone string is a list of one (some providers write
// one group as a string).
func claimList(claims map[string]any, name string, single bool) ([]string, bool) {
	v, _ := claimAt(claims, name)
	if s, ok := v.(string); ok && single {
		return []string{s}, true
	}
	return stringArray(v)
}

// audienceOK reports whether aud, one string or an array of them (RFC 7519
// section 4.1.3), names one of the issuer's audiences.
func (iss *issuer) audienceOK(aud any) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(iss.audiences, a)
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(iss.audiences, s) {
				return true
			}
		}
	}
	return false
}

// keycloakRoles collects the realm roles (realm_access.roles) and the client
// roles (resource_access.<client>.roles, as "<client>/<role>") that
// Keycloak's role mappers write into access tokens.
func keycloakRoles(claims map[string]any) ([]string, error) {
	bad := deny(ReasonTokenMalformed, "token role claims are malformed")
	var roles []string
	if ra, ok := claims["realm_access"]; ok {
		m, ok := ra.(map[string]any)
		if !ok {
			return nil, bad
		}
		r, ok := stringArray(m["roles"])
		if !ok {
			return nil, bad
		}
		roles = append(roles, r...)
	}
	if ra, ok := claims["resource_access"]; ok {
		m, ok := ra.(map[string]any)
		if !ok {
			return nil, bad
		}
		clients := make([]string, 0, len(m))
		for c := range m {
			clients = append(clients, c)
		}
		slices.Sort(clients) // stable order for logs and tests
		for _, c := range clients {
			cm, ok := m[c].(map[string]any)
			if !ok {
				return nil, bad
			}
			r, ok := stringArray(cm["roles"])
			if !ok {
				return nil, bad
			}
			for _, role := range r {
				roles = append(roles, c+"/"+role)
			}
		}
	}
	return roles, nil
}

// stringArray converts a JSON array of strings; a missing value is an empty
// list, anything else is not ok.
func stringArray(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	a, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// claimString returns the claim if it is a string, else "".
func claimString(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// numericDate reads an RFC 7519 NumericDate. ok is false when absent;
// bad is true when present but not a finite number.
func numericDate(claims map[string]any, name string) (t time.Time, ok, bad bool) {
	v, present := claims[name]
	if !present {
		return time.Time{}, false, false
	}
	f, isNum := v.(float64)
	if !isNum || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false, true
	}
	// Clamp so absurd values cannot overflow int64 nanoseconds.
	const maxSec = 1 << 40
	f = max(min(f, maxSec), -maxSec)
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, false
}
