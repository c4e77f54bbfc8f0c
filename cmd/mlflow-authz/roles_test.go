package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
)

// TestRolesLayoutCLI: on MLflow 3.12+'s roles layout, grants from the CLI
// go where MLflow writes them (a user's to its __user_<id>__ role, a
// group's to the role of its name), directly and through the admin API,
// and the roles commands manage the roles a running server reads.
func TestRolesLayoutCLI(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := startAdminEnvLayout(t, backend, true)
			run := func(env []string, args ...string) string {
				t.Helper()
				out, stderr, code := cli(t, env, args...)
				require.Equal(t, 0, code, "%v: %s", args, stderr)
				return out
			}
			direct := func(args ...string) string { t.Helper(); return run(nil, append(args, e.direct...)...) }
			alice := e.token(t, devissuer.User{Username: "alice"})
			bob := e.token(t, devissuer.User{Username: "bob", Groups: []string{"/team-a"}})
			carol := e.token(t, devissuer.User{Username: "carol"})
			denied := func(tok, target string) func() bool {
				return func() bool {
					r := e.check(t, tok, target)
					return !r.Allowed && r.Status == 403 && r.Reason == "permission_denied"
				}
			}
			allowed := func(tok, target string) func() bool { return func() bool { return e.check(t, tok, target).Allowed } }

			require.True(t, denied(alice, getExp1)())
			assert.Equal(t, "granted READ on experiment 1 to user alice\n", direct("grant", "--experiment", "1", "--user", "alice", "--permission", "READ"))
			assert.Eventually(t, allowed(alice, getExp1), 5*time.Second, 20*time.Millisecond)
			out := direct("permissions", "list", "--experiment", "1")
			assert.Contains(t, out, "alice")

			admin := []string{"MLFLOW_AUTHZ_TOKEN=" + e.token(t, devissuer.User{Username: "dave", Groups: []string{"/mlflow-admin"}})}
			assert.Equal(t, "granted EDIT on experiment 1 to group team-a\n",
				run(admin, "grant", "--server", e.grpcAddr, "--experiment", "1", "--group", "/team-a", "--permission", "EDIT"))
			assert.Eventually(t, allowed(bob, getExp1), 5*time.Second, 20*time.Millisecond)

			assert.Equal(t, "created role viewers\n", direct("roles", "create", "viewers", "--description", "read churn"))
			direct("grant", "--experiment", "2", "--group", "viewers", "--permission", "READ")
			getExp2 := strings.Replace(getExp1, "=1", "=2", 1)
			require.True(t, denied(carol, getExp2)())
			assert.Equal(t, "assigned role viewers to carol\n", direct("roles", "assign", "viewers", "carol"))
			assert.Eventually(t, allowed(carol, getExp2), 5*time.Second, 20*time.Millisecond)
			assert.Equal(t, "role viewers: read churn\nusers: carol\nRESOURCE_TYPE  PATTERN  PERMISSION\nexperiment     2        READ\n",
				direct("roles", "show", "viewers"))
			assert.Equal(t, "ROLE     GRANTS  USERS  DESCRIPTION\nteam-a   1              \nviewers  1       carol  read churn\n", direct("roles", "list"))
			assert.Equal(t, "removed role viewers from carol\n", direct("roles", "unassign", "viewers", "carol"))
			assert.Eventually(t, denied(carol, getExp2), 5*time.Second, 20*time.Millisecond)
			assert.Equal(t, "deleted role viewers, its grants and its assignments\n", direct("roles", "delete", "viewers"))

			// Roles of another workspace are its own.
			assert.Equal(t, "created role viewers\n", direct("roles", "create", "viewers", "--workspace", "team-b"))
			assert.Equal(t, "assigned role viewers to carol\n", direct("roles", "assign", "viewers", "carol", "--workspace", "team-b"))
			assert.Equal(t, "ROLE     GRANTS  USERS  DESCRIPTION\nviewers  0       carol  \n", direct("roles", "list", "--workspace", "team-b"))
			assert.NotContains(t, direct("roles", "list"), "viewers")
			require.True(t, denied(carol, getExp2)(), "a role of team-b grants nothing in default")

			direct("revoke", "--experiment", "1", "--user", "alice")
			assert.Eventually(t, denied(alice, getExp1), 5*time.Second, 20*time.Millisecond)

			_, stderr, code := cli(t, nil, append([]string{"grant", "--experiment", "1", "--user", "alice", "--permission", "NO_PERMISSIONS"}, e.direct...)...)
			assert.Equal(t, 2, code, "a refused argument is a usage error")
			assert.Contains(t, stderr, "NO_PERMISSIONS cannot be granted in MLflow's roles layout")
		})
	}
}

// TestRolesNeedTheRolesLayout: on a legacy database the roles commands say
// why they cannot run.
func TestRolesNeedTheRolesLayout(t *testing.T) {
	e := startAdminEnv(t, "sqlite")
	_, stderr, code := cli(t, nil, append([]string{"roles", "list"}, e.direct...)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "roles exist in MLflow 3.12+'s auth database")
}
