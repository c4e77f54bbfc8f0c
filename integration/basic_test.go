package integration

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// passwordLimit is how soon a password change or a user's deletion made
// with plain SQL must refuse the old credentials.
const passwordLimit = time.Second

// werkzeugHash is a users.password_hash written with werkzeug's algorithm
// and its password (authz/authn/testdata/werkzeug_hashes.py made them).
type werkzeugHash struct{ Password, Hash string }

func werkzeugHashes(t *testing.T) map[string]werkzeugHash {
	t.Helper()
	b, err := os.ReadFile("../authz/authn/testdata/werkzeug_hashes.json")
	require.NoError(t, err)
	var list []struct{ Name, Password, Hash string }
	require.NoError(t, json.Unmarshal(b, &list))
	out := map[string]werkzeugHash{}
	for _, v := range list {
		out[v.Name] = werkzeugHash{v.Password, v.Hash}
	}
	return out
}

// mlflowClient builds a request exactly as MLflow's Python client sends it
// with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD set
// (mlflow/utils/rest_utils.py, http_request): "Basic " +
// base64.standard_b64encode(f"{username}:{password}".encode()), the
// mlflow-python-client User-Agent from the default request-header provider,
// and, for POST, the JSON body requests writes for json=.
func (h *harness) mlflowClient(host, user, password, method, target, body string) extauthz.Call {
	c := h.call(host, "", method, target, body)
	c.Headers["authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	c.Headers["user-agent"] = "mlflow-python-client/3.11.1"
	c.Headers["accept"] = "*/*"
	c.Headers["accept-encoding"] = "gzip, deflate"
	return c
}

// TestBasicThroughCheck drives MLflow's Python client's Basic credentials
// through gRPC Check on both stores: the password hashes MLflow wrote are
// checked, permissions apply to the user as to a token holder, a refusal
// asks for Basic again, and a password change or deletion made with SQL
// refuses the old credentials within passwordLimit.
func TestBasicThroughCheck(t *testing.T) {
	hashes := werkzeugHashes(t)
	alice, bob := hashes["scrypt default"], hashes["pbkdf2 utf-8 password"]
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startOn(t, b)
			ctx := t.Context()
			for _, s := range []struct{ user, hash string }{{"alice", alice.Hash}, {"bob", bob.Hash}, {"frank", alice.Hash}} {
				require.NoError(t, h.exec(ctx, `UPDATE users SET password_hash = $1 WHERE username = $2`, s.hash, s.user))
			}
			getExp1 := func(user, password string) extauthz.Call {
				return h.mlflowClient(hostMLflow, user, password, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")
			}
			logMetric := func(user, password string) extauthz.Call {
				return h.mlflowClient(hostMLflow, user, password, "POST", "/api/2.0/mlflow/runs/log-metric",
					`{"run_id": "`+runA+`", "key": "auc", "value": 0.91, "timestamp": 1700000000000, "step": 0}`)
			}
			var res result
			took, ok := waitFor(t, passwordLimit, func() bool { res = h.check(t, getExp1("alice", alice.Password)); return res.Allowed })
			require.True(t, ok, "alice's password not accepted after %s: %s", took, res)
			assert.Equal(t, "alice", res.Set["x-authz-user"])
			requireDecision(t, h.check(t, logMetric("alice", alice.Password)), true, 0, "")

			// bob has READ on experiment 1 (pbkdf2 hash, UTF-8 password).
			requireDecision(t, h.check(t, getExp1("bob", bob.Password)), true, 0, "")
			requireDecision(t, h.check(t, logMetric("bob", bob.Password)), false, 403, "permission_denied")

			for _, c := range []extauthz.Call{getExp1("alice", "password12345"), getExp1("nobody", alice.Password), getExp1("carol", "no-password-set")} {
				res := h.check(t, c)
				requireDecision(t, res, false, 401, "basic_invalid_credentials")
				assert.Equal(t, `Basic realm="mlflow"`, res.DenyHeaders["www-authenticate"])
			}

			// Basic is off on the mlflow-open application.
			res = h.check(t, h.mlflowClient(hostOpen, "alice", alice.Password, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", ""))
			requireDecision(t, res, false, 401, "basic_disabled")
			assert.Equal(t, `Bearer error="invalid_token"`, res.DenyHeaders["www-authenticate"])

			// MLflow's update_user_password rewrites the hash.
			require.NoError(t, h.exec(ctx, `UPDATE users SET password_hash = $1 WHERE username = 'alice'`, bob.Hash))
			took, ok = waitFor(t, passwordLimit, func() bool { return !h.check(t, getExp1("alice", alice.Password)).Allowed })
			require.True(t, ok, "the old password still works %s after the change", took)
			t.Logf("%s: password change took effect after %s", b, took.Round(time.Microsecond))
			requireDecision(t, h.check(t, getExp1("alice", alice.Password)), false, 401, "basic_invalid_credentials")
			requireDecision(t, h.check(t, getExp1("alice", bob.Password)), true, 0, "")

			// MLflow's delete_user removes the row.
			requireDecision(t, h.check(t, getExp1("frank", alice.Password)), false, 403, "permission_denied")
			require.NoError(t, h.exec(ctx, `DELETE FROM users WHERE username = 'frank'`))
			took, ok = waitFor(t, passwordLimit, func() bool { return h.check(t, getExp1("frank", alice.Password)).Status == 401 })
			require.True(t, ok, "a deleted user still signs in %s after the delete", took)
			t.Logf("%s: deletion took effect after %s", b, took.Round(time.Microsecond))
			requireDecision(t, h.check(t, getExp1("frank", alice.Password)), false, 401, "basic_invalid_credentials")
		})
	}
}

// TestBasicRateLimitThroughCheck: after basic.max_failures wrong passwords
// a username is refused unchecked, while the credentials of a user already
// signed in keep working.
func TestBasicRateLimitThroughCheck(t *testing.T) {
	hashes := werkzeugHashes(t)
	bob := hashes["pbkdf2 utf-8 password"]
	h := start(t)
	require.NoError(t, h.exec(t.Context(), `UPDATE users SET password_hash = $1 WHERE username IN ('alice', 'bob')`, bob.Hash))
	get := func(user, password string) extauthz.Call {
		return h.mlflowClient(hostMLflow, user, password, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "")
	}
	requireDecision(t, h.check(t, get("bob", bob.Password)), true, 0, "")
	for range 5 {
		requireDecision(t, h.check(t, get("alice", "guess")), false, 401, "basic_invalid_credentials")
	}
	requireDecision(t, h.check(t, get("alice", bob.Password)), false, 401, "basic_rate_limited")
	requireDecision(t, h.check(t, get("bob", bob.Password)), true, 0, "")
}
