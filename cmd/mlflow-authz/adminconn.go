package main

// The plumbing of the admin commands (users, groups, grant, revoke,
// permissions, explain): where they reach the data, directly or through a
// running server's admin API. output.go prints what they get back.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/adminapi"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store/backend"
)

// Environment variables of the admin commands.
const (
	envDatabaseURL = "MLFLOW_AUTHZ_DATABASE_URL"
	envToken       = "MLFLOW_AUTHZ_TOKEN"
)

// adminConn holds the flags that say where the admin commands reach the
// data: directly (a database the operator holds credentials for) or through
// a running server's admin API.
type adminConn struct {
	configPath, databaseURL, sqlitePath string
	server, tokenFile                   string
	output                              string
}

func (c *adminConn) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.configPath, "config", "", "read the store (and, for explain, the applications) from this configuration file")
	f.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL URL of MLflow's database (default: $"+envDatabaseURL+")")
	f.StringVar(&c.sqlitePath, "sqlite", "", "path of MLflow's SQLite database")
	f.StringVar(&c.server, "server", "", "host:port of a running mlflow-authz: use its admin API (token from $"+envToken+" or --token-file)")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding the Bearer token for --server")
	f.StringVarP(&c.output, "output", "o", "table", "output format: table or json")
}

// session is an open connection to the admin API, remote or in process.
type session struct {
	client v1.AdminServiceClient
	close  func()
}

// open connects according to the flags. needEngine asks for a local engine
// (explain), which only --config can describe.
func (c *adminConn) open(ctx context.Context, needEngine bool) (context.Context, *session, error) {
	if c.output != "table" && c.output != "json" {
		return ctx, nil, usageError{fmt.Errorf("-o %q is not table or json", c.output)}
	}
	if c.databaseURL == "" && c.sqlitePath == "" && c.configPath == "" && c.server == "" {
		c.databaseURL = os.Getenv(envDatabaseURL)
	}
	n := 0
	for _, v := range []string{c.configPath, c.databaseURL, c.sqlitePath, c.server} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return ctx, nil, usageError{errors.New("give exactly one of --database-url (or $" + envDatabaseURL + "), --sqlite PATH, --config FILE or --server HOST:PORT")}
	}
	if c.server != "" {
		return c.openRemote(ctx)
	}
	if needEngine && c.configPath == "" {
		return ctx, nil, usageError{errors.New("explain needs the applications: give --config FILE, or --server HOST:PORT")}
	}
	return c.openLocal(ctx)
}

func (c *adminConn) openRemote(ctx context.Context) (context.Context, *session, error) {
	token := os.Getenv(envToken)
	if c.tokenFile != "" {
		data, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return ctx, nil, err
		}
		token = strings.TrimSpace(string(data))
	}
	if token == "" {
		return ctx, nil, usageError{errors.New("--server needs an admin's Bearer token: set $" + envToken + " or pass --token-file")}
	}
	conn, err := grpc.NewClient(c.server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return ctx, nil, fmt.Errorf("connect %s: %w", c.server, err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	return ctx, &session{client: v1.NewAdminServiceClient(conn), close: func() { conn.Close() }}, nil
}

// openLocal serves the admin API in process, over an in-memory connection,
// so direct mode runs exactly the code the server runs (minus the admin
// check: the operator already holds the database credentials).
func (c *adminConn) openLocal(ctx context.Context) (context.Context, *session, error) {
	opts := adminapi.Options{LocalActor: localActor(), Log: slog.New(slog.NewJSONHandler(os.Stderr, nil))}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	storeCfg := directStore(c.databaseURL, c.sqlitePath)
	var cfg *config.Config
	if c.configPath != "" {
		var err error
		if cfg, err = config.Load(c.configPath); err != nil {
			return ctx, nil, err
		}
		storeCfg = cfg.Store
	}
	st, err := backend.OpenAdmin(ctx, storeCfg)
	if err != nil {
		return ctx, nil, fmt.Errorf("store: %w", err)
	}
	closers = append(closers, st.Close)
	if cfg != nil {
		if opts.Resolution, err = cfg.Resolution(); err != nil {
			closeAll()
			return ctx, nil, err
		}
		// The engine reads the store uncached: one explanation must see
		// the rows as they are now.
		rt, err := config.Build(ctx, cfg, st, slog.New(slog.DiscardHandler))
		if err != nil {
			closeAll()
			return ctx, nil, err
		}
		closers = append(closers, rt.Close)
		if opts.Engine, err = authz.NewEngine(rt.Engine); err != nil {
			closeAll()
			return ctx, nil, err
		}
		opts.EngineConfig = func() authz.Config { return rt.Engine }
	}
	opts.Store = st

	ln := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	adminapi.New(opts).Register(gs)
	go func() { _ = gs.Serve(ln) }()
	closers = append(closers, gs.Stop)
	conn, err := grpc.NewClient("passthrough:///local",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		closeAll()
		return ctx, nil, err
	}
	closers = append(closers, func() { conn.Close() })
	return ctx, &session{client: v1.NewAdminServiceClient(conn), close: closeAll}, nil
}

// localActor names the operator of a direct-mode command in the audit line.
func localActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "local:" + u.Username
	}
	return "local"
}

// callErr turns an admin API error into the CLI's: a bad argument exits 2,
// everything else 1, and the message is the server's advice, not gRPC's
// framing.
func callErr(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := errors.New(st.Message())
	switch st.Code() {
	case codes.InvalidArgument:
		return usageError{msg}
	case codes.Unavailable:
		if strings.Contains(st.Message(), "connection") {
			return fmt.Errorf("cannot reach the server: %s", st.Message())
		}
	}
	return msg
}

// newAdminCommand completes cmd into a command of its own connection flags
// that makes one admin API call: rpc makes it from the arguments and text
// prints its response (see adminCall).
func newAdminCommand[R proto.Message](cmd *cobra.Command,
	rpc func(ctx context.Context, cl v1.AdminServiceClient, args []string) (R, error),
	text func(w io.Writer, resp R, args []string) error) *cobra.Command {
	var c adminConn
	c.addFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return adminCall(cmd, &c, false,
			func(ctx context.Context, cl v1.AdminServiceClient) (R, error) { return rpc(ctx, cl, args) },
			func(w io.Writer, resp R) error { return text(w, resp, args) })
	}
	return cmd
}

// adminCall opens a session from c's flags, runs rpc on it and prints the
// response: indented JSON with -o json, else text's rendering. An error of
// the call is the CLI's (see callErr).
func adminCall[R proto.Message](cmd *cobra.Command, c *adminConn, needEngine bool,
	rpc func(context.Context, v1.AdminServiceClient) (R, error), text func(io.Writer, R) error) error {
	ctx, s, err := c.open(cmd.Context(), needEngine)
	if err != nil {
		return err
	}
	defer s.close()
	resp, err := rpc(ctx, s.client)
	if err != nil {
		return callErr(err)
	}
	if c.output == "json" {
		return writeJSON(cmd.OutOrStdout(), resp)
	}
	return text(cmd.OutOrStdout(), resp)
}
