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
	jwtServiceAccountPrefix = "service-account-"
	jwtMethod               = "jwt"
)

// identity validates verified claims and maps them to an Identity.
func (iss *jwtIssuer) identity(claims map[string]any, now time.Time) (*authz.Identity, error) {
	if s, _ := claims["iss"].(string); s != iss.cfg.Issuer {
		return nil, jwtForeign(ReasonTokenUnknownIssuer, "token issuer is not trusted here")
	}
	exp, ok, bad := jwtNumericDate(claims, "exp")
	switch {
	case bad:
		return nil, jwtDeny(ReasonTokenMalformed, "token exp is not a number")
	case !ok:
		return nil, jwtDeny(ReasonTokenMissingExp, "token has no expiry (exp)")
	case !now.Before(exp.Add(JWTClockSkew)):
		return nil, jwtDeny(ReasonTokenExpired, "token has expired")
	}
	for _, name := range []string{"nbf", "iat"} {
		t, ok, bad := jwtNumericDate(claims, name)
		if bad {
			return nil, jwtDeny(ReasonTokenMalformed, "token "+name+" is not a number")
		}
		if ok && now.Add(JWTClockSkew).Before(t) {
			return nil, jwtDeny(ReasonTokenNotYetValid, "token is not valid yet")
		}
	}
	if !iss.audienceOK(claims["aud"]) {
		return nil, jwtDeny(ReasonTokenWrongAudience, "token is not meant for this service (aud)")
	}
	// Keycloak marks access tokens "Bearer"; ID and refresh tokens say "ID"
	// and "Refresh" and must never pass as access tokens.
	if typ, _ := claims["typ"].(string); typ != "Bearer" {
		return nil, jwtDeny(ReasonTokenWrongType, "token is not an access token (typ)")
	}

	id := &authz.Identity{
		Kind:    authz.KindUser,
		Issuer:  iss.cfg.Issuer,
		Expiry:  exp,
		Method:  jwtMethod,
		Subject: jwtString(claims, "sub"),
	}
	azp := jwtString(claims, "azp")
	id.ClientID = azp

	preferred := jwtString(claims, "preferred_username")
	if strings.HasPrefix(preferred, jwtServiceAccountPrefix) {
		if err := iss.serviceAccount(id, claims, preferred); err != nil {
			return nil, err
		}
	} else {
		id.Username = jwtString(claims, iss.cfg.UsernameClaim)
		if id.Username == "" {
			return nil, jwtDeny(ReasonTokenMissingUsername, fmt.Sprintf(
				"token has no %q claim; if the client uses lightweight access tokens, enable \"Add to lightweight access token\" on that claim's mapper",
				iss.cfg.UsernameClaim))
		}
	}

	groups, ok := jwtStrings(claims[iss.cfg.GroupsClaim])
	if !ok {
		return nil, jwtDeny(ReasonTokenMalformed, "token groups claim is not a list of strings")
	}
	for k, g := range groups {
		groups[k] = authz.NormalizeGroup(g)
	}
	id.Groups = groups
	roles, err := jwtRoles(claims)
	if err != nil {
		return nil, err
	}
	id.Roles = roles
	id.Admin = slices.ContainsFunc(id.Groups, func(g string) bool { return slices.Contains(iss.adminGroups, g) }) ||
		slices.ContainsFunc(id.Roles, func(r string) bool { return slices.Contains(iss.cfg.AdminRoles, r) })
	return id, nil
}

// serviceAccount fills id for a client-credentials token. Keycloak names the
// service-account user "service-account-<clientId>" (lower-cased), with the
// client in client_id (older clients: clientId; azp as a last resort). We
// insist the two agree and that there is no user session (sid), so a human
// who registered a username starting with "service-account-" cannot pose as
// a client's service account.
func (iss *jwtIssuer) serviceAccount(id *authz.Identity, claims map[string]any, preferred string) error {
	client := jwtString(claims, "client_id")
	if client == "" {
		client = jwtString(claims, "clientId")
	}
	if client == "" {
		client = jwtString(claims, "azp")
	}
	if client == "" || !strings.EqualFold(preferred, jwtServiceAccountPrefix+client) || jwtString(claims, "sid") != "" {
		return jwtDeny(ReasonTokenBadServiceAcct, "service-account token does not match its client")
	}
	id.Kind = authz.KindServiceAccount
	id.ClientID = client
	if u, ok := iss.cfg.ServiceAccounts[client]; ok {
		id.Username = u
	} else {
		id.Username = jwtServiceAccountPrefix + client
	}
	return nil
}

func (iss *jwtIssuer) audienceOK(aud any) bool {
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

// jwtRoles collects realm roles and "<client>/<role>" client roles.
func jwtRoles(claims map[string]any) ([]string, error) {
	bad := jwtDeny(ReasonTokenMalformed, "token role claims are malformed")
	var roles []string
	if ra, ok := claims["realm_access"]; ok {
		m, ok := ra.(map[string]any)
		if !ok {
			return nil, bad
		}
		r, ok := jwtStrings(m["roles"])
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
			r, ok := jwtStrings(cm["roles"])
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

// jwtStrings converts a JSON array of strings; a missing value is an empty
// list, anything else is not ok.
func jwtStrings(v any) ([]string, bool) {
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

func jwtString(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// jwtNumericDate reads an RFC 7519 NumericDate. ok is false when absent;
// bad is true when present but not a finite number.
func jwtNumericDate(claims map[string]any, name string) (t time.Time, ok, bad bool) {
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
