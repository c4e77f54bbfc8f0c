package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

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
		Long: `list prints every stored row that matches the filters, each with its source (user,
group, and with apps[].mlflow.compat: oidc-auth also mlflow-oidc-auth's regex and
group-regex rows, which match by name: for a resource, those whose regex matches its
name). With a resource it adds the configured default, and with a resource and --user
it prints the effective permission and every source behind it, in the order the
service applies them: users.is_admin, then MLflow's (the user's own row, the best row
of the groups given with --groups, the default) or, under compat, mlflow-oidc-auth's
permission_source_order. Give --config for the compat setting.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, err := t.target(true)
			if err != nil {
				return err
			}
			return adminCall(cmd, &c, false,
				func(ctx context.Context, cl v1.AdminServiceClient) (*v1.ListPermissionsResponse, error) {
					return cl.ListPermissions(ctx, &v1.ListPermissionsRequest{Target: target, User: t.user, Group: t.group, Groups: groups, Workspace: t.workspace})
				},
				printPermissions)
		},
	}
	c.addFlags(list)
	t.add(list)
	list.Flags().StringSliceVar(&groups, "groups", nil, "the user's groups (from its token), for the effective permission")
	cmd.AddCommand(list)
	return cmd
}

func printPermissions(w io.Writer, resp *v1.ListPermissionsResponse) error {
	rows := make([][]string, len(resp.Rows))
	for i, r := range resp.Rows {
		who := r.GranteeKind
		if r.Grantee != "" {
			who += " " + r.Grantee
		}
		id := r.ResourceId
		if r.Regex != nil {
			id = fmt.Sprintf("regex %q", r.GetRegex())
		}
		rows[i] = []string{r.ResourceKind, id, who, r.Permission, r.SourceKind, r.Source}
	}
	if err := printTable(w, []string{"RESOURCE", "ID", "GRANTEE", "PERMISSION", "SOURCE", "MEANING"}, rows); err != nil {
		return err
	}
	if e := resp.Effective; e != nil {
		fmt.Fprintf(w, "\neffective permission of %s (groups %v): %s\n", e.User, e.Groups, e.Permission)
		for _, s := range e.Sources {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	return nil
}
