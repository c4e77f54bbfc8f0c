package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const minimal = `
store: {driver: none}
apps:
  - name: kiali
    type: rules
    hosts: [kiali.example.com]
    rules:
      - path_prefixes: [/kiali/]
        allow: authenticated
`

func TestParseMinimalTakesDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), env(nil))
	require.NoError(t, err)
	assert.Equal(t, ":9191", cfg.Server.GRPCAddr)
	assert.Equal(t, ":8080", cfg.Server.HTTPAddr)
	assert.Equal(t, 5*time.Minute, cfg.Server.MaxConnectionAge)
	assert.Equal(t, 64, cfg.Server.StreamWorkers)
	assert.Equal(t, "info", cfg.Log.Level)
	assert.Equal(t, 10000, cfg.TokenCache.Size)
}

func TestParseErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, doc string
		env       map[string]string
		want      []string
	}{
		{"unknown top-level key", minimal + "\nlisten: {grpc: x}\n", nil, []string{"unknown key listen"}},
		{"unknown nested key", strings.Replace(minimal, "allow: authenticated", "allow: authenticated\n        allwo: anyone", 1), nil, []string{"unknown key allwo"}},
		{"bad address", minimal + "server: {grpc_addr: nine}\n", nil, []string{"server.grpc_addr", `"nine" is not host:port`}},
		{"bad duration", minimal + "server: {max_connection_age: soon}\n", nil, []string{"soon"}},
		{"negative stream workers", minimal + "server: {stream_workers: -1}\n", nil, []string{"server.stream_workers", "between 0"}},
		{"too many stream workers", minimal + "server: {stream_workers: 100000}\n", nil, []string{"server.stream_workers", "4096"}},
		{"bad log level", minimal + "log: {level: loud}\n", nil, []string{"log.level"}},
		{"missing env var", minimal + "issuers: [{issuer: '${KC_URL}/realms/ml', audiences: [mlflow]}]\n", nil, []string{"KC_URL", "not set"}},
		{"no apps", "store: {driver: none}\n", nil, []string{"apps: at least one application"}},
		{"bad app type", strings.Replace(minimal, "type: rules", "type: magic", 1), nil, []string{"apps[0].type", `"magic"`}},
		{"host with port", strings.Replace(minimal, "kiali.example.com", "kiali.example.com:443", 1), nil, []string{"apps[0].hosts[0]"}},
		{"duplicate host", minimal + `  - name: other
    type: rules
    hosts: [KIALI.example.com]
    rules: [{allow: anyone}]
`, nil, []string{"apps[1].hosts[0]", "already belongs"}},
		{"mlflow without store", strings.Replace(minimal, "type: rules", "type: mlflow", 1), nil, []string{"needs a store"}},
		{"postgres without url", strings.Replace(minimal, "driver: none", "driver: postgres", 1), nil, []string{"store.postgres.tracking_url"}},
		{"rules app without rules", "store: {driver: none}\napps: [{name: a, type: rules, hosts: [a.example.com]}]\n", nil, []string{"apps[0].rules"}},
		{"issuer without audience", minimal + "issuers: [{issuer: 'https://kc.example.com/realms/ml'}]\n", nil, []string{"issuers[0]", "audiences"}},
		{"two documents", minimal + "---\n" + minimal, nil, []string{"more than one YAML document"}},
		{"basic on without store", strings.Replace(minimal, "type: rules", "type: rules\n    basic: true", 1), nil, []string{"apps[0].basic", "needs a store"}},
		{"negative basic setting", minimal + "basic: {max_failures: -1}\n", nil, []string{"basic", "max_failures"}},
		{"unknown layout", mlflowApps("layout: newest"), nil, []string{"apps[0].mlflow.layout", `"newest"`}},
		{"layouts disagree", mlflowApps("layout: roles", "layout: legacy"), nil, []string{"apps[1].mlflow.layout", "share one store"}},
		{"roles with compat oidc-auth", mlflowApps("{layout: roles, compat: oidc-auth}"), nil, []string{"apps[0].mlflow.layout", "compat oidc-auth"}},
		{"bad group path", mlflowApps("group_roles: {path: middle}"), nil, []string{"apps[0].mlflow.group_roles", `"middle"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), env(tt.env))
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestEnvExpansionAndOverrides(t *testing.T) {
	doc := strings.Replace(minimal, "driver: none", "driver: postgres, postgres: {tracking_url: '${DB}'}", 1)
	cfg, err := Parse([]byte(doc), env(map[string]string{"DB": "postgres://from-file-ref"}))
	require.NoError(t, err)
	assert.Equal(t, "postgres://from-file-ref", cfg.Store.Postgres.TrackingURL)

	cfg, err = Parse([]byte(doc), env(map[string]string{"DB": "x", EnvTrackingURL: "postgres://override", EnvAuthURL: "postgres://auth"}))
	require.NoError(t, err)
	assert.Equal(t, "postgres://override", cfg.Store.Postgres.TrackingURL)
	assert.Equal(t, "postgres://auth", cfg.Store.Postgres.AuthURL)

	out, err := ExpandEnv([]byte("a: 'pa$$word ${X}'"), env(map[string]string{"X": "y"}))
	require.NoError(t, err)
	assert.Equal(t, "a: 'pa$word y'", string(out), `"$$" is a literal "$"`)
}

func TestRestartRequired(t *testing.T) {
	a, err := Parse([]byte(minimal), env(nil))
	require.NoError(t, err)
	b, err := Parse([]byte(minimal), env(nil))
	require.NoError(t, err)
	require.NoError(t, RestartRequired(a, b))
	b.Server.GRPCAddr = ":9999"
	b.Store.Cache.GrantTTL = time.Hour
	err = RestartRequired(a, b)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "server, store")
}

// The shipped examples must always load.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			_, err = Parse(data, env(map[string]string{"KEYCLOAK_URL": "https://sso.example.com", "DATABASE_URL": "postgres://db/mlflow"}))
			require.NoError(t, err)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("apps: [{name: x, hosts: [a], type: rules, rules: [{allow: anyone}]}]"))
	f.Add([]byte("server: {grpc_addr: '${A}'}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, env(map[string]string{"A": ":1"}))
		if err != nil {
			return
		}
		// Whatever parses is valid and has at least one app with hosts.
		require.NoError(t, cfg.Validate())
		require.NotEmpty(t, cfg.Apps)
	})
}

// TestBasicDefaults: Basic is on for MLflow applications (MLflow's client
// sends MLFLOW_TRACKING_USERNAME/PASSWORD as Basic) and off for rules
// applications, unless apps[].basic says otherwise.
func TestBasicDefaults(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		app  AppConfig
		want bool
	}{
		{AppConfig{Type: "mlflow"}, true},
		{AppConfig{Type: "rules"}, false},
		{AppConfig{Type: "mlflow", Basic: &no}, false},
		{AppConfig{Type: "rules", Basic: &yes}, true},
	} {
		assert.Equal(t, tt.want, tt.app.BasicEnabled(), "%s basic=%v", tt.app.Type, tt.app.Basic)
	}
	cfg, err := Parse([]byte(minimal), env(nil))
	require.NoError(t, err)
	assert.False(t, cfg.Apps[0].BasicEnabled())
}

// mlflowApps is a configuration with one MLflow application per mlflow
// section given (YAML flow or a single key: value).
func mlflowApps(sections ...string) string {
	doc := "store: {driver: sqlite, sqlite: {tracking_path: /tmp/x.db}}\napps:\n"
	for i, sec := range sections {
		if !strings.HasPrefix(sec, "{") {
			sec = "{" + sec + "}"
		}
		doc += fmt.Sprintf("  - {name: m%d, type: mlflow, hosts: [m%d.example.com], mlflow: %s}\n", i, i, sec)
	}
	return doc
}

func TestLayoutReachesTheStore(t *testing.T) {
	cfg, err := Parse([]byte(mlflowApps("layout: roles", "layout: roles")), env(nil))
	require.NoError(t, err)
	assert.Equal(t, "roles", cfg.Store.SQLite.Layout)
	assert.Equal(t, "roles", cfg.Store.Postgres.Layout)
	cfg, err = Parse([]byte(mlflowApps("{}")), env(nil))
	require.NoError(t, err)
	assert.Equal(t, "auto", cfg.Store.SQLite.Layout)
}
