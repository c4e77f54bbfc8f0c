package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/authz/rules"
	"github.com/mlflow-authz/mlflow-authz/authz/upstream"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/backend"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
)

// Config is the whole configuration file.
type Config struct {
	Server     ServerConfig         `yaml:"server"`
	Log        LogConfig            `yaml:"log"`
	Issuers    []authn.IssuerConfig `yaml:"issuers"`
	TokenCache TokenCacheConfig     `yaml:"token_cache"`
	Basic      authn.BasicConfig    `yaml:"basic"`
	SPIFFE     authn.SPIFFEConfig   `yaml:"spiffe"`
	// Session is the browser session cookie of every app with login on.
	Session authn.SessionConfig `yaml:"session"`
	Store   backend.Config      `yaml:"store"`
	// ExtProc configures the ext_proc filter, served on server.grpc_addr.
	ExtProc ExtProcConfig `yaml:"ext_proc"`
	Apps    []AppConfig   `yaml:"apps"`
}

// ExtProcConfig bounds the ext_proc filter's work on one request.
type ExtProcConfig struct {
	// MaxBodyBytes is the largest response (or narrowed request) body the
	// filter reads; a larger one is refused with 503 response_too_large.
	// Envoy sends a buffered body in one gRPC message, so it must stay below
	// server.max_recv_msg_size.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// Timeout bounds the filter's work on each message; keep it below the
	// message_timeout of the Envoy filter.
	Timeout time.Duration `yaml:"timeout"`
}

// MaxBody returns the body limit in force: max_body_bytes, or when unset
// 4 MiB, less if server.max_recv_msg_size leaves no room for it.
func (c *Config) MaxBody() int {
	if c.ExtProc.MaxBodyBytes != 0 {
		return c.ExtProc.MaxBodyBytes
	}
	return min(4<<20, c.Server.MaxRecvMsgSize-64<<10)
}

// ServerConfig holds the listeners and gRPC connection management.
type ServerConfig struct {
	// GRPCAddr serves Envoy's Check, gRPC health and reflection.
	GRPCAddr string `yaml:"grpc_addr"`
	// HTTPAddr serves /metrics, /healthz, /readyz (and /debug/pprof/).
	HTTPAddr string `yaml:"http_addr"`
	// Pprof mounts /debug/pprof/ on the HTTP port.
	Pprof bool `yaml:"pprof"`
	// MaxConnectionAge closes Envoy's long-lived HTTP/2 connections after
	// this long (with jitter and a grace period) so they rebalance when
	// replicas are added.
	MaxConnectionAge time.Duration `yaml:"max_connection_age"`
	// MaxRecvMsgSize must exceed Istio's includeRequestBodyInCheck.maxRequestBytes.
	MaxRecvMsgSize int `yaml:"max_recv_msg_size"`
	// CheckTimeout caps one check when Envoy's own deadline is longer (Istio
	// defaults its provider timeout to 600s); a check out of time is a 503 deny.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// StreamWorkers is how many goroutines run checks, reused from one call
	// to the next so their stacks stay grown; 0 starts a goroutine per call.
	StreamWorkers int `yaml:"stream_workers"`
	// ShutdownGrace bounds how long in-flight checks may run after SIGTERM.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// WatchConfig reloads the file when it changes (SIGHUP always reloads).
	WatchConfig bool `yaml:"watch_config"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
	// FlushInterval is how long a line may wait in the log's buffer; WARN
	// and above never wait.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// TokenCacheConfig bounds the verified-token cache.
type TokenCacheConfig struct {
	Size int           `yaml:"size"`
	TTL  time.Duration `yaml:"ttl"`
}

// AppConfig is one protected application.
type AppConfig struct {
	Name  string   `yaml:"name"`
	Hosts []string `yaml:"hosts"`
	// Type is mlflow (MLflow's permission model) or rules (ordered rules).
	Type   string `yaml:"type"`
	DryRun bool   `yaml:"dry_run"`
	// PassForeignCredentials lets bearer tokens we did not issue (Phoenix
	// API keys) through untouched, with the caller treated as anonymous.
	PassForeignCredentials bool `yaml:"pass_foreign_credentials"`
	// Rules decide an application of type rules, first match wins.
	Rules []rules.Config `yaml:"rules"`
	// TraceWriters are the mTLS peers (full SPIFFE IDs) allowed to
	// POST /v1/traces without a token.
	TraceWriters []string `yaml:"trace_writers"`
	// Upstream says how the application learns the caller's identity.
	Upstream upstream.Config `yaml:"upstream"`
	// MLflow configures an application of type mlflow.
	MLflow mlflow.Config `yaml:"mlflow"`
	// Login is the browser login (OpenID Connect code flow) of the app.
	Login authn.LoginConfig `yaml:"login"`
	// Basic accepts Basic credentials checked against MLflow's
	// users.password_hash. Unset means on for type mlflow (MLflow's Python
	// client sends them) and off for type rules.
	Basic *bool `yaml:"basic"`
}

// BasicEnabled reports whether the application accepts Basic credentials.
func (a AppConfig) BasicEnabled() bool {
	if a.Basic != nil {
		return *a.Basic
	}
	return a.Type == "mlflow"
}

// maxStreamWorkers bounds server.stream_workers: each worker keeps a
// grown stack (about 16 KB) for as long as the process runs.
const maxStreamWorkers = 4096

// Default returns the configuration used for every key the file omits.
func Default() *Config {
	return &Config{
		Server: ServerConfig{
			GRPCAddr:         ":9191",
			HTTPAddr:         ":8080",
			MaxConnectionAge: 5 * time.Minute,
			MaxRecvMsgSize:   8 << 20,
			CheckTimeout:     2 * time.Second,
			StreamWorkers:    64, // extauthz.DefaultStreamWorkers; config stays free of gRPC
			ShutdownGrace:    15 * time.Second,
		},
		Log:        LogConfig{Level: "info", Format: "json", FlushInterval: 100 * time.Millisecond},
		ExtProc:    ExtProcConfig{Timeout: 2 * time.Second},
		TokenCache: TokenCacheConfig{Size: 10000, TTL: 5 * time.Minute},
		Store:      backend.Config{Driver: store.SQLite},
	}
}

// Environment variables that override URLs and secrets in the file.
const (
	EnvTrackingURL = "MLFLOW_AUTHZ_TRACKING_DATABASE_URL"
	EnvAuthURL     = "MLFLOW_AUTHZ_AUTH_DATABASE_URL"
)

func (c *Config) applyEnv(lookup func(string) (string, bool)) {
	if v, ok := lookup(EnvTrackingURL); ok && v != "" {
		c.Store.Postgres.TrackingURL = v
	}
	if v, ok := lookup(EnvAuthURL); ok && v != "" {
		c.Store.Postgres.AuthURL = v
	}
}

// Validate checks the whole configuration. Errors name the offending key.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	for key, addr := range map[string]string{"server.grpc_addr": c.Server.GRPCAddr, "server.http_addr": c.Server.HTTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add(key, "%q is not host:port", addr)
		}
	}
	if c.Server.CheckTimeout <= 0 {
		add("server.check_timeout", "must be positive")
	}
	if c.Server.MaxConnectionAge <= 0 {
		add("server.max_connection_age", "must be positive")
	}
	if c.Server.MaxRecvMsgSize < 1<<20 {
		add("server.max_recv_msg_size", "must be at least 1048576 (bodies up to Istio's maxRequestBytes must fit)")
	}
	if c.Server.StreamWorkers < 0 || c.Server.StreamWorkers > maxStreamWorkers {
		add("server.stream_workers", "must be between 0 (a goroutine per call) and %d", maxStreamWorkers)
	}
	if c.ExtProc.MaxBodyBytes != 0 && (c.ExtProc.MaxBodyBytes < 64<<10 || c.ExtProc.MaxBodyBytes > c.Server.MaxRecvMsgSize-64<<10) {
		add("ext_proc.max_body_bytes", "must be between 65536 and server.max_recv_msg_size - 65536 (Envoy sends the whole body in one gRPC message)")
	}
	if c.ExtProc.Timeout <= 0 {
		add("ext_proc.timeout", "must be positive")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format", "%q is not json or text", c.Log.Format)
	}
	if c.Log.FlushInterval <= 0 || c.Log.FlushInterval > 10*time.Second {
		add("log.flush_interval", "must be positive and at most 10s (a line waits this long at most; a SIGKILL loses at most this much)")
	}
	if c.TokenCache.Size < 0 || c.TokenCache.TTL < 0 {
		add("token_cache", "size and ttl must not be negative")
	}
	names := map[string]bool{}
	for i, iss := range c.Issuers {
		key := fmt.Sprintf("issuers[%d]", i)
		if err := iss.Validate(); err != nil {
			add(key, "%v", err)
		}
		name := iss.Name
		if name == "" {
			name = iss.Issuer
		}
		if names[name] {
			add(key+".name", "duplicate issuer %q", name)
		}
		names[name] = true
	}
	if _, err := authn.NewSPIFFE(c.SPIFFE); err != nil {
		add("spiffe", "%v", err)
	}
	if err := c.Basic.Validate(); err != nil {
		add("basic", "%v", err)
	}
	switch c.Store.Driver {
	case store.SQLite, store.PostgreSQL, backend.None:
	default:
		add("store.driver", "%q is not sqlite, postgres or none", c.Store.Driver)
	}
	if c.Store.Driver == store.PostgreSQL && c.Store.Postgres.TrackingURL == "" {
		add("store.postgres.tracking_url", "required with driver postgres (or set %s)", EnvTrackingURL)
	}
	switch c.Store.Postgres.Notify {
	case "", postgres.NotifyOn, postgres.NotifyOff:
	default:
		add("store.postgres.notify", "%q is not on or off", c.Store.Postgres.Notify)
	}
	if len(c.Apps) == 0 {
		add("apps", "at least one application is required")
	}
	appNames, hosts := map[string]bool{}, map[string]string{}
	for i, a := range c.Apps {
		key := fmt.Sprintf("apps[%d]", i)
		if a.Name == "" {
			add(key+".name", "required")
		} else if appNames[a.Name] {
			add(key+".name", "duplicate application name %q", a.Name)
		}
		appNames[a.Name] = true
		if len(a.Hosts) == 0 {
			add(key+".hosts", "at least one host is required")
		}
		for j, h := range a.Hosts {
			h = strings.ToLower(h)
			if h == "" || strings.ContainsAny(h, ":/ ") {
				add(fmt.Sprintf("%s.hosts[%d]", key, j), "%q is not a bare host name (no port, scheme or path)", h)
			}
			if prev, dup := hosts[h]; dup {
				add(fmt.Sprintf("%s.hosts[%d]", key, j), "host %q already belongs to application %q", h, prev)
			}
			hosts[h] = a.Name
		}
		if a.Login.Enabled {
			if err := a.Login.Validate(); err != nil {
				add(key+".login", "%v", err)
			}
			if err := c.loginIssuer(a.Login.Issuer); err != nil {
				add(key+".login.issuer", "%v", err)
			}
		}
		if a.Basic != nil && *a.Basic && c.Store.Driver == backend.None {
			add(key+".basic", "Basic credentials are checked against MLflow's users table: it needs a store (store.driver is none)")
		}
		switch a.Type {
		case "mlflow":
			if c.Store.Driver == backend.None {
				add(key+".type", "an mlflow application needs a store (store.driver is none)")
			}
			if len(a.Rules) > 0 {
				add(key+".rules", "rules are for type rules; an mlflow application follows MLflow's permission model")
			}
		case "rules":
			if len(a.Rules) == 0 {
				add(key+".rules", "a rules application needs at least one rule (no rule matches means deny)")
			}
		default:
			add(key+".type", "%q is not mlflow or rules", a.Type)
		}
	}
	if c.loginEnabled() {
		if err := c.Session.Validate(); err != nil {
			add("session", "%v", err)
		}
	}
	c.validateLayout(add)
	return errors.Join(errs...)
}

// validateLayout checks apps[].mlflow.layout and group_roles, and hands
// the layout to the store, which decides it once for every application.
func (c *Config) validateLayout(add func(key, format string, args ...any)) {
	layout, from := "", ""
	for i, a := range c.Apps {
		if a.Type != "mlflow" {
			continue
		}
		key := fmt.Sprintf("apps[%d].mlflow", i)
		l := a.MLflow.Layout
		switch l {
		case "", "auto", "legacy", "roles":
		default:
			add(key+".layout", "%q is not auto, legacy or roles", l)
		}
		if l == "" {
			l = "auto"
		}
		if l == "roles" && a.MLflow.Compat == mlflow.CompatOIDCAuth {
			add(key+".layout", "compat oidc-auth reads mlflow-oidc-auth's tables; MLflow's roles layout has none")
		}
		if err := a.MLflow.GroupRoles.Validate(); err != nil {
			add(key+".group_roles", "%v", err)
		}
		if from != "" && l != layout {
			add(key+".layout", "%q differs from %s's %q: the applications share one store", l, from, layout)
		}
		if from == "" {
			layout, from = l, key
		}
	}
	c.Store.Postgres.Layout, c.Store.SQLite.Layout = layout, layout
}

// DefaultPermission is the default_permission of the first MLflow
// application that sets one (NO_PERMISSIONS when none does): the default
// the admin API lists and explains beside the stored rows.
func (c *Config) DefaultPermission() store.Permission {
	for _, a := range c.Apps {
		if a.Type == "mlflow" && a.MLflow.DefaultPermission != "" {
			p, _ := store.ParsePermission(a.MLflow.DefaultPermission)
			return p
		}
	}
	return store.NoPermissions
}

// loginEnabled reports whether any application has its login on.
func (c *Config) loginEnabled() bool {
	for _, a := range c.Apps {
		if a.Login.Enabled {
			return true
		}
	}
	return false
}

// loginIssuer checks that a login names a configured issuer (by name or
// issuer URL), or that there is exactly one when it names none.
func (c *Config) loginIssuer(name string) error {
	if name == "" {
		if len(c.Issuers) != 1 {
			return fmt.Errorf("required when %d issuers are configured", len(c.Issuers))
		}
		return nil
	}
	for _, iss := range c.Issuers {
		if iss.Name == name || iss.Issuer == name {
			return nil
		}
	}
	return fmt.Errorf("%q is not a configured issuer", name)
}

// Resolution is the permission resolution of the first MLflow
// application (its compat, source order and default permission; MLflow's
// with NO_PERMISSIONS when there is none): what the admin API lists and
// explains beside the stored rows.
func (c *Config) Resolution() (mlflow.Resolution, error) {
	for _, a := range c.Apps {
		if a.Type == "mlflow" {
			rs, err := mlflow.NewResolution(a.MLflow.Compat, a.MLflow.PermissionSourceOrder, c.DefaultPermission(), nil)
			if err != nil {
				return rs, err
			}
			return rs.WithWorkspaces(a.MLflow.Workspaces, a.MLflow.GrantDefaultWorkspaceAccess).WithGroupRoles(a.MLflow.GroupRoles)
		}
	}
	return mlflow.NewResolution("", nil, c.DefaultPermission(), nil)
}

// RestartRequired returns an error naming the settings that differ between
// the live configuration and next but cannot change without a restart (the
// listeners and the store). Reloads refuse such a change rather than apply
// half of it.
func RestartRequired(live, next *Config) error {
	var keys []string
	if live.Server != next.Server {
		keys = append(keys, "server")
	}
	if live.Store.Driver != next.Store.Driver || live.Store.Postgres != next.Store.Postgres ||
		live.Store.SQLite != next.Store.SQLite || live.Store.Cache.MaxEntries != next.Store.Cache.MaxEntries ||
		live.Store.Cache.GrantTTL != next.Store.Cache.GrantTTL || live.Store.Cache.ResolveTTL != next.Store.Cache.ResolveTTL ||
		live.Store.Cache.NotFoundTTL != next.Store.Cache.NotFoundTTL {
		keys = append(keys, "store")
	}
	if live.Log != next.Log {
		keys = append(keys, "log")
	}
	if live.ExtProc != next.ExtProc {
		keys = append(keys, "ext_proc")
	}
	if len(keys) > 0 {
		return fmt.Errorf("config: %s changed; these settings need a restart", strings.Join(keys, ", "))
	}
	return nil
}
