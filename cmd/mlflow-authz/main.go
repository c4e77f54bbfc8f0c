// Command mlflow-authz is the Envoy ext_authz service that guards MLflow,
// Phoenix and Kiali in an Istio mesh. See the README for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// usageError marks bad command-line usage, which exits 2 rather than 1.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "mlflow-authz:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "mlflow-authz",
		Short:         "Envoy ext_authz service for MLflow, Phoenix and Kiali",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       currentBuild().Version,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCommand(), newMigrateCommand(), newDemoCommand(), newCheckCommand(),
		newUsersCommand(), newGroupsCommand(), newRolesCommand(), newGrantCommand(), newRevokeCommand(), newPermissionsCommand(), newExplainCommand(),
		newVersionCommand())
	return root
}

// exactArgs is cobra.ExactArgs with our exit code for bad usage.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
