package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// counted forwards to the real store and counts the reads that reach it:
// each is one query, one round trip to PostgreSQL.
type counted struct {
	store.Reader
	reads atomic.Int64
}

func (c *counted) Grants(ctx context.Context, u string, r store.Resource) (store.Grants, error) {
	c.reads.Add(1)
	return c.Reader.Grants(ctx, u, r)
}

func (c *counted) Patterns(ctx context.Context, u string, g []string, k store.ResourceKind) (store.Patterns, error) {
	c.reads.Add(1)
	return c.Reader.Patterns(ctx, u, g, k)
}

func (c *counted) User(ctx context.Context, u string) (bool, bool, error) {
	c.reads.Add(1)
	return c.Reader.User(ctx, u)
}

func (c *counted) Resolve(ctx context.Context, l store.Lookup, k string) ([]string, error) {
	c.reads.Add(1)
	return c.Reader.Resolve(ctx, l, k)
}

const compatBenchExperiments = 1000

// compatBenchDB is mlflow-oidc-auth's database on PostgreSQL, beside
// MLflow's tracking tables (in the same database, or in one of their own
// when split), with compatBenchExperiments experiments named team-a/exp-N
// and two users: gus, whose group g1 has READ on each experiment, and rex
// (in g2 and g3), who has no direct or group row but ten regex rows (the
// last one matching) and whose group g2 has five group-regex rows that
// match nothing. It returns the tracking and auth URLs.
func compatBenchDB(b *testing.B, split bool) (trackingURL, authURL string) {
	b.Helper()
	ctx := b.Context()
	authURL = storetest.Postgres(b)
	trackingURL = authURL
	if split {
		trackingURL = storetest.Postgres(b)
	}
	auth, tracking := storetest.PostgresExec(b, authURL), storetest.PostgresExec(b, trackingURL)
	require.NoError(b, storetest.CreateOIDCAuthSchema(ctx, store.PostgreSQL, auth))
	require.NoError(b, postgres.Migrate(ctx, authURL))
	require.NoError(b, storetest.CreateTrackingSchema(ctx, store.PostgreSQL, tracking))
	storetest.Must(b, tracking, fmt.Sprintf(`INSERT INTO experiments (experiment_id, name, lifecycle_stage)
		SELECT n, 'team-a/exp-' || n, 'active' FROM generate_series(1, %d) n`, compatBenchExperiments))
	storetest.Must(b, auth,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'gus', false), (2, 'rex', false)`,
		`INSERT INTO groups (id, group_name) VALUES (1, 'g1'), (2, 'g2'), (3, 'g3')`,
		fmt.Sprintf(`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission)
			SELECT n::text, 1, 'READ' FROM generate_series(1, %d) n`, compatBenchExperiments),
		`INSERT INTO experiment_regex_permissions (regex, priority, user_id, permission)
			SELECT '^team-' || chr(97 + n) || '/', n, 2, 'EDIT' FROM generate_series(1, 9) n`,
		`INSERT INTO experiment_regex_permissions (regex, priority, user_id, permission) VALUES ('^team-a/', 10, 2, 'READ')`,
		`INSERT INTO experiment_group_regex_permissions (regex, priority, group_id, permission)
			SELECT '^lab-' || n || '/', n, 2, 'EDIT' FROM generate_series(1, 5) n`,
	)
	return trackingURL, authURL
}

// BenchmarkCompatCheck is the in-process cost of one allowed check of
// GetExperiment, with compat off (MLflow's model) and on (mlflow-oidc-auth's):
// warm (every cache holds the answer), cold resource (the caller's regex rows
// are cached, the experiment's grants and name are not: the usual miss), and
// cold (nothing cached). store-reads/op counts the queries that reached
// PostgreSQL.
func BenchmarkCompatCheck(b *testing.B) {
	iss, err := devissuer.Start("127.0.0.1:0")
	require.NoError(b, err)
	b.Cleanup(func() { _ = iss.Close() })
	stores := map[bool]*postgres.Store{}
	urls := map[bool]string{}
	for _, split := range []bool{false, true} {
		trackingURL, authURL := compatBenchDB(b, split)
		st, err := postgres.Open(b.Context(), postgres.Config{TrackingURL: trackingURL, AuthURL: authURL})
		require.NoError(b, err)
		b.Cleanup(st.Close)
		stores[split], urls[split] = st, trackingURL
	}

	for _, mode := range []struct {
		name, compat, user string
		groups             []string
		split              bool
	}{
		{"off/group-row", "", "gus", []string{"g1", "g2", "g3"}, false},
		{"on/group-row", "compat: oidc-auth", "gus", []string{"g1", "g2", "g3"}, false},
		{"on/regex", "compat: oidc-auth", "rex", []string{"g2", "g3"}, false},
		{"on/regex-split-databases", "compat: oidc-auth", "rex", []string{"g2", "g3"}, true},
	} {
		url := urls[mode.split]
		inner := &counted{Reader: stores[mode.split]}
		c := cache.New(inner, cache.Options{})
		doc := fmt.Sprintf(`
issuers:
  - name: dev
    issuer: %q
    audiences: [mlflow]
store:
  driver: postgres
  postgres:
    tracking_url: %q
apps:
  - name: mlflow
    type: mlflow
    hosts: [mlflow.test]
    mlflow:
      default_permission: NO_PERMISSIONS
      %s
`, iss.URL, url, mode.compat)
		cfg, err := config.Parse([]byte(doc), func(string) (string, bool) { return "", false })
		require.NoError(b, err)
		rt, err := config.Build(b.Context(), cfg, c, slog.New(slog.DiscardHandler))
		require.NoError(b, err)
		b.Cleanup(rt.Close)
		engine, err := authz.NewEngine(rt.Engine)
		require.NoError(b, err)
		m, err := extauthz.NewMetrics(prometheus.NewRegistry())
		require.NoError(b, err)
		srv := extauthz.NewServer(engine, slog.New(slog.DiscardHandler), m)
		tok, err := iss.Token(devissuer.User{Username: mode.user, Groups: mode.groups})
		require.NoError(b, err)
		reqs := make([]*authv3.CheckRequest, compatBenchExperiments)
		for i := range reqs {
			reqs[i] = extauthz.Call{Method: "GET", Host: "mlflow.test",
				Target:  fmt.Sprintf("/api/2.0/mlflow/experiments/get?experiment_id=%d", i+1),
				Headers: map[string]string{"authorization": "Bearer " + tok}}.CheckRequest()
		}
		check := func(b *testing.B, r *authv3.CheckRequest) {
			resp, err := srv.Check(b.Context(), r)
			if err != nil || resp.GetStatus().GetCode() != 0 {
				b.Fatalf("check: %v %v", err, resp.GetStatus())
			}
		}
		for _, r := range reqs {
			check(b, r)
		}
		run := func(name string, prepare func(i int)) {
			b.Run(mode.name+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				var reads int64
				i := 0
				for b.Loop() {
					if prepare != nil {
						b.StopTimer()
						prepare(i)
						b.StartTimer()
					}
					before := inner.reads.Load()
					check(b, reqs[i%len(reqs)])
					reads += inner.reads.Load() - before
					i++
				}
				b.ReportMetric(float64(reads)/float64(i), "store-reads/op")
			})
		}
		run("warm", nil)
		run("cold-resource", func(i int) {
			c.Flush()
			// The caller's regex rows stay cached between its requests;
			// what a new experiment misses is its grants and its name.
			if strings.Contains(mode.name, "on") {
				_, _ = c.Patterns(b.Context(), mode.user, mode.groups, store.Experiment)
			}
		})
		run("cold", func(int) { c.Flush() })
	}
}
