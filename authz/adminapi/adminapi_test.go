package adminapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/adminapi"
	"github.com/mlflow-authz/mlflow-authz/authz/authn"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

type env struct {
	client v1.AdminServiceClient
	iss    *devissuer.Issuer
	audit  *storetest.LogBuffer
	st     *sqlite.Store
	engine *authz.Engine
	cfg    authz.Config
}

// start serves the admin API over real gRPC on a loopback port, with a real
// SQLite store (MLflow's tables) and real JWT verification against a JWKS.
func start(t testing.TB) *env {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "mlflow.db")
	require.NoError(t, sqlite.Migrate(ctx, path))
	exec := storetest.SQLiteExec(t, path)
	require.NoError(t, storetest.CreateTrackingSchema(ctx, store.SQLite, exec))
	for _, q := range []string{
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (1, 'fraud-detection', 'active')`,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'carol', 1), (2, 'bob', 0)`,
	} {
		require.NoError(t, exec(ctx, q))
	}
	st, err := sqlite.Open(ctx, sqlite.Config{TrackingPath: path})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return serveAdmin(t, st, mlflow.Config{}, mlflow.Resolution{})
}

// serveAdmin serves the remote admin API on st, with an engine whose MLflow
// application has cfg and real JWT verification against a JWKS.
func serveAdmin(t testing.TB, st *sqlite.Store, cfg mlflow.Config, rs mlflow.Resolution) *env {
	t.Helper()
	ctx := t.Context()
	iss, err := devissuer.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = iss.Close() })
	jwt, err := authn.NewJWT(ctx, []authn.IssuerConfig{{Name: "dev", Issuer: iss.URL, Audiences: []string{"mlflow"}, AdminGroups: []string{"mlflow-admin"}}})
	require.NoError(t, err)
	t.Cleanup(jwt.Close)
	pol, err := mlflow.New(st, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	engineCfg := authz.Config{Apps: []*authz.App{{Name: "mlflow", Hosts: []string{"mlflow.localhost"}, Policy: pol}},
		Authenticators: []authz.Authenticator{jwt}}
	eng, err := authz.NewEngine(engineCfg)
	require.NoError(t, err)

	audit := &storetest.LogBuffer{}
	svc := adminapi.New(adminapi.Options{Store: st, Engine: eng, EngineConfig: func() authz.Config { return engineCfg },
		Resolution: rs, Remote: true, Log: slog.New(slog.NewJSONHandler(audit, nil))})
	return &env{client: v1.NewAdminServiceClient(serve(t, grpc.NewServer(), svc)), iss: iss, audit: audit, st: st, engine: eng, cfg: engineCfg}
}

// serve registers svc on gs, serves gs over real gRPC on a loopback port and
// returns a connection to it.
func serve(t testing.TB, gs *grpc.Server, svc *adminapi.Service) *grpc.ClientConn {
	t.Helper()
	svc.Register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (e *env) as(t *testing.T, u devissuer.User) context.Context {
	t.Helper()
	tok, err := e.iss.Token(u)
	require.NoError(t, err)
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tok)
}

func TestOnlyAdminsMayCall(t *testing.T) {
	e := start(t)
	grant := &v1.GrantRequest{
		Target:     &v1.Target{Target: &v1.Target_ExperimentName{ExperimentName: "fraud-detection"}},
		Grantee:    &v1.Grantee{Grantee: &v1.Grantee_User{User: "alice"}},
		Permission: "READ",
	}
	tests := []struct {
		name    string
		ctx     func() context.Context
		code    codes.Code
		message string
		actor   string
		result  string
	}{
		{"admin by token group", func() context.Context {
			return e.as(t, devissuer.User{Username: "dave", Groups: []string{"/mlflow-admin"}})
		}, codes.OK, "", "dave", "ok"},
		{"admin by users.is_admin", func() context.Context { return e.as(t, devissuer.User{Username: "carol"}) }, codes.OK, "", "carol", "ok"},
		{"authenticated non-admin", func() context.Context { return e.as(t, devissuer.User{Username: "bob", Groups: []string{"/team-a"}}) },
			codes.PermissionDenied, "bob is not an admin", "bob", "denied"},
		{"no credential", func() context.Context { return t.Context() }, codes.Unauthenticated, "needs a Bearer token", "anonymous", "denied"},
		{"tampered token", func() context.Context {
			tok, err := e.iss.Token(devissuer.User{Username: "dave", Groups: []string{"/mlflow-admin"}})
			require.NoError(t, err)
			return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tok[:len(tok)-4]+"AAAA")
		}, codes.Unauthenticated, "token_bad_signature", "", "denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.audit.Lines(t))
			_, err := e.client.Grant(tt.ctx(), grant)
			assert.Equal(t, tt.code, status.Code(err), "%v", err)
			if tt.message != "" {
				assert.Contains(t, status.Convert(err).Message(), tt.message)
			}
			lines := e.audit.Lines(t)
			require.Len(t, lines, before+1, "exactly one audit line per call")
			l := lines[len(lines)-1]
			assert.Equal(t, "admin_audit", l["msg"])
			assert.Equal(t, "grant", l["action"])
			assert.Equal(t, "grpc", l["via"])
			assert.Equal(t, tt.actor, l["actor"])
			assert.Equal(t, tt.result, l["result"])
			assert.Equal(t, `experiment name "fraud-detection" user alice`, l["target"])
		})
	}
	// The denied calls wrote nothing.
	rows, err := e.st.ListGrants(t.Context(), store.GrantFilter{User: "alice"})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	assert.Equal(t, "READ", rows[0].Permission)
}

func TestGrantAuditsBeforeAndAfter(t *testing.T) {
	e := start(t)
	ctx := e.as(t, devissuer.User{Username: "carol"})
	target := &v1.Target{Target: &v1.Target_ExperimentId{ExperimentId: "1"}}
	who := &v1.Grantee{Grantee: &v1.Grantee_Group{Group: "/team-a"}}
	steps := []struct {
		perm            string
		before, after   string
		changed         bool
		revoke          bool
		wantCode        codes.Code
		wantMsgContains string
	}{
		{perm: "READ", before: "", after: "READ", changed: true},
		{perm: "read", before: "READ", after: "READ", changed: false},
		{perm: "EDIT", before: "READ", after: "EDIT", changed: true},
		{revoke: true, before: "EDIT", after: "", changed: true},
		{revoke: true, before: "", after: "", changed: false},
		{perm: "OWNER", wantCode: codes.InvalidArgument, wantMsgContains: `permission "OWNER" is not one of`},
	}
	for _, s := range steps {
		var ch *v1.Change
		var err error
		if s.revoke {
			var resp *v1.RevokeResponse
			resp, err = e.client.Revoke(ctx, &v1.RevokeRequest{Target: target, Grantee: who})
			ch = resp.GetChange()
		} else {
			var resp *v1.GrantResponse
			resp, err = e.client.Grant(ctx, &v1.GrantRequest{Target: target, Grantee: who, Permission: s.perm})
			ch = resp.GetChange()
		}
		l := e.audit.Lines(t)
		last := l[len(l)-1]
		if s.wantCode != codes.OK {
			assert.Equal(t, s.wantCode, status.Code(err))
			assert.Contains(t, status.Convert(err).Message(), s.wantMsgContains)
			assert.Equal(t, "error", last["result"])
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, s.before, ch.Before)
		assert.Equal(t, s.after, ch.After)
		assert.Equal(t, s.changed, ch.Changed)
		assert.Equal(t, "team-a", ch.Grantee)
		assert.Equal(t, s.before, last["before"])
		assert.Equal(t, s.after, last["after"])
		assert.Equal(t, s.changed, last["changed"])
		assert.Equal(t, "carol", last["actor"])
	}

	// An experiment that does not exist is refused with advice.
	_, err := e.client.Grant(ctx, &v1.GrantRequest{Target: &v1.Target{Target: &v1.Target_ExperimentName{ExperimentName: "foo"}},
		Grantee: who, Permission: "READ"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	assert.Equal(t, `experiment "foo" not found; list experiments with: mlflow experiments search`, status.Convert(err).Message())
}

func TestExplainAsUserAndAsToken(t *testing.T) {
	e := start(t)
	ctx := e.as(t, devissuer.User{Username: "carol"})
	_, err := e.client.Grant(ctx, &v1.GrantRequest{Target: &v1.Target{Target: &v1.Target_ExperimentId{ExperimentId: "1"}},
		Grantee: &v1.Grantee{Grantee: &v1.Grantee_Group{Group: "team-a"}}, Permission: "READ"})
	require.NoError(t, err)
	bobToken, err := e.iss.Token(devissuer.User{Username: "bob", Groups: []string{"/team-a"}})
	require.NoError(t, err)

	tests := []struct {
		name    string
		req     *v1.ExplainRequest
		allowed bool
		status  int32
		reason  string
		stage   string // a stage that must appear
		detail  string // in some step's detail
	}{
		{"group row allows read as user", &v1.ExplainRequest{Method: "GET", Host: "mlflow.localhost",
			Target: "/api/2.0/mlflow/experiments/get?experiment_id=1", User: "bob", Groups: []string{"/team-a"}},
			true, 200, "allowed", "permission", `group "team-a" row on experiment 1: READ`},
		{"same as token", &v1.ExplainRequest{Method: "GET", Host: "mlflow.localhost",
			Target: "/api/2.0/mlflow/experiments/get?experiment_id=1", Token: bobToken},
			true, 200, "allowed", "identity", `user "bob" via jwt`},
		{"no group: default denies", &v1.ExplainRequest{Method: "GET", Host: "mlflow.localhost",
			Target: "/api/2.0/mlflow/experiments/get?experiment_id=1", User: "bob"},
			false, 403, "permission_denied", "permission", "default NO_PERMISSIONS"},
		{"read is not edit", &v1.ExplainRequest{Method: "POST", Host: "mlflow.localhost",
			Target: "/api/2.0/mlflow/experiments/update", Body: []byte(`{"experiment_id":"1","new_name":"x"}`), User: "bob", Groups: []string{"team-a"}},
			false, 403, "permission_denied", "route", ""},
		{"dot segments refused before routing", &v1.ExplainRequest{Method: "GET", Host: "mlflow.localhost",
			Target: "/api/2.0/mlflow/../x", User: "bob"}, false, 400, "path_not_canonical", "request", "refused before routing"},
		{"unknown host", &v1.ExplainRequest{Method: "GET", Host: "nope.example.com", Target: "/", User: "bob"},
			false, 403, "unknown_host", "decision", "belongs to no application"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client.Explain(ctx, tt.req)
			require.NoError(t, err)
			assert.Equal(t, tt.allowed, resp.Allowed)
			assert.Equal(t, tt.status, resp.Status)
			assert.Equal(t, tt.reason, resp.Reason)
			found := false
			for _, s := range resp.Steps {
				if s.Stage == tt.stage && strings.Contains(s.Detail, tt.detail) {
					found = true
				}
			}
			assert.True(t, found, "no %s step containing %q in %v", tt.stage, tt.detail, resp.Steps)
		})
	}

	// Explain too is admin-only.
	_, err = e.client.Explain(metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+bobToken),
		&v1.ExplainRequest{Method: "GET", Host: "mlflow.localhost", Target: "/", User: "carol"})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
}

// FuzzExplainMatchesCheck: for any request, explain (served as the CLI
// serves it in process, as a token bearer) reaches exactly the decision the
// engine's Check reaches, a deny always carries a status and a reason, and
// there is always a trace.
func FuzzExplainMatchesCheck(f *testing.F) {
	e := start(f)
	tok, err := e.iss.Token(devissuer.User{Username: "bob", Groups: []string{"/team-a"}})
	require.NoError(f, err)
	local := v1.NewAdminServiceClient(serve(f, grpc.NewServer(),
		adminapi.New(adminapi.Options{Store: e.st, Engine: e.engine, EngineConfig: func() authz.Config { return e.cfg }})))
	f.Add("GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", "mlflow.localhost", []byte(nil), true)
	f.Add("POST", "/api/2.0/mlflow/experiments/update", "mlflow.localhost", []byte(`{"experiment_id":"1"}`), true)
	f.Add("GET", "/api/2.0/mlflow/%2e%2e/x", "mlflow.localhost:443", []byte(nil), false)
	f.Add("PUT", "//a//b?x=%zz", "other", []byte("{"), true)
	f.Fuzz(func(t *testing.T, method, target, host string, body []byte, withToken bool) {
		if !utf8.ValidString(method + target + host) {
			t.Skip("protobuf strings are UTF-8: such a request cannot reach explain")
		}
		req := &v1.ExplainRequest{Method: method, Target: target, Host: host, Body: body}
		headers := map[string]string{}
		if withToken {
			req.Token = tok
			headers["authorization"] = "Bearer " + tok
		}
		if len(body) > 0 {
			headers["content-type"] = "application/json"
		}
		resp, err := local.Explain(t.Context(), req)
		require.NoError(t, err)
		var want authz.Decision
		r, deny := authz.NewRequest(authz.RequestInput{ID: "explain", Method: method, Host: host, Target: target, Headers: headers, Body: body})
		if deny != nil {
			want = *deny
		} else {
			want = e.engine.Check(t.Context(), r)
		}
		assert.Equal(t, want.Allowed, resp.Allowed)
		assert.Equal(t, int32(want.Status), resp.Status)
		assert.Equal(t, string(want.Reason), resp.Reason)
		assert.NotEmpty(t, resp.Steps)
		if !resp.Allowed {
			assert.GreaterOrEqual(t, resp.Status, int32(400))
			assert.NotEmpty(t, resp.Reason)
		}
	})
}

// TestAuditLines pins the audit line of every kind of call, as the README's
// "Audit log" section documents it: what was acted on, the state before and
// after, and the message returned on an error.
func TestAuditLines(t *testing.T) {
	e := start(t)
	ctx := e.as(t, devissuer.User{Username: "carol"})
	c := e.client
	exp1 := &v1.Target{Target: &v1.Target_ExperimentId{ExperimentId: "1"}}
	tests := []struct {
		name                          string
		call                          func() error
		action, target, before, after string
		changed                       bool
		errMsg                        string // set: the call fails with it and the line says result error
	}{
		{"create user", func() error { _, err := c.CreateUser(ctx, &v1.CreateUserRequest{Username: "alice"}); return err },
			"users.create", "user alice", "", "exists admin=false", true, ""},
		{"create user again", func() error { _, err := c.CreateUser(ctx, &v1.CreateUserRequest{Username: "alice"}); return err },
			"users.create", "user alice", "exists", "exists", false, ""},
		{"create user without a name", func() error { _, err := c.CreateUser(ctx, &v1.CreateUserRequest{}); return err },
			"users.create", "user ", "", "", false, "username is required"},
		{"set admin", func() error {
			_, err := c.SetAdmin(ctx, &v1.SetAdminRequest{Username: "alice", Admin: true})
			return err
		}, "users.set-admin", "user alice", "admin=false", "admin=true", true, ""},
		{"set admin again", func() error {
			_, err := c.SetAdmin(ctx, &v1.SetAdminRequest{Username: "alice", Admin: true})
			return err
		}, "users.set-admin", "user alice", "admin=true", "admin=true", false, ""},
		{"list users", func() error { _, err := c.ListUsers(ctx, &v1.ListUsersRequest{}); return err },
			"users.list", "", "", "", false, ""},
		{"delete user", func() error { _, err := c.DeleteUser(ctx, &v1.DeleteUserRequest{Username: "alice"}); return err },
			"users.delete", "user alice", "exists", "", true, ""},
		{"delete a missing user", func() error { _, err := c.DeleteUser(ctx, &v1.DeleteUserRequest{Username: "alice"}); return err },
			"users.delete", "user alice", "", "", false, `user "alice" not found; list users with: mlflow-authz users list`},
		{"create group", func() error { _, err := c.CreateGroup(ctx, &v1.CreateGroupRequest{Name: "/ml-team"}); return err },
			"groups.create", "group ml-team", "", "exists", true, ""},
		{"create group again", func() error { _, err := c.CreateGroup(ctx, &v1.CreateGroupRequest{Name: "ml-team"}); return err },
			"groups.create", "group ml-team", "exists", "exists", false, ""},
		{"list groups", func() error { _, err := c.ListGroups(ctx, &v1.ListGroupsRequest{}); return err },
			"groups.list", "", "", "", false, ""},
		{"delete group", func() error { _, err := c.DeleteGroup(ctx, &v1.DeleteGroupRequest{Name: "ml-team"}); return err },
			"groups.delete", "group ml-team", "exists", "", true, ""},
		{"list permissions", func() error {
			_, err := c.ListPermissions(ctx, &v1.ListPermissionsRequest{Target: exp1, User: "bob"})
			return err
		}, "permissions.list", "experiment 1", "", "", false, ""},
		{"explain", func() error {
			_, err := c.Explain(ctx, &v1.ExplainRequest{Method: "GET", Host: "mlflow.localhost", Target: getExp1, User: "bob"})
			return err
		}, "explain", "GET " + getExp1 + " on mlflow.localhost as user bob", "", "allowed=false status=403 reason=permission_denied", false, ""},
		{"explain as token bearer", func() error {
			_, err := c.Explain(ctx, &v1.ExplainRequest{Method: "GET", Host: "mlflow.localhost", Target: getExp1, Token: "x", User: "bob"})
			return err
		}, "explain", "GET " + getExp1 + " on mlflow.localhost as user bob", "", "", false, "give a token or --user, not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.audit.Lines(t))
			err := tt.call()
			result := "ok"
			if tt.errMsg != "" {
				require.Error(t, err)
				assert.Equal(t, tt.errMsg, status.Convert(err).Message())
				result = "error"
			} else {
				require.NoError(t, err)
			}
			lines := e.audit.Lines(t)
			require.Len(t, lines, before+1, "exactly one audit line per call")
			l := lines[len(lines)-1]
			want := map[string]any{"msg": "admin_audit", "actor": "carol", "via": "grpc", "action": tt.action, "target": tt.target,
				"before": tt.before, "after": tt.after, "changed": tt.changed, "result": result}
			if tt.errMsg != "" {
				want["error"] = tt.errMsg
			}
			delete(l, "time")
			delete(l, "level")
			assert.Equal(t, want, l)
		})
	}
}

const getExp1 = "/api/2.0/mlflow/experiments/get?experiment_id=1"

// TestInterceptorGuardsOnlyTheAdminService: on a server shared with other
// services (Envoy's Check in production, health here), the admin check and
// audit apply to admin calls only, and the server's own interceptors still
// run, outermost.
func TestInterceptorGuardsOnlyTheAdminService(t *testing.T) {
	audit := &storetest.LogBuffer{}
	svc := adminapi.New(adminapi.Options{Store: start(t).st, Remote: true, Log: slog.New(slog.NewJSONHandler(audit, nil))})
	var mu sync.Mutex
	var seen []string
	outer := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s audited=%d", info.FullMethod, len(audit.Lines(t))))
		mu.Unlock()
		return handler(ctx, req)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(outer))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	conn := serve(t, gs, svc)

	hr, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "health needs no admin")
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.Status)
	assert.Empty(t, audit.Lines(t), "only admin calls are audited")

	// Without an engine a remote call cannot be authenticated: refused.
	_, err = v1.NewAdminServiceClient(conn).ListUsers(t.Context(), &v1.ListUsersRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, "adminapi: no engine to authenticate with", status.Convert(err).Message())
	lines := audit.Lines(t)
	require.Len(t, lines, 1)
	assert.Equal(t, "users.list", lines[0]["action"])
	assert.Equal(t, "error", lines[0]["result"])

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{
		"/grpc.health.v1.Health/Check audited=0",
		"/mlflowauthz.v1.AdminService/ListUsers audited=0",
	}, seen, "the server's interceptor runs for every service, before the admin interceptor")
}
