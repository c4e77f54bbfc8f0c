package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

// newRolesCommand manages MLflow 3.12+'s roles (the roles layout) of one
// workspace (--workspace, default "default"). Grants to a role: grant
// --group ROLE.
func newRolesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "roles", Short: "Create, list, show, delete, assign and unassign MLflow roles (MLflow 3.12+; grant to one with grant --group ROLE)"}
	var description, workspace string
	addWorkspaceFlag(cmd.PersistentFlags(), &workspace)
	create := newAdminCommand(
		&cobra.Command{Use: "create NAME", Short: "Create a role in the workspace (--workspace, default \"default\")", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.CreateRoleResponse, error) {
			return cl.CreateRole(ctx, &v1.CreateRoleRequest{Name: args[0], Description: description, Workspace: workspace})
		},
		func(w io.Writer, resp *v1.CreateRoleResponse, args []string) error {
			if resp.Created {
				fmt.Fprintf(w, "created role %s\n", args[0])
			} else {
				fmt.Fprintf(w, "no change: role %s already exists\n", args[0])
			}
			return nil
		})
	create.Flags().StringVar(&description, "description", "", "the role's description")
	list := newAdminCommand(
		&cobra.Command{Use: "list", Short: "List the roles of the workspace (not the hidden per-user ones)", Args: exactArgs(0)},
		func(ctx context.Context, cl v1.AdminServiceClient, _ []string) (*v1.ListRolesResponse, error) {
			return cl.ListRoles(ctx, &v1.ListRolesRequest{Workspace: workspace})
		},
		func(w io.Writer, resp *v1.ListRolesResponse, _ []string) error {
			rows := make([][]string, len(resp.Roles))
			for i, r := range resp.Roles {
				rows[i] = []string{r.Name, fmt.Sprint(len(r.Permissions)), strings.Join(r.Users, ","), r.Description}
			}
			return printTable(w, []string{"ROLE", "GRANTS", "USERS", "DESCRIPTION"}, rows)
		})
	show := newAdminCommand(
		&cobra.Command{Use: "show NAME", Short: "Show a role's grants and users", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.GetRoleResponse, error) {
			return cl.GetRole(ctx, &v1.GetRoleRequest{Name: args[0], Workspace: workspace})
		},
		func(w io.Writer, resp *v1.GetRoleResponse, _ []string) error {
			r := resp.Role
			fmt.Fprintf(w, "role %s", r.Name)
			if r.Description != "" {
				fmt.Fprintf(w, ": %s", r.Description)
			}
			fmt.Fprintf(w, "\nusers: %s\n", strings.Join(r.Users, ", "))
			rows := make([][]string, len(r.Permissions))
			for i, p := range r.Permissions {
				rows[i] = []string{p.ResourceType, p.ResourcePattern, p.Permission}
			}
			return printTable(w, []string{"RESOURCE_TYPE", "PATTERN", "PERMISSION"}, rows)
		})
	del := newAdminCommand(
		&cobra.Command{Use: "delete NAME", Short: "Delete a role, its grants and its assignments", Args: exactArgs(1)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.DeleteRoleResponse, error) {
			return cl.DeleteRole(ctx, &v1.DeleteRoleRequest{Name: args[0], Workspace: workspace})
		},
		func(w io.Writer, _ *v1.DeleteRoleResponse, args []string) error {
			fmt.Fprintf(w, "deleted role %s, its grants and its assignments\n", args[0])
			return nil
		})
	assign := newAdminCommand(
		&cobra.Command{Use: "assign ROLE USER", Short: "Assign a role to a user (a missing users row is created)", Args: exactArgs(2)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.AssignRoleResponse, error) {
			return cl.AssignRole(ctx, &v1.AssignRoleRequest{Role: args[0], Username: args[1], Workspace: workspace})
		},
		func(w io.Writer, resp *v1.AssignRoleResponse, args []string) error {
			if resp.Changed {
				fmt.Fprintf(w, "assigned role %s to %s\n", args[0], args[1])
			} else {
				fmt.Fprintf(w, "no change: %s already has role %s\n", args[1], args[0])
			}
			return nil
		})
	unassign := newAdminCommand(
		&cobra.Command{Use: "unassign ROLE USER", Short: "Remove a role from a user", Args: exactArgs(2)},
		func(ctx context.Context, cl v1.AdminServiceClient, args []string) (*v1.UnassignRoleResponse, error) {
			return cl.UnassignRole(ctx, &v1.UnassignRoleRequest{Role: args[0], Username: args[1], Workspace: workspace})
		},
		func(w io.Writer, resp *v1.UnassignRoleResponse, args []string) error {
			if resp.Changed {
				fmt.Fprintf(w, "removed role %s from %s\n", args[0], args[1])
			} else {
				fmt.Fprintf(w, "no change: %s does not have role %s\n", args[1], args[0])
			}
			return nil
		})
	cmd.AddCommand(create, list, show, del, assign, unassign)
	return cmd
}
