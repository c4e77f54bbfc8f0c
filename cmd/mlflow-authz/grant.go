package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// targetFlags are the resource and grantee selectors of grant, revoke and
// permissions list.
type targetFlags struct {
	experiment, experimentName, model string
	wholeWorkspace                    bool
	user, group                       string
	workspace                         string
}

func (t *targetFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.experiment, "experiment", "", "experiment id")
	f.StringVar(&t.experimentName, "experiment-name", "", "experiment name (resolved through MLflow's tracking tables)")
	f.StringVar(&t.model, "registered-model", "", "registered model name")
	if cmd.Name() != "list" {
		f.BoolVar(&t.wholeWorkspace, "whole-workspace", false, `the whole workspace (--workspace): a workspace-wide grant (legacy layout: workspace_permissions, users only; roles layout: USE or MANAGE)`)
	}
	f.StringVar(&t.user, "user", "", "username")
	f.StringVar(&t.group, "group", "", "group name")
	addWorkspaceFlag(f, &t.workspace)
}

// addWorkspaceFlag adds --workspace, the MLflow workspace (3.10+) a grant,
// a listing or a role belongs to.
func addWorkspaceFlag(f *pflag.FlagSet, ws *string) {
	f.StringVar(ws, "workspace", "", `MLflow workspace (3.10+, apps[].mlflow.workspaces): registered models, roles and grants are per workspace, and an experiment must live in it (default "default")`)
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
	if t.wholeWorkspace {
		out = append(out, &v1.Target{Target: &v1.Target_WholeWorkspace{WholeWorkspace: true}})
	}
	switch {
	case len(out) == 1:
		return out[0], nil
	case len(out) == 0 && optional:
		return nil, nil
	}
	return nil, usageError{errors.New("give exactly one of --experiment ID, --experiment-name NAME, --registered-model NAME or --whole-workspace")}
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

// row returns the resource and the grantee of the one row that grant and
// revoke write.
func (t *targetFlags) row() (*v1.Target, *v1.Grantee, error) {
	target, err := t.target(false)
	if err != nil {
		return nil, nil, err
	}
	g, err := t.grantee()
	return target, g, err
}

func describeChange(c *v1.Change) (resource, who string) {
	resource = c.ResourceKind + " " + c.ResourceId
	switch c.ResourceKind {
	case string(store.RegisteredModel):
		resource = fmt.Sprintf("registered model %q", c.ResourceId)
	case string(store.WholeWorkspace):
		return fmt.Sprintf("the whole workspace %q", cmp.Or(c.Workspace, store.DefaultWorkspace)), c.GranteeKind + " " + c.Grantee
	}
	if c.Workspace != "" && c.Workspace != store.DefaultWorkspace {
		resource += fmt.Sprintf(" in workspace %q", c.Workspace)
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
			target, g, err := t.row()
			if err != nil {
				return err
			}
			if perm == "" {
				return usageError{errors.New("--permission is required: READ, USE, EDIT, MANAGE or NO_PERMISSIONS")}
			}
			return adminCall(cmd, &c, false,
				func(ctx context.Context, cl v1.AdminServiceClient) (*v1.GrantResponse, error) {
					return cl.Grant(ctx, &v1.GrantRequest{Target: target, Grantee: g, Permission: perm, Workspace: t.workspace})
				},
				func(w io.Writer, resp *v1.GrantResponse) error {
					ch := resp.Change
					res, who := describeChange(ch)
					switch {
					case !ch.Changed:
						fmt.Fprintf(w, "no change: %s already has %s on %s\n", who, ch.After, res)
					case ch.Before == "":
						fmt.Fprintf(w, "granted %s on %s to %s\n", ch.After, res, who)
					default:
						fmt.Fprintf(w, "granted %s on %s to %s (was %s)\n", ch.After, res, who, ch.Before)
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
			target, g, err := t.row()
			if err != nil {
				return err
			}
			return adminCall(cmd, &c, false,
				func(ctx context.Context, cl v1.AdminServiceClient) (*v1.RevokeResponse, error) {
					return cl.Revoke(ctx, &v1.RevokeRequest{Target: target, Grantee: g, Workspace: t.workspace})
				},
				func(w io.Writer, resp *v1.RevokeResponse) error {
					ch := resp.Change
					res, who := describeChange(ch)
					if !ch.Changed {
						fmt.Fprintf(w, "no change: %s has no row on %s\n", who, res)
					} else {
						fmt.Fprintf(w, "revoked %s's %s on %s\n", who, ch.Before, res)
					}
					return nil
				})
		},
	}
	c.addFlags(cmd)
	t.add(cmd)
	return cmd
}
