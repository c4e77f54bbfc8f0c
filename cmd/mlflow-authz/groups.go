package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mlflow-authz/mlflow-authz/authz"
	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

func newGroupsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "groups", Short: "Create, list and delete groups (names without Keycloak's leading /)"}
	create := newAdminCommand(
		&cobra.Command{Use: "create NAME", Short: "Create a group", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.CreateGroupResponse, error) {
			return cl.CreateGroup(ctx, &v1.CreateGroupRequest{Name: args[0]})
		},
		func(w io.Writer, resp *v1.CreateGroupResponse, args []string) error {
			name := authz.NormalizeGroup(args[0])
			if resp.Created {
				fmt.Fprintf(w, "created group %s\n", name)
			} else {
				fmt.Fprintf(w, "no change: group %s already exists\n", name)
			}
			return nil
		})
	list := newAdminCommand(
		&cobra.Command{Use: "list", Short: "List groups", Args: exactArgs(0)},
		func(ctx context.Context, cl v1.AdminServiceClient, _ []string) (*v1.ListGroupsResponse, error) {
			return cl.ListGroups(ctx, &v1.ListGroupsRequest{})
		},
		func(w io.Writer, resp *v1.ListGroupsResponse, _ []string) error {
			rows := make([][]string, len(resp.Groups))
			for i, g := range resp.Groups {
				rows[i] = []string{g}
			}
			return printTable(w, []string{"GROUP"}, rows)
		})
	del := newAdminCommand(
		&cobra.Command{Use: "delete NAME", Short: "Delete a group and every grant row it has", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.DeleteGroupResponse, error) {
			return cl.DeleteGroup(ctx, &v1.DeleteGroupRequest{Name: args[0]})
		},
		func(w io.Writer, _ *v1.DeleteGroupResponse, args []string) error {
			fmt.Fprintf(w, "deleted group %s and its grants\n", authz.NormalizeGroup(args[0]))
			return nil
		})
	cmd.AddCommand(create, list, del)
	return cmd
}
