package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/authntest"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
)

const withLogin = `
store: {driver: none}
issuers:
  - name: ml
    issuer: https://sso.example.com/realms/ml
    audiences: [mlflow]
session:
  keys_file: /var/run/secrets/mlflow-authz/session-keys
apps:
  - name: kiali
    type: rules
    hosts: [kiali.example.com]
    rules: [{path_prefixes: [/kiali/], allow: authenticated}]
    login:
      enabled: true
      client_id: kiali
      client_secret_env: KIALI_CLIENT_SECRET
`

func TestLoginConfigErrorsNameTheKey(t *testing.T) {
	cfg, err := Parse([]byte(withLogin), env(nil))
	require.NoError(t, err)
	assert.True(t, cfg.Apps[0].Login.Enabled)

	tests := []struct {
		name, doc string
		want      []string
	}{
		{"no keys file", strings.Replace(withLogin, "  keys_file: /var/run/secrets/mlflow-authz/session-keys", "  max_age: 8h", 1), []string{"session", "keys_file"}},
		{"no client", strings.Replace(withLogin, "client_id: kiali", "scopes: [openid]", 1), []string{"apps[0].login", "client_id"}},
		{"an inline secret is not a key", strings.Replace(withLogin, "client_secret_env: KIALI_CLIENT_SECRET", "client_secret: hunter2", 1), []string{"unknown key client_secret"}},
		{"unknown issuer", strings.Replace(withLogin, "client_id: kiali", "client_id: kiali\n      issuer: other", 1), []string{"apps[0].login.issuer", `"other"`}},
		{"two issuers, none named", strings.Replace(withLogin, "session:", "  - {name: b, issuer: 'https://b.example.com', audiences: [x]}\nsession:", 1), []string{"apps[0].login.issuer", "required"}},
		{"cookie without __Host-", strings.Replace(withLogin, "session:", "session:\n  cookie_name: session", 1), []string{"session", "__Host-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), env(nil))
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	off := strings.Replace(withLogin, "enabled: true", "enabled: false", 1)
	off = strings.Replace(off, "  keys_file: /var/run/secrets/mlflow-authz/session-keys", "  max_age: 8h", 1)
	_, err = Parse([]byte(off), env(nil))
	assert.NoError(t, err, "a login that is off needs no keys")
}

// TestBuildWiresLogin: the session authenticator sits between the bearer
// JWT and SPIFFE, and the app gets its login; secrets and keys are read at
// build time, and a missing one fails the build naming it.
func TestBuildWiresLogin(t *testing.T) {
	iss := authntest.Start(t, devissuer.WithRealm("ml"))
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	require.NoError(t, os.WriteFile(keys, []byte("q8LVpd6oEdh2aGr1V3Yx6b1qv9cT0m4kQ6cGJp2kZ8w=\n"), 0o600))
	doc := strings.NewReplacer("https://sso.example.com/realms/ml", iss.URL, "/var/run/secrets/mlflow-authz/session-keys", keys).Replace(withLogin)
	cfg, err := Parse([]byte(doc), env(nil))
	require.NoError(t, err)

	t.Setenv("KIALI_CLIENT_SECRET", "s3cret")
	rt, err := Build(t.Context(), cfg, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(rt.Close)
	var kinds []string
	for _, a := range rt.Engine.Authenticators {
		kinds = append(kinds, fmt.Sprintf("%T", a))
	}
	// Bearer and Basic read Authorization, then the cookie, the mTLS peer last.
	assert.Equal(t, []string{"*authn.JWT", "*authn.Basic", "*authn.Sessions", "*authn.SPIFFE"}, kinds)
	require.NotNil(t, rt.Engine.Apps[0].Login)

	t.Setenv("KIALI_CLIENT_SECRET", "")
	_, err = Build(t.Context(), cfg, nil, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "client_secret_env: KIALI_CLIENT_SECRET is not set")

	t.Setenv("KIALI_CLIENT_SECRET", "s3cret")
	require.NoError(t, os.Remove(keys))
	_, err = Build(t.Context(), cfg, nil, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "keys_file")
}
