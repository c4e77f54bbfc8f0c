package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/adminapi"
	"github.com/mlflow-authz/mlflow-authz/authz/config"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store"
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
		opts.DefaultPermission = cfg.DefaultPermission()
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

// runAdmin opens a session, runs call and closes it.
func runAdmin(cmd *cobra.Command, c *adminConn, needEngine bool, call func(ctx context.Context, cl v1.AdminServiceClient) error) error {
	ctx, s, err := c.open(cmd.Context(), needEngine)
	if err != nil {
		return err
	}
	defer s.close()
	return call(ctx, s.client)
}

// writeJSON prints m as indented JSON with every field present, so scripts
// never have to guess whether a missing key means false.
func writeJSON(w io.Writer, m proto.Message) error {
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its whitespace on purpose; normalise it.
	var buf bytes.Buffer
	if err := json.Indent(&buf, compactJSON(raw), "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

func compactJSON(raw []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func newUsersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Create, list and delete MLflow users, and set their admin flag"}
	var c1, c2, c3, c4 adminConn
	var admin, setAdmin bool
	create := &cobra.Command{
		Use: "create USERNAME", Short: "Create a user (no password: identities come from tokens)", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd, &c1, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.CreateUser(ctx, &v1.CreateUserRequest{Username: args[0], Admin: admin})
				if err != nil {
					return callErr(err)
				}
				if c1.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				if resp.Created {
					fmt.Fprintf(cmd.OutOrStdout(), "created user %s (admin %v)\n", args[0], admin)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "no change: user %s already exists\n", args[0])
				}
				return nil
			})
		},
	}
	create.Flags().BoolVar(&admin, "admin", false, "make the user an MLflow admin (users.is_admin)")
	c1.addFlags(create)
	list := &cobra.Command{
		Use: "list", Short: "List users", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAdmin(cmd, &c2, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.ListUsers(ctx, &v1.ListUsersRequest{})
				if err != nil {
					return callErr(err)
				}
				if c2.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintln(tw, "USERNAME\tADMIN")
				for _, u := range resp.Users {
					fmt.Fprintf(tw, "%s\t%v\n", u.Username, u.Admin)
				}
				return tw.Flush()
			})
		},
	}
	c2.addFlags(list)
	del := &cobra.Command{
		Use: "delete USERNAME", Short: "Delete a user and every grant row it has", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd, &c3, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.DeleteUser(ctx, &v1.DeleteUserRequest{Username: args[0]})
				if err != nil {
					return callErr(err)
				}
				if c3.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted user %s and its grants\n", args[0])
				return nil
			})
		},
	}
	c3.addFlags(del)
	set := &cobra.Command{
		Use: "set-admin USERNAME", Short: "Set users.is_admin (--admin=false clears it)", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd, &c4, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.SetAdmin(ctx, &v1.SetAdminRequest{Username: args[0], Admin: setAdmin})
				if err != nil {
					return callErr(err)
				}
				if c4.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				if resp.Changed {
					fmt.Fprintf(cmd.OutOrStdout(), "user %s: admin %v\n", args[0], setAdmin)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "no change: user %s already has admin %v\n", args[0], setAdmin)
				}
				return nil
			})
		},
	}
	set.Flags().BoolVar(&setAdmin, "admin", true, "the admin flag to set")
	c4.addFlags(set)
	cmd.AddCommand(create, list, del, set)
	return cmd
}

func newGroupsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "groups", Short: "Create, list and delete groups (names without Keycloak's leading /)"}
	var c1, c2, c3 adminConn
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a group", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd, &c1, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.CreateGroup(ctx, &v1.CreateGroupRequest{Name: args[0]})
				if err != nil {
					return callErr(err)
				}
				if c1.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				name := authz.NormalizeGroup(args[0])
				if resp.Created {
					fmt.Fprintf(cmd.OutOrStdout(), "created group %s\n", name)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "no change: group %s already exists\n", name)
				}
				return nil
			})
		},
	}
	c1.addFlags(create)
	list := &cobra.Command{
		Use: "list", Short: "List groups", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAdmin(cmd, &c2, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.ListGroups(ctx, &v1.ListGroupsRequest{})
				if err != nil {
					return callErr(err)
				}
				if c2.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintln(tw, "GROUP")
				for _, g := range resp.Groups {
					fmt.Fprintln(tw, g)
				}
				return tw.Flush()
			})
		},
	}
	c2.addFlags(list)
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a group and every grant row it has", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdmin(cmd, &c3, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.DeleteGroup(ctx, &v1.DeleteGroupRequest{Name: args[0]})
				if err != nil {
					return callErr(err)
				}
				if c3.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted group %s and its grants\n", authz.NormalizeGroup(args[0]))
				return nil
			})
		},
	}
	c3.addFlags(del)
	cmd.AddCommand(create, list, del)
	return cmd
}

// targetFlags are the resource and grantee selectors of grant, revoke and
// permissions list.
type targetFlags struct {
	experiment, experimentName, model string
	user, group                       string
}

func (t *targetFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.experiment, "experiment", "", "experiment id")
	f.StringVar(&t.experimentName, "experiment-name", "", "experiment name (resolved through MLflow's tracking tables)")
	f.StringVar(&t.model, "registered-model", "", "registered model name")
	f.StringVar(&t.user, "user", "", "username")
	f.StringVar(&t.group, "group", "", "group name")
}

// target returns the selected resource; optional allows none.
func (t *targetFlags) target(optional bool) (*v1.Target, error) {
	var out []*v1.Target
	if t.experiment != "" {
		out = append(out, &v1.Target{Target: &v1.Target_ExperimentId{ExperimentId: t.experiment}})
	}
	if t.experimentName != "" {
		out = append(out, &v1.Target{Target: &v1.Target_ExperimentName{ExperimentName: t.experimentName}})
	}
	if t.model != "" {
		out = append(out, &v1.Target{Target: &v1.Target_RegisteredModel{RegisteredModel: t.model}})
	}
	switch {
	case len(out) == 1:
		return out[0], nil
	case len(out) == 0 && optional:
		return nil, nil
	}
	return nil, usageError{errors.New("give exactly one of --experiment ID, --experiment-name NAME or --registered-model NAME")}
}

func (t *targetFlags) grantee() (*v1.Grantee, error) {
	switch {
	case t.user != "" && t.group == "":
		return &v1.Grantee{Grantee: &v1.Grantee_User{User: t.user}}, nil
	case t.group != "" && t.user == "":
		return &v1.Grantee{Grantee: &v1.Grantee_Group{Group: t.group}}, nil
	}
	return nil, usageError{errors.New("give exactly one of --user NAME or --group NAME")}
}

func describeChange(c *v1.Change) (resource, who string) {
	resource = c.ResourceKind + " " + c.ResourceId
	if c.ResourceKind == string(store.RegisteredModel) {
		resource = fmt.Sprintf("registered model %q", c.ResourceId)
	}
	return resource, c.GranteeKind + " " + c.Grantee
}

func newGrantCommand() *cobra.Command {
	var (
		c    adminConn
		t    targetFlags
		perm string
	)
	cmd := &cobra.Command{
		Use:   "grant",
		Short: "Grant a user or group a permission on an experiment or registered model",
		Example: `  mlflow-authz grant --sqlite mlflow.db --experiment-name fraud-detection --user alice --permission EDIT
  MLFLOW_AUTHZ_TOKEN=$ADMIN_TOKEN mlflow-authz grant --server mlflow-authz:9191 --registered-model churn --group team-a --permission READ`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, err := t.target(false)
			if err != nil {
				return err
			}
			g, err := t.grantee()
			if err != nil {
				return err
			}
			if perm == "" {
				return usageError{errors.New("--permission is required: READ, USE, EDIT, MANAGE or NO_PERMISSIONS")}
			}
			return runAdmin(cmd, &c, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.Grant(ctx, &v1.GrantRequest{Target: target, Grantee: g, Permission: perm})
				if err != nil {
					return callErr(err)
				}
				if c.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				ch := resp.Change
				res, who := describeChange(ch)
				switch {
				case !ch.Changed:
					fmt.Fprintf(cmd.OutOrStdout(), "no change: %s already has %s on %s\n", who, ch.After, res)
				case ch.Before == "":
					fmt.Fprintf(cmd.OutOrStdout(), "granted %s on %s to %s\n", ch.After, res, who)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "granted %s on %s to %s (was %s)\n", ch.After, res, who, ch.Before)
				}
				return nil
			})
		},
	}
	c.addFlags(cmd)
	t.add(cmd)
	cmd.Flags().StringVar(&perm, "permission", "", "READ, USE, EDIT, MANAGE or NO_PERMISSIONS")
	return cmd
}

func newRevokeCommand() *cobra.Command {
	var (
		c adminConn
		t targetFlags
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Remove a user's or group's permission row on an experiment or registered model",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, err := t.target(false)
			if err != nil {
				return err
			}
			g, err := t.grantee()
			if err != nil {
				return err
			}
			return runAdmin(cmd, &c, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.Revoke(ctx, &v1.RevokeRequest{Target: target, Grantee: g})
				if err != nil {
					return callErr(err)
				}
				if c.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				ch := resp.Change
				res, who := describeChange(ch)
				if !ch.Changed {
					fmt.Fprintf(cmd.OutOrStdout(), "no change: %s has no row on %s\n", who, res)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "revoked %s's %s on %s\n", who, ch.Before, res)
				}
				return nil
			})
		},
	}
	c.addFlags(cmd)
	t.add(cmd)
	return cmd
}

func newPermissionsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "permissions", Short: "List permission rows and effective permissions"}
	var (
		c      adminConn
		t      targetFlags
		groups []string
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the rows behind permissions, filtered by resource, user or group",
		Long: `list prints every stored row that matches the filters. With a resource it adds the
configured default, and with a resource and --user it prints the effective permission
and every source behind it, in MLflow's order: users.is_admin, the user's own row,
the best row of the groups given with --groups, the default.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, err := t.target(true)
			if err != nil {
				return err
			}
			return runAdmin(cmd, &c, false, func(ctx context.Context, cl v1.AdminServiceClient) error {
				resp, err := cl.ListPermissions(ctx, &v1.ListPermissionsRequest{Target: target, User: t.user, Group: t.group, Groups: groups})
				if err != nil {
					return callErr(err)
				}
				if c.output == "json" {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintln(tw, "RESOURCE\tID\tGRANTEE\tPERMISSION\tSOURCE")
				for _, r := range resp.Rows {
					who := r.GranteeKind
					if r.Grantee != "" {
						who += " " + r.Grantee
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ResourceKind, r.ResourceId, who, r.Permission, r.Source)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if e := resp.Effective; e != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "\neffective permission of %s (groups %v): %s\n", e.User, e.Groups, e.Permission)
					for _, s := range e.Sources {
						fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", s)
					}
				}
				return nil
			})
		},
	}
	c.addFlags(list)
	t.add(list)
	list.Flags().StringSliceVar(&groups, "groups", nil, "the user's groups (from its token), for the effective permission")
	cmd.AddCommand(list)
	return cmd
}
