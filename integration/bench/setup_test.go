package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/mlflow-authz/mlflow-authz/authz/authn/devissuer"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
	"github.com/mlflow-authz/mlflow-authz/integration/loadgen"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

// envNoop makes the test binary serve the no-op floor instead of running
// tests, so the floor runs in a process of its own like the service.
const envNoop = "MLFLOW_AUTHZ_BENCH_NOOP"

func TestMain(m *testing.M) {
	if os.Getenv(envNoop) != "" {
		serveNoop()
		return
	}
	storetest.Main(m)
}

// serveNoop serves the floor on 127.0.0.1:0, prints the address and runs
// until killed.
func serveNoop() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	noop := loadgen.NewNoop()
	if noop.Spin, err = floorSpin(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: noop})
	fmt.Println(ln.Addr().String())
	_ = gs.Serve(ln)
}

// floorSpin reads envFloorSpin: how long the floor spins in each check
// (zero when unset).
func floorSpin() (time.Duration, error) {
	v := os.Getenv(envFloorSpin)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", envFloorSpin, err)
	}
	return d, nil
}

// setGeneratorNice gives every thread of this process (the load generator)
// nice value n. Linux keeps a nice value per thread and a new thread takes
// its creator's, so threads started during a run follow; a second pass
// catches one started during the first. A child process inherits it too:
// no server is started while it is set.
func setGeneratorNice(n int) error {
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, d := range tasks {
			tid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			err = syscall.Setpriority(syscall.PRIO_PROCESS, tid, n)
			if err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: the thread has exited
				return fmt.Errorf("nice %d for the load generator's thread %d: %w", n, tid, err)
			}
		}
	}
	return nil
}

// startNoopProcess re-executes the test binary as the floor server.
func startNoopProcess(t testing.TB) (addr string, pid int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envNoop+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(line), cmd.Process.Pid
}

// seeded creates a database with MLflow's schemas and d's rows, and returns
// its URL and how long the bulk insert took.
func seeded(t testing.TB, d loadgen.Dataset) (string, time.Duration) {
	t.Helper()
	ctx := context.Background()
	url := storetest.Postgres(t)
	require.NoError(t, postgres.Migrate(ctx, url))
	exec := storetest.PostgresExec(t, url)
	require.NoError(t, storetest.CreateTrackingSchema(ctx, store.PostgreSQL, exec))
	start := time.Now()
	for _, s := range d.SeedSQL() {
		require.NoError(t, exec(ctx, s), s)
	}
	return url, time.Since(start)
}

// fixture is what both tests share: a token issuer and a Kiali token file.
type fixture struct {
	iss        *devissuer.Issuer
	kialiToken string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	iss, err := devissuer.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = iss.Close() })
	tok := filepath.Join(t.TempDir(), "kiali-token")
	require.NoError(t, os.WriteFile(tok, []byte("kiali-sa-token"), 0o600))
	return &fixture{iss: iss, kialiToken: tok}
}

// procStat reads a process's CPU time and resident memory from /proc.
func procStat(pid int) (cpu time.Duration, rssKB int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields, in clock ticks (100 Hz on Linux).
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * 10 * time.Millisecond
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return cpu, rssKB, nil
}

// cpuOf is procStat's CPU time of pid, which must be running.
func cpuOf(t *testing.T, pid int) time.Duration {
	t.Helper()
	cpu, _, err := procStat(pid)
	require.NoError(t, err)
	return cpu
}

func authv3Client(c *grpc.ClientConn) authv3.AuthorizationClient {
	return authv3.NewAuthorizationClient(c)
}
