// Package authn holds the authenticators: each turns one kind of credential
// on a request into an authz.Identity.
//
// # The chain
//
// config.Build puts the authenticators in authz.Engine.Authenticators, and
// the engine runs them in order; the first one that finds its credential
// decides. Each authenticator returns
//   - (nil, nil) when the request carries no credential of its kind, so the
//     next one can try; when none finds one, the caller is anonymous;
//   - an identity when the credential verifies;
//   - a *authz.CredentialError when the credential is present but
//     unacceptable: a 401 with a stable reason, never a fall-through to
//     anonymous. A Foreign one (a JWT of an issuer we do not know, a bearer
//     token that is no JWT) may belong to the application itself, and apps
//     that pass such credentials through treat the caller as anonymous;
//   - any other error for an infrastructure failure (a 503), such as an
//     issuer whose keys were never fetched.
//
// The order is: bearer JWT, then Basic credentials (both read the
// Authorization header, and a request carries one scheme or the other),
// then the browser session cookie, then the mTLS peer's SPIFFE ID last,
// because at an application's sidecar every browser request arrives from
// the ingress gateway's principal, which must never outrank the user's own
// credential.
//
// # Layout
//
// One file per authenticator, with its config, constructor, Authenticate
// and deny reasons:
//   - jwt.go: JWT, bearer token signature verification for one or more
//     issuers (Keycloak realms), configured by IssuerConfig (issuerconfig.go)
//     and read from the "Authorization" header by bearer.go;
//   - basic.go: Basic, "Authorization: Basic" usernames and passwords
//     checked against MLflow's users.password_hash (or, per issuer, an
//     access token as the password), configured by BasicConfig;
//   - spiffe.go: SPIFFE, mTLS peers (Envoy's source principal) mapped to
//     users by SPIFFEConfig, and ParseSPIFFEID;
//   - session.go: Sessions, the browser session cookie (sealed with the
//     keys of SessionConfig, cached by hash, CSRF-checked), and the cookie
//     codec;
//   - login.go: Login, one application's OpenID Connect sign-in (an
//     authz.Login), configured by LoginConfig: which requests are a
//     browser's (navigation.go), the redirect to the issuer, the callback
//     and its ID token (callback.go), and a signed-in session's refresh and
//     logout (refresh.go).
//
// and the files that support them:
//   - claims.go: verified Keycloak access-token claims to an Identity
//     (username, service accounts, groups, roles, admin);
//   - jwks.go: each issuer's keys, from OpenID Connect discovery and the JWKS,
//     refreshed in the background and on an unknown kid (rate-limited);
//   - passwordhash.go: werkzeug's password hashes (scrypt and
//     pbkdf2:sha256), parsed with bounded parameters and checked in
//     constant time;
//   - failurelimit.go: the per-username limit on wrong passwords;
//   - tokencache.go: TokenCache, verified tokens by SHA-256 until the
//     earlier of exp and the cache TTL.
//
// Helpers every authenticator may use (deny, denyForeign, hasControl) carry
// no authenticator's name. Subpackage devissuer is a development token
// issuer for the demo and the tests; authntest wraps it for tests.
//
// # JWT
//
// The JWT authenticator picks the issuer by the token's iss, verifies the
// signature against that issuer's JWKS only (never jku, x5u or an embedded
// jwk: RFC 8725 section 3.10), accepts only the asymmetric algorithms
// configured for the issuer (RS*, PS*, ES*; never none or HS*: RFC 8725
// section 3.1), and requires exp, aud and Keycloak's typ "Bearer".
//
//	jwt, err := authn.NewJWT(ctx, []authn.IssuerConfig{{
//		Issuer:    "https://sso.example.com/realms/ml",
//		Audiences: []string{"mlflow"},
//	}})
//	if err != nil {
//		return err
//	}
//	defer jwt.Close()
//	id, err := jwt.Authenticate(ctx, req)
package authn
