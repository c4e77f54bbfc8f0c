package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/authz/rules"
	"github.com/mlflow-authz/mlflow-authz/authz/upstream"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Runtime is what one configuration load builds: the engine's configuration
// and the authenticators that own background work (JWKS refresh).
type Runtime struct {
	Engine authz.Config
	// JWT is nil when no issuer is configured.
	JWT *authn.JWT
}

// Ready reports whether every issuer's JWKS has been fetched at least once.
func (rt *Runtime) Ready() error {
	if rt.JWT != nil && !rt.JWT.Ready() {
		return errors.New("the JWKS of every issuer has not been fetched yet")
	}
	return nil
}

// Close stops background work. Call it after the engine no longer uses rt.
func (rt *Runtime) Close() {
	if rt.JWT != nil {
		rt.JWT.Close()
	}
}

// Build turns a validated configuration into a runtime. reader is the
// (cached) permission store; it may be nil only when no MLflow application
// is configured.
func Build(ctx context.Context, cfg *Config, reader store.Reader, log *slog.Logger) (*Runtime, error) {
	rt := &Runtime{}
	if len(cfg.Issuers) > 0 {
		jwt, err := authn.NewJWT(ctx, cfg.Issuers,
			authn.WithTokenCache(cfg.TokenCache.Size, cfg.TokenCache.TTL),
			authn.WithJWTLogger(log))
		if err != nil {
			return nil, fmt.Errorf("config: issuers: %w", err)
		}
		rt.JWT = jwt
		rt.Engine.Authenticators = append(rt.Engine.Authenticators, jwt)
	}
	basic, err := buildBasic(cfg, reader, rt.JWT, log)
	if err != nil {
		rt.Close()
		return nil, err
	}
	// Basic is behind the bearer token: both read Authorization, and a
	// request carries one scheme or the other.
	rt.Engine.Authenticators = append(rt.Engine.Authenticators, basic)
	logins, err := buildLogins(cfg, rt.JWT)
	if err != nil {
		rt.Close()
		return nil, err
	}
	if len(logins) > 0 {
		// Behind the bearer token (a request with both is decided by its
		// Authorization header), ahead of the mTLS peer.
		byHost := map[string]*authn.Login{}
		for i, l := range logins {
			for _, h := range cfg.Apps[i].Hosts {
				byHost[strings.ToLower(h)] = l
			}
		}
		rt.Engine.Authenticators = append(rt.Engine.Authenticators, authn.NewSessions(byHost))
	}
	// SPIFFE comes last: at a sidecar every browser request carries the
	// ingress gateway's principal, which must not outrank the user's token.
	spiffe, err := authn.NewSPIFFE(cfg.SPIFFE)
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("config: spiffe: %w", err)
	}
	rt.Engine.Authenticators = append(rt.Engine.Authenticators, spiffe)

	for i, a := range cfg.Apps {
		app, err := buildApp(a, reader, log)
		if err != nil {
			rt.Close()
			return nil, fmt.Errorf("config: apps[%d] (%s): %w", i, a.Name, err)
		}
		if l := logins[i]; l != nil {
			app.Login = l
		}
		rt.Engine.Apps = append(rt.Engine.Apps, app)
	}
	return rt, nil
}

// buildLogins builds the login of every app that has one, by app index;
// the map is empty when no app has login enabled.
func buildLogins(cfg *Config, jwt *authn.JWT) (map[int]*authn.Login, error) {
	logins := map[int]*authn.Login{}
	for i, a := range cfg.Apps {
		if !a.Login.Enabled {
			continue
		}
		l, err := authn.NewLogin(jwt, cfg.Session, a.Login, authn.WithSessionCache(cfg.TokenCache.Size, cfg.TokenCache.TTL))
		if err != nil {
			return nil, fmt.Errorf("config: apps[%d] (%s): login: %w", i, a.Name, err)
		}
		logins[i] = l
	}
	return logins, nil
}

// buildBasic builds the Basic authenticator for the apps that take Basic
// credentials. It is in the chain even when none does, so a Basic
// credential sent to any app is refused (or passed through as foreign)
// rather than ignored.
func buildBasic(cfg *Config, reader store.Reader, jwt *authn.JWT, log *slog.Logger) (*authn.Basic, error) {
	var hosts []string
	for _, a := range cfg.Apps {
		if a.BasicEnabled() {
			hosts = append(hosts, a.Hosts...)
		}
	}
	var creds store.Credentials
	if len(hosts) > 0 {
		var ok bool
		if creds, ok = reader.(store.Credentials); !ok {
			return nil, errors.New("config: basic: the store cannot read MLflow's password hashes")
		}
	}
	opts := []authn.BasicOption{authn.WithBasicLogger(log)}
	if jwt != nil {
		opts = append(opts, authn.WithBasicTokens(jwt))
	}
	b, err := authn.NewBasic(creds, cfg.Basic, hosts, opts...)
	if err != nil {
		return nil, fmt.Errorf("config: basic: %w", err)
	}
	return b, nil
}

func buildApp(a AppConfig, reader store.Reader, log *slog.Logger) (*authz.App, error) {
	app := &authz.App{
		Name:                   a.Name,
		Hosts:                  a.Hosts,
		DryRun:                 a.DryRun,
		PassForeignCredentials: a.PassForeignCredentials,
	}
	switch a.Type {
	case "rules":
		p, err := rules.New(a.Rules)
		if err != nil {
			return nil, err
		}
		app.Policy = p
	case "mlflow":
		if reader == nil {
			return nil, errors.New("an mlflow application needs a store")
		}
		p, err := mlflow.New(reader, a.MLflow, log.With("app", a.Name))
		if err != nil {
			return nil, err
		}
		app.Policy = p
	default:
		return nil, fmt.Errorf("unknown type %q", a.Type)
	}
	// The trace-writer exception sits in front of either kind of policy.
	p, err := rules.NewTraceWriters(a.TraceWriters, app.Policy)
	if err != nil {
		return nil, err
	}
	app.Policy = p
	up, err := upstream.New(a.Upstream)
	if err != nil {
		return nil, err
	}
	app.Upstream = up
	if a.Type == "mlflow" {
		app.Upstream = mlflow.Upstream(up, a.MLflow.Workspaces)
	}
	return app, nil
}
