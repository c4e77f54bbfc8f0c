package authz

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Kind says what sort of caller an Identity is.
type Kind string

// Identity kinds.
const (
	KindAnonymous      Kind = "anonymous"
	KindUser           Kind = "user"
	KindServiceAccount Kind = "service_account"
	KindWorkload       Kind = "workload"
)

// Identity is the verified caller of one request.
type Identity struct {
	Kind Kind
	// Username is the MLflow username (users.username) the caller acts as.
	// Empty for anonymous callers and for workloads with no mapping.
	Username string
	// Subject is the token's sub claim, when there is one.
	Subject string
	// Groups are group names without Keycloak's leading "/".
	Groups []string
	// Roles are realm roles and "<client>/<role>" client roles.
	Roles []string
	// Admin is true when the token carries a configured admin group or role.
	// MLflow's users.is_admin is checked separately, by the store.
	Admin bool
	// SPIFFEID is the mTLS peer's SPIFFE ID when the identity came from it.
	SPIFFEID string
	// ClientID is the OAuth client of a token (azp / client_id).
	ClientID string
	// Issuer is the token issuer.
	Issuer string
	// Expiry is when the credential stops being valid (zero if it does not).
	Expiry time.Time
	// Method names the authenticator that produced the identity: jwt,
	// spiffe, session, basic or none.
	Method string
	// ResponseHeaders go to the client with whatever answer the request
	// gets, allow or deny: a browser session renewed while authenticating
	// sends its new cookie this way. Never logged.
	ResponseHeaders []Header
}

// Anonymous is the identity of a request that carried no credential.
var Anonymous = &Identity{Kind: KindAnonymous, Method: "none"}

// Authenticated reports whether the caller proved who it is.
func (id *Identity) Authenticated() bool {
	return id != nil && id.Kind != KindAnonymous
}

// InGroup reports whether the identity is a member of group (with or without
// Keycloak's leading "/").
func (id *Identity) InGroup(group string) bool {
	group = NormalizeGroup(group)
	for _, g := range id.Groups {
		if g == group {
			return true
		}
	}
	return false
}

// HasRole reports whether the identity has role.
func (id *Identity) HasRole(role string) bool {
	for _, r := range id.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// NormalizeGroup strips Keycloak's full-path leading "/" so that "/team-a" and
// "team-a" name the same group.
func NormalizeGroup(g string) string {
	if len(g) > 0 && g[0] == '/' {
		return g[1:]
	}
	return g
}

// LogValue keeps the decision log small and free of secrets.
func (id *Identity) LogValue() slog.Value {
	if id == nil {
		return slog.StringValue("")
	}
	// One allocation, sized for every field: appending to a two-element
	// literal grew it on each line of the decision log.
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("kind", string(id.Kind)), slog.String("method", id.Method))
	if id.Username != "" {
		attrs = append(attrs, slog.String("user", id.Username))
	}
	if id.SPIFFEID != "" {
		attrs = append(attrs, slog.String("spiffe_id", id.SPIFFEID))
	}
	if id.ClientID != "" {
		attrs = append(attrs, slog.String("client_id", id.ClientID))
	}
	if id.Admin {
		attrs = append(attrs, slog.Bool("admin", true))
	}
	return slog.GroupValue(attrs...)
}

// Authenticator finds and verifies one kind of credential.
//
// It returns (nil, nil) when the request carries no credential it
// understands, so the next authenticator in the chain can try. A credential
// that is present but invalid is a *CredentialError (a 401, never a fall
// through to anonymous). Any other error is an infrastructure failure (503).
type Authenticator interface {
	Authenticate(ctx context.Context, r *Request) (*Identity, error)
}

// CredentialError is a credential that is present but not acceptable.
type CredentialError struct {
	Reason  Reason
	Message string
	// Status is the HTTP status of the deny; zero means 401. A credential
	// that is valid but may not be used for this request (a session cookie
	// on a cross-site POST) is a 403.
	Status int
	// Challenge is the WWW-Authenticate value of the 401; empty means
	// Bearer error="invalid_token". A refused Basic credential asks for
	// Basic again.
	Challenge string
	// Foreign is true when the credential is well-formed but belongs to
	// someone else (say a Phoenix API key, or a JWT from an issuer we do not
	// know). Applications that let such credentials through untouched treat
	// the caller as anonymous; all others deny.
	Foreign bool
}

func (e *CredentialError) Error() string { return "authz: " + string(e.Reason) + ": " + e.Message }

// AsCredentialError returns the *CredentialError in err's chain, if any.
func AsCredentialError(err error) (*CredentialError, bool) {
	var ce *CredentialError
	ok := errors.As(err, &ce)
	return ce, ok
}
