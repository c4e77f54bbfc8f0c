// Package authn holds the authenticators that turn a request's
// credentials into an authz.Identity: Keycloak bearer JWTs (JWT) and the
// mTLS peer's SPIFFE ID.
//
// Each authenticator returns (nil, nil) when the request has no credential
// of its kind, a *authz.CredentialError (401) when the credential is present
// but unacceptable, and any other error for infrastructure failures (503),
// such as an issuer whose keys were never fetched.
//
// The JWT authenticator picks the issuer by the token's iss, verifies the
// signature against that issuer's JWKS only (never jku, x5u or an embedded
// jwk), and requires exp, aud and Keycloak's typ "Bearer". Verified tokens
// are cached by SHA-256 until the earlier of exp and the cache TTL.
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
