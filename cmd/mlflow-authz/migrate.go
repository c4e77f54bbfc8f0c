package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/backend"
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
			cfg := directStore(databaseURL, sqlitePath)
			switch {
			case cfg.Driver != "":
			case path != "":
				c, err := config.Load(path)
				if err != nil {
					return err
				}
				cfg = c.Store
			default:
				return usageError{errors.New("give --database-url (PostgreSQL auth DB), --sqlite PATH, or --config FILE")}
			}
			if err := backend.Migrate(cmd.Context(), cfg); err != nil {
				return fmt.Errorf("migrate (%s): %w", cfg.Driver, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "auth schema is up to date (%s)\n", cfg.Driver)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "read the store settings from this configuration file")
	f.StringVar(&databaseURL, "database-url", "", "PostgreSQL URL of MLflow's auth database")
	f.StringVar(&sqlitePath, "sqlite", "", "path of a SQLite auth database")
	return cmd
}

// directStore is the store named by --database-url or --sqlite (the first
// given), with no driver when neither is.
func directStore(databaseURL, sqlitePath string) backend.Config {
	switch {
	case databaseURL != "":
		return backend.Config{Driver: store.PostgreSQL, Postgres: postgres.Config{TrackingURL: databaseURL}}
	case sqlitePath != "":
		return backend.Config{Driver: store.SQLite, SQLite: sqlite.Config{TrackingPath: sqlitePath}}
	}
	return backend.Config{}
}
