package storetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDatabaseURL names the environment variable that points the tests at an
// existing PostgreSQL server instead of starting a throwaway one.
const EnvDatabaseURL = "MLFLOW_AUTHZ_TEST_DATABASE_URL"

// server is the one PostgreSQL a test binary uses.
type server struct {
	adminURL string // URL of the maintenance database
	dataDir  string // empty when the server was not started by us
	pgCtl    string
	asUser   string // OS user that owns the server, "" for the current one
	host     string
	port     int
	err      error
}

var (
	srvOnce sync.Once
	srv     server
	dbSeq   atomic.Int64
)

// Main runs the tests of a package that uses Postgres, then stops the
// throwaway server, so that no postmaster outlives the test binary. Call it
// from TestMain: func TestMain(m *testing.M) { storetest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopPostgres()
	os.Exit(code)
}

// StopPostgres stops the throwaway server if this binary started one.
func StopPostgres() {
	if srv.dataDir == "" {
		return
	}
	_ = runAs(srv.asUser, srv.pgCtl, "-D", srv.dataDir, "-m", "immediate", "-w", "stop")
	_ = os.RemoveAll(filepath.Dir(srv.dataDir))
}

// Postgres returns the URL of a fresh, empty database on the test binary's
// PostgreSQL server, starting that server on first use. Without PostgreSQL
// binaries the test fails: a skipped store test hides a broken store.
func Postgres(t testing.TB) string {
	t.Helper()
	srvOnce.Do(startServer)
	if srv.err != nil {
		t.Fatalf("storetest: %v", srv.err)
	}
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, srv.adminURL)
	if err != nil {
		t.Fatalf("storetest: connect to test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("storetest: create database %s: %v", name, err)
	}
	return replaceDatabase(srv.adminURL, name)
}

// PostgresSocket returns the host (socket directory or host name) and port
// of the test server, for tests that must stop or disturb it.
func PostgresSocket(t testing.TB) (host string, port int) {
	t.Helper()
	srvOnce.Do(startServer)
	if srv.err != nil {
		t.Fatalf("storetest: %v", srv.err)
	}
	return srv.host, srv.port
}

// PostgresCPU returns the CPU time the test server's processes (the
// postmaster and the backends it forked) have used so far, 0 when the
// server is external (MLFLOW_AUTHZ_TEST_DATABASE_URL) and so not ours to
// watch. Benchmarks take the difference over a run. A backend that exits
// between two readings takes its time with it: pooled connections live
// through a run.
func PostgresCPU(t testing.TB) time.Duration {
	t.Helper()
	srvOnce.Do(startServer)
	if srv.err != nil {
		t.Fatalf("storetest: %v", srv.err)
	}
	if srv.dataDir == "" {
		return 0
	}
	// postmaster.pid's first line is the postmaster's pid.
	b, err := os.ReadFile(filepath.Join(srv.dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	postmaster := strings.TrimSpace(line)
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	var total time.Duration
	for _, d := range dirs {
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // not a process, or gone
		}
		// After the parenthesised command name: state, ppid, … utime and
		// stime are the 12th and 13th, in clock ticks (100 Hz on Linux).
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 || d.Name() != postmaster && f[1] != postmaster {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

func dbName(testName string) string {
	n := nonIdent.ReplaceAllString(strings.ToLower(testName), "_")
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("t_%s_%d", n, dbSeq.Add(1))
}

func replaceDatabase(url, db string) string {
	// Keep the original URL's form; only the database path changes.
	base, q := url, ""
	if i := strings.Index(url, "?"); i >= 0 {
		base, q = url[:i], url[i:]
	}
	if i := strings.LastIndex(base, "/"); i > len("postgres://") {
		base = base[:i]
	}
	return base + "/" + db + q
}

func startServer() {
	if url := os.Getenv(EnvDatabaseURL); url != "" {
		srv.adminURL = url
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			srv.err = fmt.Errorf("parse %s: %w", EnvDatabaseURL, err)
			return
		}
		srv.host, srv.port = cfg.Host, int(cfg.Port)
		return
	}
	bin, err := findPGBin()
	if err != nil {
		srv.err = err
		return
	}
	srv.pgCtl = filepath.Join(bin, "pg_ctl")
	// t.TempDir() under root's home may not be traversable by the postgres
	// user, so the server lives in its own world-accessible dir under /tmp.
	dir, err := os.MkdirTemp("/tmp", "mlflow-authz-pg-")
	if err != nil {
		srv.err = err
		return
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		srv.err = err
		return
	}
	data := filepath.Join(dir, "data")
	sock := filepath.Join(dir, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			srv.err = err
			return
		}
	}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root.
		srv.asUser = "postgres"
		if out, err := exec.Command("chown", "-R", "postgres", dir).CombinedOutput(); err != nil {
			srv.err = fmt.Errorf("chown %s to postgres: %v: %s", dir, err, out)
			return
		}
	}
	if err := runAs(srv.asUser, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		srv.err = fmt.Errorf("initdb: %w", err)
		return
	}
	port, err := freePort()
	if err != nil {
		srv.err = err
		return
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, sock)
	if err := runAs(srv.asUser, srv.pgCtl, "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		srv.err = fmt.Errorf("pg_ctl start: %w\n%s", err, log)
		return
	}
	srv.dataDir = data
	srv.host, srv.port = sock, port
	srv.adminURL = fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", sock, port)
}

// RestartPostgres stops the throwaway server, runs down (the outage a
// test observes), then starts the server again on the same port and data.
// Tests that use it must not run in parallel with others of their binary.
func RestartPostgres(t testing.TB, down func()) {
	t.Helper()
	if srv.dataDir == "" {
		t.Skip("storetest: server is external; cannot stop it")
	}
	if err := runAs(srv.asUser, srv.pgCtl, "-D", srv.dataDir, "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("storetest: stop server: %v", err)
	}
	// Restart even when down fails the test, or every later test of the
	// binary would find the server gone.
	defer func() {
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", srv.port, srv.host)
		if err := runAs(srv.asUser, srv.pgCtl, "-D", srv.dataDir, "-l", filepath.Join(filepath.Dir(srv.dataDir), "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
			t.Errorf("storetest: restart server: %v", err)
		}
	}()
	down()
}

func runAs(user, bin string, args ...string) error {
	var cmd *exec.Cmd
	if user == "" {
		cmd = exec.Command(bin, args...)
	} else {
		cmd = exec.Command("runuser", append([]string{"-u", user, "--", bin}, args...)...)
	}
	cmd.Dir = "/tmp"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", bin, args, err, out)
	}
	return nil
}

func findPGBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl) in PATH or /usr/lib/postgresql/*/bin: " +
		"install them (apt-get install postgresql) or set " + EnvDatabaseURL + " to a server URL")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
