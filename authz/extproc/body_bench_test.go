package extproc

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/cache"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// BenchmarkFilterBody is the filter's own work on a 1,000-row
// experiments/search page for a user with 50 grants (and 10 through a
// group), warm caches: validating and reading every row, deciding it with
// mlflow.Rows over the grant cache, and writing the kept rows. The budget
// is 2 ms of CPU (docs/performance.md); it runs on one goroutine, so
// ns/op is its CPU time.
func BenchmarkFilterBody(b *testing.B) {
	path := filepath.Join(b.TempDir(), "mlflow.db")
	require.NoError(b, sqlite.Migrate(b.Context(), path))
	exec := storetest.SQLiteExec(b, path)
	require.NoError(b, storetest.CreateTrackingSchema(b.Context(), store.SQLite, exec))
	var grants, group []string
	for i := 1; i <= 50; i++ {
		grants = append(grants, fmt.Sprintf("('%d', 1, 'READ')", i*20))
	}
	for i := 1; i <= 10; i++ {
		group = append(group, fmt.Sprintf("('%d', 1, 'READ')", i*7))
	}
	storetest.Must(b, exec,
		`INSERT INTO users (id, username, is_admin) VALUES (1, 'alice', false)`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES `+strings.Join(grants, ", "),
		`INSERT INTO groups (id, group_name) VALUES (1, 'team')`,
		`INSERT INTO experiment_group_permissions (experiment_id, group_id, permission) VALUES `+strings.Join(group, ", "),
	)
	st, err := sqlite.Open(b.Context(), sqlite.Config{TrackingPath: path})
	require.NoError(b, err)
	b.Cleanup(st.Close)
	policy, err := mlflow.New(cache.New(st, cache.Options{}), mlflow.Config{}, nil)
	require.NoError(b, err)
	id := &authz.Identity{Kind: authz.KindUser, Username: "alice", Groups: []string{"team"}}
	var sb strings.Builder
	sb.WriteString(`{"experiments":[`)
	for i := 1; i <= 1000; i++ {
		if i > 1 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"experiment_id":"%d","name":"team-%d/experiment-%d","artifact_location":"mlflow-artifacts:/%d","lifecycle_stage":"active","last_update_time":%d,"creation_time":1700000000000,"tags":[{"key":"mlflow.note.content","value":"baseline run for team %d"},{"key":"owner","value":"user-%d"}]}`,
			i, i%20, i, i, 1700000000000+i, i%20, i%50)
	}
	sb.WriteString(`],"next_page_token":"eyJvZmZzZXQiOiAxMDAwfQ=="}`)
	body := []byte(sb.String())
	filter := responseFilters["SearchExperiments"]
	once := func() int {
		rows, err := policy.Rows(b.Context(), id)
		require.NoError(b, err)
		d, err := newDoc(body)
		require.NoError(b, err)
		require.NoError(b, filter(b.Context(), d, rows))
		out, err := d.output()
		require.NoError(b, err)
		return len(out)
	}
	size := once() // warms the grant and user caches
	b.ReportMetric(float64(size)/float64(len(body)), "out/in")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu := cpuTime()
	n := 0
	for b.Loop() {
		once()
		n++
	}
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(n), "cpu-ns/op")
}

// cpuTime is the process's CPU time (user and system, every thread, the
// garbage collector's included): on a shared machine wall time also counts
// the time other processes held the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
