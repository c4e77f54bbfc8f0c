package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

func newUsersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Create, list and delete MLflow users, and set their admin flag"}
	var admin, setAdmin bool
	create := newAdminCommand(
		&cobra.Command{Use: "create USERNAME", Short: "Create a user (no password: identities come from tokens)", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.CreateUserResponse, error) {
			return cl.CreateUser(ctx, &v1.CreateUserRequest{Username: args[0], Admin: admin})
		},
		func(w io.Writer, resp *v1.CreateUserResponse, args []string) error {
			if resp.Created {
				fmt.Fprintf(w, "created user %s (admin %v)\n", args[0], admin)
			} else {
				fmt.Fprintf(w, "no change: user %s already exists\n", args[0])
			}
			return nil
		})
	create.Flags().BoolVar(&admin, "admin", false, "make the user an MLflow admin (users.is_admin)")
	list := newAdminCommand(
		&cobra.Command{Use: "list", Short: "List users", Args: exactArgs(0)},
		func(ctx context.Context, cl v1.AdminServiceClient, _ []string) (*v1.ListUsersResponse, error) {
			return cl.ListUsers(ctx, &v1.ListUsersRequest{})
		},
		func(w io.Writer, resp *v1.ListUsersResponse, _ []string) error {
			rows := make([][]string, len(resp.Users))
			for i, u := range resp.Users {
				rows[i] = []string{u.Username, strconv.FormatBool(u.Admin)}
			}
			return printTable(w, []string{"USERNAME", "ADMIN"}, rows)
		})
	del := newAdminCommand(
		&cobra.Command{Use: "delete USERNAME", Short: "Delete a user and every grant row it has", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.DeleteUserResponse, error) {
			return cl.DeleteUser(ctx, &v1.DeleteUserRequest{Username: args[0]})
		},
		func(w io.Writer, _ *v1.DeleteUserResponse, args []string) error {
			fmt.Fprintf(w, "deleted user %s and its grants\n", args[0])
			return nil
		})
	set := newAdminCommand(
		&cobra.Command{Use: "set-admin USERNAME", Short: "Set users.is_admin (--admin=false clears it)", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.SetAdminResponse, error) {
			return cl.SetAdmin(ctx, &v1.SetAdminRequest{Username: args[0], Admin: setAdmin})
		},
		func(w io.Writer, resp *v1.SetAdminResponse, args []string) error {
			if resp.Changed {
				fmt.Fprintf(w, "user %s: admin %v\n", args[0], setAdmin)
			} else {
				fmt.Fprintf(w, "no change: user %s already has admin %v\n", args[0], setAdmin)
			}
			return nil
		})
	set.Flags().BoolVar(&setAdmin, "admin", true, "the admin flag to set")
	cmd.AddCommand(create, list, del, set)
	return cmd
}
