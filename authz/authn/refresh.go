package authn

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

// logout clears the session cookie and sends the browser to the
// provider's end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0
// section 2) with client_id and post_logout_redirect_uri, so the
// provider's own session ends too. Without that endpoint it returns
// straight to the post-logout URI.
func (l *Login) logout(ctx context.Context, r *authz.Request) authz.Decision {
	after := l.cfg.PostLogoutRedirectURI
	if after == "" {
		after = "/"
		if validAuthority(requestAuthority(r)) {
			after = "https://" + requestAuthority(r) + "/"
		}
	}
	location := after
	if ep, err := l.endpoints(ctx); err == nil && ep.EndSession != "" {
		if u, err := url.Parse(ep.EndSession); err == nil {
			q := u.Query()
			q.Set("client_id", l.cfg.ClientID)
			q.Set("post_logout_redirect_uri", after)
			u.RawQuery = q.Encode()
			location = u.String()
		}
	}
	d := authz.Deny(http.StatusFound, ReasonLoggedOut, "signed out")
	d.ResponseHeaders = []authz.Header{
		{Name: "location", Value: location},
		{Name: "cache-control", Value: "no-store"},
		{Name: "set-cookie", Value: setCookie(l.CookieName(), "", 0)},
	}
	return d
}

// session returns the identity of a session cookie, refreshing the
// session when its access token has expired.
func (l *Login) session(ctx context.Context, r *authz.Request, value string) (*authz.Identity, error) {
	now := l.clock()
	if id, ok := l.cache.Get(value, now); ok {
		return cachedSession(id)
	}
	st, err := decodeSessionCookie(l.keys.ring, r.Host, value)
	if err != nil {
		return nil, err
	}
	if st.Issuer != l.iss.cfg.Issuer {
		return nil, deny(ReasonSessionInvalid, "the session belongs to another issuer; log in again")
	}
	if now.Unix() >= st.End {
		return nil, deny(ReasonSessionExpired, "the session has expired; log in again")
	}
	if now.Unix() < st.Expiry {
		id := st.identity(l.cfg.ClientID)
		l.cache.Put(value, id, time.Unix(min(st.Expiry, st.End), 0), now)
		cp := *id
		return &cp, nil
	}
	if st.Refresh == "" {
		return nil, deny(ReasonSessionExpired, "the session's access has expired and it cannot be refreshed; log in again")
	}
	return l.refresh(ctx, r.Host, value, st)
}

// cachedSession is a copy of the identity the cache holds for a cookie, or
// the deny of a session whose refresh the provider refused.
func cachedSession(id *authz.Identity) (*authz.Identity, error) {
	if id == endedSession {
		return nil, deny(ReasonSessionRefreshFailed, "the session ended; log in again")
	}
	cp := *id
	return &cp, nil
}

// endedSession marks, in the cache, a session whose refresh the provider
// refused, so a burst of requests with it asks the provider once.
var endedSession = &authz.Identity{Kind: authz.KindAnonymous, Method: sessionMethod}

// refresh renews an expired session with its refresh token: a new access
// token, verified as any bearer token is, so group changes and disabled
// users take effect now. One refresh runs per session however many
// requests wait on it; the old cookie then maps to the renewed session
// (with its Set-Cookie) until the browser sends the new one.
func (l *Login) refresh(ctx context.Context, host, value string, st *sessionState) (*authz.Identity, error) {
	ch := l.refreshes.DoChan(value, func() (any, error) {
		// A request that missed the cache before an earlier refresh of this
		// cookie stored its result, and asks after that refresh ended, gets
		// that result: the refresh token it holds has been used (Keycloak
		// rotates them), so asking again would end the session.
		if id, ok := l.cache.Get(value, l.clock()); ok {
			return cachedSession(id)
		}
		// The refresh serves every waiter: one caller's cancellation must
		// not abort it; the issuer's timeout bounds it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.iss.cfg.HTTPTimeout)
		defer cancel()
		return l.doRefresh(fctx, host, value, st)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		cp := *res.Val.(*authz.Identity)
		return &cp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Login) doRefresh(ctx context.Context, host, value string, st *sessionState) (*authz.Identity, error) {
	ended := func(msg string) error {
		now := l.clock()
		l.cache.Put(value, endedSession, time.Unix(st.End, 0), now)
		return deny(ReasonSessionRefreshFailed, msg)
	}
	ep, err := l.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	past := time.Unix(st.Expiry, 0)
	tok, err := l.oauth(ep, "").TokenSource(l.httpContext(ctx), &oauth2.Token{RefreshToken: st.Refresh, Expiry: past}).Token()
	if err != nil {
		if rejectedByProvider(err) {
			return nil, ended("the identity provider ended the session; log in again")
		}
		l.log.LogAttrs(ctx, slog.LevelWarn, "session refresh failed", slog.String("issuer", l.iss.cfg.Name), slog.String("error", err.Error()))
		return nil, fmt.Errorf("authn: session: refresh: %w", err)
	}
	now := l.clock()
	id, err := l.jwt.verifyWith(ctx, l.iss, tok.AccessToken, now)
	if err != nil {
		if ce, ok := authz.AsCredentialError(err); ok {
			return nil, ended("the refreshed access token is not accepted: " + ce.Message)
		}
		return nil, err
	}
	if id.Username != st.User {
		return nil, ended("the refreshed session names another user")
	}
	next := *st
	next.Groups, next.Roles, next.Admin, next.Expiry = id.Groups, id.Roles, id.Admin, id.Expiry.Unix()
	if tok.RefreshToken != "" {
		next.Refresh = tok.RefreshToken
	}
	cookie, err := l.sealSession(host, &next, now)
	if err != nil {
		return nil, ended("the refreshed session does not fit a cookie")
	}
	renewed := next.identity(l.cfg.ClientID)
	renewed.ResponseHeaders = []authz.Header{{Name: "set-cookie", Value: cookie}}
	l.cache.Put(value, renewed, time.Unix(min(next.Expiry, next.End), 0), now)
	return renewed, nil
}
