package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// compatSeed is a deployment that ran mlflow-oidc-auth: its users database
// (made by its migrations) holding direct, group, regex and group-regex
// rows, beside MLflow's tracking tables.
//
//	experiments 1 team-a/churn, 2 team-a/secret-plans, 3 shared/forecast, 4 lab/x
//	uma: READ on 1, and a regex ^team-a/ MANAGE (priority 1)
//	groups readers READ, blocked NO_PERMISSIONS, editors EDIT on 1
//	rex: regex ^team-a/secret p5 NO_PERMISSIONS, ^team-a/ p10 EDIT;
//	  registered models ^team-a READ (prompt = false), MANAGE (prompt = true)
//	bad: regex (?<=x)y p1 MANAGE (RE2 cannot), ^lab/ p2 READ
//	group-regex: labbers ^lab/ p1 EDIT, editors ^shared/ p1 READ
//	uma: USE on the gateway endpoint named chat (id ep-1)
//	root: users.is_admin
var compatSeed = []string{
	`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES
		(0, 'Default', 'active'), (1, 'team-a/churn', 'active'), (2, 'team-a/secret-plans', 'active'),
		(3, 'shared/forecast', 'active'), (4, 'lab/x', 'active')`,
	`INSERT INTO registered_models (name) VALUES ('team-a-model')`,
	`INSERT INTO endpoints (endpoint_id, name, created_at, last_updated_at) VALUES ('ep-1', 'chat', 1, 1)`,
	`INSERT INTO users (id, username, is_admin, is_service_account) VALUES
		(1, 'uma', false, false), (2, 'rex', false, false), (3, 'bad', false, false), (4, 'root', true, false)`,
	`INSERT INTO groups (id, group_name) VALUES (1, 'readers'), (2, 'blocked'), (3, 'editors'), (4, '/labbers')`,
	`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'READ')`,
	`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES
		('1', 1, 'READ'), ('1', 2, 'NO_PERMISSIONS'), ('1', 3, 'EDIT')`,
	`INSERT INTO experiment_regex_permissions (regex, priority, user_id, permission) VALUES
		('^team-a/', 1, 1, 'MANAGE'), ('^team-a/secret', 5, 2, 'NO_PERMISSIONS'), ('^team-a/', 10, 2, 'EDIT'),
		('(?<=x)y', 1, 3, 'MANAGE'), ('^lab/', 2, 3, 'READ')`,
	`INSERT INTO experiment_group_regex_permissions (regex, priority, group_id, permission) VALUES
		('^lab/', 1, 4, 'EDIT'), ('^shared/', 1, 3, 'READ')`,
	`INSERT INTO registered_model_regex_permissions (regex, priority, user_id, permission, prompt) VALUES
		('^team-a', 1, 2, 'READ', false), ('^team-a', 1, 2, 'MANAGE', true)`,
	`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('chat', 1, 'USE')`,
}

// compatUsers are the token holders of the compat tests, with the groups
// their tokens carry.
var compatUsers = []devissuer.User{
	{Username: "uma", Groups: []string{"/editors"}},
	{Username: "gil", Groups: []string{"/readers", "/blocked"}},
	{Username: "gia", Groups: []string{"/readers"}},
	{Username: "rex"},
	{Username: "bad"},
	{Username: "lab", Groups: []string{"/labbers"}},
	{Username: "ed", Groups: []string{"/editors"}},
	{Username: "mallory"},
	{Username: "root"},
}

// compatConfig turns on compat: oidc-auth for the mlflow application, with
// order as its permission_source_order when given.
func compatConfig(order string) func(string) string {
	return func(doc string) string {
		extra := "      compat: oidc-auth\n"
		if order != "" {
			extra += "      permission_source_order: [" + order + "]\n"
		}
		return strings.Replace(doc, "      default_permission: NO_PERMISSIONS\n  - name: mlflow-open",
			"      default_permission: NO_PERMISSIONS\n"+extra+"  - name: mlflow-open", 1)
	}
}

// startCompat starts the service with compat: oidc-auth on b, on
// mlflow-oidc-auth's database on which `mlflow-authz migrate` then ran.
func startCompat(t *testing.T, b backend) *harness {
	t.Helper()
	h := startWith(t, b, startOptions{authSchema: storetest.CreateOIDCAuthSchema, seed: compatSeed, config: compatConfig("")})
	for _, u := range compatUsers {
		tok, err := h.iss.Token(u)
		require.NoError(t, err)
		h.tokens[u.Username] = tok
	}
	return h
}

// TestCompatOIDCAuth decides through gRPC Check, on PostgreSQL and SQLite,
// as mlflow-oidc-auth decides on its own data.
func TestCompatOIDCAuth(t *testing.T) {
	getExp := func(id string) (string, string, string) {
		return "GET", "/api/2.0/mlflow/experiments/get?experiment_id=" + id, ""
	}
	updateExp := func(id string) (string, string, string) {
		return "POST", "/api/2.0/mlflow/experiments/update", `{"experiment_id": "` + id + `", "new_name": "x"}`
	}
	type req func(string) (string, string, string)
	tests := []struct {
		name   string
		who    string
		do     req
		id     string
		allow  bool
		status int
		reason string
		msg    string // a substring of the deny message
	}{
		{"the user row decides before a better group row", "uma", getExp, "1", true, 200, "allowed", ""},
		{"so the group's EDIT does not apply", "uma", updateExp, "1", false, 403, "permission_denied", "EDIT on experiment 1 required"},
		{"NO_PERMISSIONS in one group beats READ in another", "gil", getExp, "1", false, 403, "permission_denied", "READ on experiment 1 required"},
		{"READ in the only group", "gia", getExp, "1", true, 200, "allowed", ""},
		{"regex by name", "rex", updateExp, "1", true, 200, "allowed", ""},
		{"the lower priority number first", "rex", getExp, "2", false, 403, "permission_denied", "READ on experiment 2 required"},
		{"a regex RE2 cannot evaluate denies", "bad", getExp, "4", false, 403, "permission_denied", "cannot be evaluated"},
		{"group-regex", "lab", updateExp, "4", true, 200, "allowed", ""},
		{"group-regex gives what it gives", "ed", getExp, "3", true, 200, "allowed", ""},
		{"and no more", "ed", updateExp, "3", false, 403, "permission_denied", "EDIT on experiment 3 required"},
		{"nothing: the default", "mallory", getExp, "3", false, 403, "permission_denied", "READ on experiment 3 required"},
		{"registered models read the prompt = false rows", "rex", func(string) (string, string, string) {
			return "GET", "/api/2.0/mlflow/registered-models/get?name=team-a-model", ""
		}, "", true, 200, "allowed", ""},
		{"not the prompt = true ones", "rex", func(string) (string, string, string) {
			return "POST", "/api/2.0/mlflow/registered-models/set-tag", `{"name": "team-a-model", "key": "k", "value": "v"}`
		}, "", false, 403, "permission_denied", `EDIT on registered model "team-a-model" required`},
		{"gateway rows are keyed by name", "uma", func(string) (string, string, string) {
			return "GET", "/api/3.0/mlflow/gateway/endpoints/get?endpoint_id=ep-1", ""
		}, "", true, 200, "allowed", ""},
		{"an id with no name is not found", "uma", func(string) (string, string, string) {
			return "GET", "/api/3.0/mlflow/gateway/endpoints/get?endpoint_id=ep-9", ""
		}, "", false, 404, "resource_not_found", "not found"},
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := startCompat(t, b)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					method, target, body := tt.do(tt.id)
					res := h.check(t, h.call(hostMLflow, tt.who, method, target, body))
					requireDecision(t, res, tt.allow, tt.status, tt.reason)
					if !tt.allow {
						assert.Contains(t, res.Message, tt.msg)
					}
				})
			}

			t.Run("custom source order", func(t *testing.T) {
				doc := compatConfig("regex, user, group, group-regex")(testConfig)
				if b == backendSQLite {
					doc = strings.Replace(doc, storePostgres, storeSQLite, 1)
				}
				require.NoError(t, h.run.Reload(t.Context(), h.parse(t, doc)))
				method, target, body := updateExp("1")
				requireDecision(t, h.check(t, h.call(hostMLflow, "uma", method, target, body)), true, 200, "allowed")
				method, target, body = getExp("1")
				requireDecision(t, h.check(t, h.call(hostMLflow, "gil", method, target, body)), false, 403, "permission_denied")
			})

			t.Run("a regex row changed with SQL is seen at once", func(t *testing.T) {
				method, target, body := updateExp("1")
				call := h.call(hostMLflow, "rex", method, target, body)
				requireDecision(t, h.check(t, call), true, 200, "allowed")
				requireDecision(t, h.check(t, call), true, 200, "allowed") // from the cache
				require.NoError(t, h.exec(t.Context(), `UPDATE experiment_regex_permissions SET permission = 'READ' WHERE regex = '^team-a/' AND user_id = 2`))
				took, ok := waitFor(t, revokeLimit, func() bool { return !h.check(t, call).Allowed })
				require.True(t, ok, "still allowed %s after the regex row changed", took)
				t.Logf("regex change took effect after %s", took.Round(time.Microsecond))
				requireDecision(t, h.check(t, call), false, 403, "permission_denied")
			})

			t.Run("explain and permissions list name the sources", func(t *testing.T) {
				conn, err := grpc.NewClient(h.run.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				require.NoError(t, err)
				defer conn.Close()
				admin := v1.NewAdminServiceClient(conn)
				ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+h.tokens["root"])
				ex, err := admin.Explain(ctx, &v1.ExplainRequest{Method: "GET", Host: hostMLflow,
					Target: "/api/2.0/mlflow/experiments/get?experiment_id=4", User: "bad"})
				require.NoError(t, err)
				assert.False(t, ex.Allowed)
				assert.EqualValues(t, http.StatusForbidden, ex.Status)
				assert.Equal(t, "permission_denied", ex.Reason)
				trace := steps(ex)
				assert.Contains(t, trace, "sources in order regex, user, group, group-regex")
				assert.Contains(t, trace, `regex row 4 of user "bad", regex "(?<=x)y" priority 1: cannot be evaluated`)

				list, err := admin.ListPermissions(ctx, &v1.ListPermissionsRequest{
					Target: &v1.Target{Target: &v1.Target_ExperimentId{ExperimentId: "4"}}, User: "lab", Groups: []string{"/labbers"}})
				require.NoError(t, err)
				var kinds []string
				for _, r := range list.Rows {
					kinds = append(kinds, r.SourceKind+" "+r.Grantee+" "+r.GetRegex())
				}
				assert.Equal(t, []string{"group-regex /labbers ^lab/", "default  "}, kinds)
				assert.Equal(t, "EDIT", list.Effective.Permission)
				assert.Contains(t, strings.Join(list.Effective.Sources, "\n"), `group-regex row 1 of group "labbers", regex "^lab/" priority 1: matches "lab/x": EDIT`)
			})
		})
	}
}

func steps(ex *v1.ExplainResponse) string {
	var b strings.Builder
	for _, s := range ex.Steps {
		b.WriteString(s.Stage + " " + s.Detail + "\n")
	}
	return b.String()
}
