package authz

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
)

// Policy decides requests for one application, given the verified identity.
type Policy interface {
	Decide(ctx context.Context, r *Request, id *Identity) Decision
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(ctx context.Context, r *Request, id *Identity) Decision

// Decide calls f.
func (f PolicyFunc) Decide(ctx context.Context, r *Request, id *Identity) Decision {
	return f(ctx, r, id)
}

// Upstream shapes what the upstream application receives on an allow: the
// identity headers to set and the headers to remove.
type Upstream interface {
	Headers(r *Request, id *Identity) (set []Header, remove []string)
}

// App is one protected application (MLflow, Phoenix, Kiali, …), selected by
// the request's host.
type App struct {
	// Name labels logs and metrics.
	Name string
	// Hosts are the lower-case host names (no port) the app answers on.
	Hosts []string
	// Policy decides each request.
	Policy Policy
	// Upstream sets identity headers on allowed requests. Nil sets none.
	Upstream Upstream
	// DryRun logs and counts denies but allows the request.
	DryRun bool
	// PassForeignCredentials treats a well-formed credential that is not
	// ours (a Phoenix API key, a JWT from an unknown issuer) as no credential
	// at all, leaving it for the upstream to judge.
	PassForeignCredentials bool
	// Login is the application's browser login; nil when browsers must
	// bring their own credential.
	Login Login
}

// Login is an application's browser login (OpenID Connect code flow): it
// answers its own endpoints and sends people who need a credential to the
// identity provider. It sits around the pipeline, not inside a policy, so
// every policy applies unchanged to the identity it establishes.
type Login interface {
	// Intercept answers the login's own endpoints (the OIDC callback,
	// logout) before anything else looks at the request. ok is false for
	// every other request.
	Intercept(ctx context.Context, r *Request) (d Decision, ok bool)
	// Challenge sees every 401 deny of the application. For a top-level
	// browser navigation it returns the redirect that starts a login, with
	// redirect true; otherwise d, possibly with response headers added
	// (clearing a session cookie that was refused).
	Challenge(ctx context.Context, r *Request, d Decision) (out Decision, redirect bool)
}

// Config is everything the engine needs, built once per configuration load.
type Config struct {
	Apps []*App
	// Authenticators run in order; the first that finds a credential wins.
	Authenticators []Authenticator
}

// Engine runs the decision pipeline: request → identity → policy → decision.
// Its configuration is swapped whole on reload.
type Engine struct {
	state atomic.Pointer[engineState]
}

type engineState struct {
	byHost map[string]*App
	auth   []Authenticator
}

// NewEngine returns an engine running cfg.
func NewEngine(cfg Config) (*Engine, error) {
	e := &Engine{}
	if err := e.Swap(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// Swap replaces the configuration atomically. Checks in flight finish with
// the old one.
func (e *Engine) Swap(cfg Config) error {
	st := &engineState{byHost: map[string]*App{}, auth: cfg.Authenticators}
	for _, a := range cfg.Apps {
		if a.Policy == nil {
			return errors.New("authz: app " + a.Name + " has no policy")
		}
		for _, h := range a.Hosts {
			h = canonicalHost(h)
			if prev, dup := st.byHost[h]; dup {
				return errors.New("authz: host " + h + " belongs to both " + prev.Name + " and " + a.Name)
			}
			st.byHost[h] = a
		}
	}
	e.state.Store(st)
	return nil
}

// Check decides one request. It never returns an allow by accident: every
// path that is not an explicit allow ends in a deny with a reason.
func (e *Engine) Check(ctx context.Context, r *Request) Decision {
	d := e.check(ctx, r)
	// A request whose deadline passed while we decided is denied, whatever
	// we concluded: Envoy has given up on it, or is about to.
	if d.Allowed && !d.DryRun && ctx.Err() != nil {
		id, app := d.Identity, d.App
		d = Deny(http.StatusServiceUnavailable, ReasonDeadlineExceeded, "the authorization check ran out of time")
		d.Identity, d.App = id, app
	}
	return d
}

func (e *Engine) check(ctx context.Context, r *Request) Decision {
	st := e.state.Load()
	tr := TraceFrom(ctx)
	app := st.byHost[r.Host]
	if app == nil {
		if tr != nil {
			tr.Addf("decision", "host %q belongs to no application", r.Host)
		}
		return Deny(http.StatusForbidden, ReasonUnknownHost, "this host is not protected by any configured application")
	}
	if tr != nil {
		tr.Addf("request", "%s %s on host %s → application %s", r.Method, r.Path, r.Host, app.Name)
	}
	if app.Login != nil {
		if d, ok := app.Login.Intercept(ctx, r); ok {
			d.App = app.Name
			if tr != nil {
				tr.Addf("decision", "login endpoint: status=%d reason=%s", d.Status, d.Reason)
			}
			return d
		}
	}

	id, deny := st.authenticate(ctx, r, app)
	if deny != nil {
		deny.App = app.Name
		return app.conclude(ctx, r, *deny)
	}
	if tr != nil {
		tr.Addf("identity", "%s %q via %s (groups %v, roles %v, token admin %v)", id.Kind, id.Username, id.Method, id.Groups, id.Roles, id.Admin)
	}

	d := app.Policy.Decide(ctx, r, id)
	d.App, d.Identity = app.Name, id
	if len(id.ResponseHeaders) > 0 {
		// A fresh copy: the policy's slice may be shared.
		d.ResponseHeaders = slices.Concat(d.ResponseHeaders, id.ResponseHeaders)
	}
	if tr != nil {
		tr.Addf("decision", "allowed=%v status=%d reason=%s %s", d.Allowed, d.Status, d.Reason, d.Message)
	}
	return app.conclude(ctx, r, d)
}

// conclude lets the login turn a 401 into a redirect to the identity
// provider, then finishes the decision. The redirect is exempt from dry
// run: it is how a browser gets an identity at all, not a policy verdict.
func (a *App) conclude(ctx context.Context, r *Request, d Decision) Decision {
	if a.Login != nil && !d.Allowed && d.Status == http.StatusUnauthorized {
		app, id := d.App, d.Identity
		var redirect bool
		d, redirect = a.Login.Challenge(ctx, r, d)
		d.App, d.Identity = app, id
		if redirect {
			return d
		}
	}
	return a.finish(r, d)
}

// Authenticate runs the live authenticator chain alone, as Check does before
// any policy, for callers that are not application requests (the admin API).
// A credential that is present but not ours is refused, never passed through.
// The deny is non-nil exactly when no identity could be established; an
// absent credential yields Anonymous.
func (e *Engine) Authenticate(ctx context.Context, r *Request) (*Identity, *Decision) {
	return e.state.Load().authenticate(ctx, r, &App{})
}

// Identify selects the application of r's host and authenticates r the
// way Check does, without deciding anything: for the ext_proc filter,
// which acts on requests Check already allowed and must know who sent them
// from the same headers. app is nil when the host belongs to no
// application; deny is non-nil exactly when no identity could be
// established (the deny Check would have given).
func (e *Engine) Identify(ctx context.Context, r *Request) (app *App, id *Identity, deny *Decision) {
	st := e.state.Load()
	app = st.byHost[r.Host]
	if app == nil {
		return nil, nil, nil
	}
	id, deny = st.authenticate(ctx, r, app)
	if deny != nil {
		deny.App = app.Name
	}
	return app, id, deny
}

func (st *engineState) authenticate(ctx context.Context, r *Request, app *App) (*Identity, *Decision) {
	for _, a := range st.auth {
		id, err := a.Authenticate(ctx, r)
		if err == nil {
			if id != nil {
				return id, nil
			}
			continue
		}
		if ce, ok := AsCredentialError(err); ok {
			if ce.Foreign && app.PassForeignCredentials {
				continue
			}
			if ce.Status != 0 && ce.Status != http.StatusUnauthorized {
				d := Deny(ce.Status, ce.Reason, ce.Message)
				return nil, &d
			}
			d := Deny(http.StatusUnauthorized, ce.Reason, ce.Message)
			d.ResponseHeaders = []Header{{Name: "www-authenticate", Value: cmp.Or(ce.Challenge, `Bearer error="invalid_token"`)}}
			return nil, &d
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			d := Deny(http.StatusServiceUnavailable, ReasonDeadlineExceeded, "the authorization check ran out of time")
			return nil, &d
		}
		d := Deny(http.StatusServiceUnavailable, ReasonUnavailable, "identity could not be verified right now; retry")
		return nil, &d
	}
	return Anonymous, nil
}

// finish applies dry-run (a deny becomes an allow, keeping the policy's
// status and reason for the log) and, on every allow, the upstream identity
// headers: even a dry-run allow must strip client-sent identity headers.
func (a *App) finish(r *Request, d Decision) Decision {
	if a.DryRun && !d.Allowed {
		d.Allowed, d.DryRun = true, true
	}
	if d.Allowed && a.Upstream != nil {
		id := d.Identity
		if id == nil {
			id = Anonymous
		}
		d.UpstreamHeaders, d.RemoveHeaders = a.Upstream.Headers(r, id)
	}
	return d
}
