package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/store/postgres"
	"github.com/mlflow-authz/mlflow-authz/store/sqlite"
)

func newMigrateCommand() *cobra.Command {
	var path, databaseURL, sqlitePath string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the missing MLflow auth tables (and, on PostgreSQL, the change-notification triggers)",
		Long: `migrate creates the auth tables that are missing, with MLflow's exact names,
types and constraints, plus mlflow-oidc-auth's group tables. On PostgreSQL it also
installs the triggers that notify mlflow-authz of grant changes. It never alters an
existing table and never touches MLflow's tracking tables; running it twice is a no-op.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			switch {
			case databaseURL != "":
				return report(cmd, "postgres", postgres.Migrate(ctx, databaseURL))
			case sqlitePath != "":
				return report(cmd, "sqlite", sqlite.Migrate(ctx, sqlitePath))
			case path != "":
				cfg, err := config.Load(path)
				if err != nil {
					return err
				}
				switch cfg.Store.Driver {
				case "postgres":
					url := cfg.Store.Postgres.AuthURL
					if url == "" {
						url = cfg.Store.Postgres.TrackingURL
					}
					return report(cmd, "postgres", postgres.Migrate(ctx, url))
				case "sqlite":
					p := cfg.Store.SQLite.AuthPath
					if p == "" {
						p = cfg.Store.SQLite.TrackingPath
					}
					return report(cmd, "sqlite", sqlite.Migrate(ctx, p))
				}
				return fmt.Errorf("store.driver %q has nothing to migrate", cfg.Store.Driver)
			}
			return usageError{errors.New("give --database-url (PostgreSQL auth DB), --sqlite PATH, or --config FILE")}
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "read the store settings from this configuration file")
	f.StringVar(&databaseURL, "database-url", "", "PostgreSQL URL of MLflow's auth database")
	f.StringVar(&sqlitePath, "sqlite", "", "path of a SQLite auth database")
	return cmd
}

func report(cmd *cobra.Command, driver string, err error) error {
	if err != nil {
		return fmt.Errorf("migrate (%s): %w", driver, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "auth schema is up to date (%s)\n", driver)
	return nil
}
