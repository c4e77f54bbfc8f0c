package mlflowdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// OIDCAuthMarker is a table that only mlflow-oidc-auth's migrations make
// (revision 1ddf23934b63): an auth database that has it is that plugin's.
const OIDCAuthMarker = "experiment_regex_permissions"

// Migrate creates, through tx, the auth tables missing from an auth
// database of dialect d (none in mlflow-oidc-auth's database, none at a
// roles-layout or unknown revision): MLflow's tables at AuthHead (unless
// alembic_version_auth is at an older revision, whose upgrade MLflow's own
// alembic must run), mlflow-oidc-auth's group tables, and
// alembic_version_auth stamped AuthHead if it is missing. It never alters
// an existing table and never touches tracking tables, so running it again
// is a no-op. The backend runs it in one transaction that excludes other
// migrations (an advisory lock, BEGIN IMMEDIATE) and adds what only it
// needs (PostgreSQL's notify triggers).
func Migrate(ctx context.Context, tx Tx, d store.Dialect) error {
	have, err := tx.Tables(ctx)
	if err != nil {
		return err
	}
	if have[OIDCAuthMarker] {
		// mlflow-oidc-auth's database: its alembic made every table it
		// reads, with its own columns. Creating MLflow's tables or stamping
		// alembic_version_auth there would only mislead; the backend still
		// installs its triggers.
		return nil
	}
	versioned := have["alembic_version_auth"]
	createMLflow := true
	if versioned {
		var v string
		if _, err := queryOne(ctx, tx, `SELECT version_num FROM alembic_version_auth LIMIT 1`, nil, &v); err != nil {
			return err
		}
		if !legacyRevisions[v] {
			// MLflow 3.12+ (the roles layout) or a revision newer than
			// this build knows: MLflow's alembic owns every table there,
			// and the legacy tables may be gone on purpose (f6a7b8c9d0e1).
			// Group grants are roles in that layout, so nothing of ours is
			// missing either; the backend still installs its triggers.
			return nil
		}
		createMLflow = !OlderAuthRevisions[v]
	}
	tables := GroupTables(d)
	if createMLflow {
		tables = AuthTables(d)
	} else if !have["users"] {
		return errors.New("alembic_version_auth is at an older revision but users is missing")
	}
	for _, t := range tables {
		if have[t.Name] {
			continue
		}
		for _, stmt := range strings.Split(t.DDL, ";") {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("create %s: %w", t.Name, err)
			}
		}
	}
	if versioned {
		return nil
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE alembic_version_auth (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_auth_pkc PRIMARY KEY (version_num))`); err != nil {
		return fmt.Errorf("create alembic_version_auth: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO alembic_version_auth (version_num) VALUES ($1)`, AuthHead); err != nil {
		return fmt.Errorf("stamp alembic_version_auth: %w", err)
	}
	return nil
}
