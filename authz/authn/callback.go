package authn

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// callback finishes a login: the state must match a login-state cookie of
// this browser (sealed by us for this host, not expired), the code must
// exchange with our PKCE verifier, the ID token must verify with its
// nonce, and the access token must pass exactly as a bearer token would.
// Success is a 302 back to where the login started, with the session
// cookie; every failure is a page offering a fresh login.
func (l *Login) callback(ctx context.Context, r *authz.Request) authz.Decision {
	q, err := r.Query()
	if err != nil || q.Count("state") != 1 || q.Count("code") > 1 || q.Count("error") > 1 {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid, "This sign-in link is not valid.", "/")
	}
	state := q.Get("state")
	if len(state) != stateBytesEncoded {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid, "This sign-in link is not valid.", "/")
	}
	name := l.flowCookieName(state)
	value, n := findCookie(r.Header("cookie"), name)
	if n != 1 {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid,
			"This browser did not start this sign-in, or it was already finished.", "/")
	}
	clearFlow := authz.Header{Name: "set-cookie", Value: setCookie(name, "", 0)}
	f, err := decodeFlowCookie(l.keys.ring, r.Host, value)
	if err != nil || subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) != 1 {
		return l.page(http.StatusBadRequest, ReasonLoginStateInvalid, "This sign-in link is not valid.", "/", clearFlow)
	}
	back := f.Return
	if !SafeReturnPath(back) {
		back = "/"
	}
	now := l.clock()
	if now.Unix() > f.Expiry {
		return l.page(http.StatusBadRequest, ReasonLoginStateExpired, "This sign-in took too long.", back, clearFlow)
	}
	if e := q.Get("error"); e != "" {
		return l.page(http.StatusBadRequest, ReasonLoginProviderError,
			"The identity provider did not sign you in ("+oauthErrorCode(e)+").", back, clearFlow)
	}
	code := q.Get("code")
	if code == "" {
		return l.page(http.StatusBadRequest, ReasonLoginCodeRejected, "The identity provider sent no authorization code.", back, clearFlow)
	}
	ep, err := l.endpoints(ctx)
	if err != nil {
		return l.page(http.StatusServiceUnavailable, authz.ReasonUnavailable, "The identity provider cannot be reached right now.", back, clearFlow)
	}
	tok, err := l.oauth(ep, l.redirectURI(r)).Exchange(l.httpContext(ctx), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		if rejectedByProvider(err) {
			return l.page(http.StatusBadRequest, ReasonLoginCodeRejected, "The identity provider refused this sign-in (the code was used or has expired).", back, clearFlow)
		}
		l.log.LogAttrs(ctx, slog.LevelWarn, "login code exchange failed", slog.String("issuer", l.iss.cfg.Name), slog.String("error", err.Error()))
		return l.page(http.StatusServiceUnavailable, authz.ReasonUnavailable, "The identity provider cannot be reached right now.", back, clearFlow)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idClaims, cerr := l.verifyIDToken(ctx, rawID, f.Nonce, now)
	if cerr != nil {
		return l.page(http.StatusBadRequest, cerr.Reason, cerr.Message, back, clearFlow)
	}
	id, err := l.jwt.verifyWith(ctx, l.iss, tok.AccessToken, now)
	if err != nil {
		if ce, ok := authz.AsCredentialError(err); ok {
			return l.page(http.StatusBadRequest, ReasonLoginTokenRefused,
				"The identity provider's access token is not accepted here: "+ce.Message+".", back, clearFlow)
		}
		return l.page(http.StatusServiceUnavailable, authz.ReasonUnavailable, "The identity provider's keys cannot be read right now.", back, clearFlow)
	}
	if sub := claimString(idClaims, "sub"); id.Subject != "" && sub != id.Subject {
		return l.page(http.StatusBadRequest, ReasonLoginIDTokenInvalid, "The ID token and the access token name different users.", back, clearFlow)
	}
	st := &sessionState{
		Issuer: l.iss.cfg.Issuer, User: id.Username, Groups: id.Groups, Roles: id.Roles, Admin: id.Admin,
		Expiry: id.Expiry.Unix(), End: now.Add(l.keys.cfg.MaxAge).Unix(), Refresh: tok.RefreshToken,
	}
	cookie, err := l.sealSession(r.Host, st, now)
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelError, "login session does not fit a cookie", slog.String("user", id.Username), slog.Int("groups", len(id.Groups)))
		return l.page(http.StatusBadRequest, ReasonLoginSessionTooLarge,
			"Your account has too many groups or roles to fit a browser session; ask an administrator to trim what the token carries.", back, clearFlow)
	}
	d := authz.Deny(http.StatusFound, ReasonLoginComplete, "signed in")
	d.Identity = st.identity(l.cfg.ClientID)
	d.ResponseHeaders = []authz.Header{
		{Name: "location", Value: back},
		{Name: "cache-control", Value: "no-store"},
		{Name: "set-cookie", Value: cookie},
		clearFlow,
	}
	return d
}

// verifyWith verifies an access token exactly as a bearer token, and
// insists that iss issued it.
func (j *JWT) verifyWith(ctx context.Context, iss *issuer, token string, now time.Time) (*authz.Identity, error) {
	id, err := j.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	if id.Issuer != iss.cfg.Issuer {
		return nil, deny(ReasonTokenUnknownIssuer, "the access token comes from another issuer")
	}
	return id, nil
}

// oauthErrorCode keeps an RFC 6749 error code for a page: its own
// characters only (section 5.2), so nothing a link could inject reaches it.
func oauthErrorCode(e string) string {
	if len(e) > 64 {
		e = e[:64]
	}
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return -1
	}, e)
}

// rejectedByProvider reports whether the token endpoint itself refused
// (a 4xx or an OAuth error), as opposed to being unreachable or failing.
func rejectedByProvider(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	return re.Response == nil || re.Response.StatusCode < 500
}

// verifyIDToken checks the ID token as OpenID Connect Core 1.0 section
// 3.1.3.7 asks: the issuer's signature, iss, aud naming our client (and
// azp, when present, being it), exp, and the nonce of this login.
func (l *Login) verifyIDToken(ctx context.Context, raw, nonce string, now time.Time) (map[string]any, *authz.CredentialError) {
	bad := func(msg string) *authz.CredentialError { return deny(ReasonLoginIDTokenInvalid, msg) }
	if raw == "" || len(raw) > JWTMaxTokenSize {
		return nil, bad("The identity provider sent no usable ID token.")
	}
	hdr, _, ok := splitToken(raw)
	if !ok {
		return nil, bad("The ID token is not a signed JWT.")
	}
	claims, err := l.iss.verifySignature(ctx, raw, hdr)
	if err != nil {
		return nil, bad("The ID token's signature does not verify.")
	}
	if claimString(claims, "iss") != l.iss.cfg.Issuer {
		return nil, bad("The ID token comes from another issuer.")
	}
	aud, _ := stringArray(claims["aud"])
	if s, ok := claims["aud"].(string); ok {
		aud = []string{s}
	}
	if !slices.Contains(aud, l.cfg.ClientID) {
		return nil, bad("The ID token is meant for another client.")
	}
	if azp, ok := claims["azp"]; ok && azp != l.cfg.ClientID {
		return nil, bad("The ID token was issued to another client.")
	}
	if typ, ok := claims["typ"]; ok && typ != "ID" {
		// Keycloak types its ID tokens "ID"; other providers leave typ out.
		return nil, bad("The token is not an ID token.")
	}
	exp, ok, malformed := numericDate(claims, "exp")
	if !ok || malformed || !now.Before(exp.Add(JWTClockSkew)) {
		return nil, bad("The ID token has expired.")
	}
	if got := claimString(claims, "nonce"); subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return nil, deny(ReasonLoginNonceMismatch, "The ID token belongs to another sign-in (nonce).")
	}
	return claims, nil
}

// sealSession seals st into a Set-Cookie value, refusing one that would
// not fit a browser's cookie.
func (l *Login) sealSession(host string, st *sessionState, now time.Time) (string, error) {
	value, err := l.keys.ring.sealState(purposeSession, host, st)
	if err != nil {
		return "", err
	}
	name := l.CookieName()
	if len(name)+1+len(value) > SessionMaxCookieSize {
		return "", fmt.Errorf("authn: session: %d bytes do not fit a cookie", len(name)+1+len(value))
	}
	l.cache.Put(value, st.identity(l.cfg.ClientID), time.Unix(min(st.Expiry, st.End), 0), now)
	return setCookie(name, value, time.Unix(st.End, 0).Sub(now)), nil
}
