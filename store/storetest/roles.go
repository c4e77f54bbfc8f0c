package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

// RolesHead is the newest revision of MLflow's auth database that
// RolesMigrations transcribes.
const RolesHead = "262a5e73fb1a"

// RolesMigration is one alembic revision of MLflow's auth database after
// 2ed73881770d, as SQLAlchemy emits its DDL for PostgreSQL; Rows, when set,
// is its data migration, run through exec and query.
type RolesMigration struct {
	Revision, DownRevision string
	Statements             []string
	Rows                   func(ctx context.Context, d store.Dialect, exec ExecFunc, query QueryFunc) error
}

// RolesMigrations transcribes MLflow's auth migrations
// (mlflow/server/auth/db/migrations/versions/*.py of mlflow/mlflow, at the
// commits given: c3d4e5f6a7b8_add_rbac_tables.py at 225bd25e,
// e5f6a7b8c9d0_migrate_permissions_to_roles.py at 03cd01ad,
// f1a2b3c4d5e6_promote_prompt_resource_type.py at 5459d1b3,
// 262a5e73fb1a_add_mutation_conditions.py at 64078b75) in revision order. Left out:
// e6c5d2f7a8b9, which only adds ON DELETE CASCADE to the users foreign
// keys (mlflow-authz deletes the rows itself), and the unreleased
// f6a7b8c9d0e1 that drops the legacy tables.
var RolesMigrations = []RolesMigration{
	{Revision: "c3d4e5f6a7b8", DownRevision: mlflowdb.AuthHead, Statements: []string{
		`CREATE TABLE roles (
	id SERIAL NOT NULL,
	name VARCHAR(255) NOT NULL,
	workspace VARCHAR(63) NOT NULL,
	description VARCHAR(1024),
	PRIMARY KEY (id),
	CONSTRAINT unique_workspace_role_name UNIQUE (workspace, name))`,
		`CREATE INDEX idx_roles_workspace ON roles (workspace)`,
		`CREATE TABLE role_permissions (
	id SERIAL NOT NULL,
	role_id INTEGER NOT NULL,
	resource_type VARCHAR(64) NOT NULL,
	resource_pattern VARCHAR(255) NOT NULL,
	permission VARCHAR(255) NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY (role_id) REFERENCES roles (id),
	CONSTRAINT unique_role_resource_perm UNIQUE (role_id, resource_type, resource_pattern))`,
		`CREATE INDEX idx_role_permissions_role_id ON role_permissions (role_id)`,
		`CREATE TABLE user_role_assignments (
	id SERIAL NOT NULL,
	user_id INTEGER NOT NULL,
	role_id INTEGER NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY (user_id) REFERENCES users (id),
	FOREIGN KEY (role_id) REFERENCES roles (id),
	CONSTRAINT unique_user_role UNIQUE (user_id, role_id))`,
		`CREATE INDEX idx_user_role_assignments_user_id ON user_role_assignments (user_id)`,
		`CREATE INDEX idx_user_role_assignments_role_id ON user_role_assignments (role_id)`,
	}},
	{Revision: "e5f6a7b8c9d0", DownRevision: "c3d4e5f6a7b8", Rows: copyLegacyRows},
	{Revision: "f1a2b3c4d5e6", DownRevision: "e5f6a7b8c9d0", Rows: promotePrompts},
	{Revision: RolesHead, DownRevision: "f1a2b3c4d5e6", Statements: []string{
		`CREATE TABLE mutation_conditions (
	id SERIAL NOT NULL,
	role_id INTEGER NOT NULL,
	resource_type VARCHAR(64) NOT NULL,
	resource_pattern VARCHAR(255) DEFAULT '*' NOT NULL,
	value_condition TEXT,
	target_condition TEXT,
	condition_slot SMALLINT NOT NULL,
	container_resource_type VARCHAR(64) DEFAULT 'workspace' NOT NULL,
	container_resource_pattern VARCHAR(255) DEFAULT '*' NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY (role_id) REFERENCES roles (id) ON DELETE CASCADE,
	CONSTRAINT unique_role_resource_type_slot UNIQUE (role_id, resource_type, condition_slot),
	CONSTRAINT ck_mutation_conditions_slot_range CHECK (condition_slot BETWEEN 1 AND 100),
	CONSTRAINT ck_mutation_conditions_container_workspace CHECK (container_resource_type <> 'workspace' OR container_resource_pattern = '*'))`,
		`CREATE INDEX idx_mutation_conditions_lookup ON mutation_conditions (role_id, resource_type, container_resource_type, container_resource_pattern)`,
	}},
}

// MigrateToRoles upgrades an auth database at mlflowdb.AuthHead (as
// migrate makes it) to RolesHead the way MLflow's alembic does, data
// migrations included, and stamps alembic_version_auth. The tracking
// tables, when they share the database, let f1a2b3c4d5e6 classify
// prompts; query reads the auth database.
func MigrateToRoles(ctx context.Context, d store.Dialect, exec ExecFunc, query QueryFunc) error {
	for _, m := range RolesMigrations {
		for _, stmt := range m.Statements {
			if d == store.SQLite {
				stmt = strings.ReplaceAll(stmt, "SERIAL NOT NULL", "INTEGER NOT NULL")
			}
			if err := exec(ctx, stmt); err != nil {
				return fmt.Errorf("storetest: %s: %w\n%s", m.Revision, err, stmt)
			}
		}
		if m.Rows != nil {
			if err := m.Rows(ctx, d, exec, query); err != nil {
				return fmt.Errorf("storetest: %s: %w", m.Revision, err)
			}
		}
		if err := exec(ctx, `UPDATE alembic_version_auth SET version_num = $1`, m.Revision); err != nil {
			return err
		}
	}
	return nil
}

// jsonRow is each dialect's way to return a row as one JSON array.
var jsonRow = map[store.Dialect]string{store.PostgreSQL: "CAST(json_build_array(%s) AS TEXT)", store.SQLite: "json_array(%s)"}

// copyLegacyRows is e5f6a7b8c9d0's upgrade(): each legacy row becomes a
// grant of the user's synthetic role __user_<id>__ in the row's workspace
// ('default' for the tables without one), in the migration's table order;
// resource-level rows other than READ, USE, EDIT and MANAGE are dropped
// (_resource_row), workspace rows are rewritten (_workspace_row: READ →
// USE, EDIT → USE plus EDIT on every type's '*', NO_PERMISSIONS dropped),
// and a scorer's key is <experiment_id>/<quote(name, safe="")>.
func copyLegacyRows(ctx context.Context, d store.Dialect, exec ExecFunc, query QueryFunc) error {
	type grant struct {
		user                 int64
		ws, typ, key, permit string
	}
	valid := map[string]bool{"READ": true, "USE": true, "EDIT": true, "MANAGE": true}
	sources := []struct {
		sql string
		row func(c []any) []grant
	}{
		{"SELECT user_id, workspace, permission FROM workspace_permissions", func(c []any) []grant {
			uid, ws, p := num(c[0]), str(c[1]), str(c[2])
			switch p {
			case "EDIT":
				out := []grant{{uid, ws, "workspace", "*", "USE"}}
				for _, t := range []string{"experiment", "registered_model", "scorer", "gateway_secret", "gateway_endpoint", "gateway_model_definition"} {
					out = append(out, grant{uid, ws, t, "*", "EDIT"})
				}
				return out
			case "READ":
				p = "USE"
			}
			if p != "USE" && p != "MANAGE" {
				return nil
			}
			return []grant{{uid, ws, "workspace", "*", p}}
		}},
		{"SELECT user_id, experiment_id, permission FROM experiment_permissions", func(c []any) []grant {
			return []grant{{num(c[0]), "default", "experiment", str(c[1]), str(c[2])}}
		}},
		{"SELECT user_id, workspace, name, permission FROM registered_model_permissions", func(c []any) []grant {
			return []grant{{num(c[0]), str(c[1]), "registered_model", str(c[2]), str(c[3])}}
		}},
		{"SELECT user_id, experiment_id, scorer_name, permission FROM scorer_permissions", func(c []any) []grant {
			return []grant{{num(c[0]), "default", "scorer", str(c[1]) + "/" + mlflowdb.PyQuote(str(c[2])), str(c[3])}}
		}},
		{"SELECT user_id, secret_id, permission FROM gateway_secret_permissions", func(c []any) []grant {
			return []grant{{num(c[0]), "default", "gateway_secret", str(c[1]), str(c[2])}}
		}},
		{"SELECT user_id, endpoint_id, permission FROM gateway_endpoint_permissions", func(c []any) []grant {
			return []grant{{num(c[0]), "default", "gateway_endpoint", str(c[1]), str(c[2])}}
		}},
		{"SELECT user_id, model_definition_id, permission FROM gateway_model_definition_permissions", func(c []any) []grant {
			return []grant{{num(c[0]), "default", "gateway_model_definition", str(c[1]), str(c[2])}}
		}},
	}
	for i, src := range sources {
		sel, from, _ := strings.Cut(strings.TrimPrefix(src.sql, "SELECT "), " FROM ")
		rows, err := query(ctx, "SELECT "+fmt.Sprintf(jsonRow[d], sel)+" FROM "+from+" ORDER BY id")
		if i == 0 {
			// workspace_permissions has no id column.
			rows, err = query(ctx, "SELECT "+fmt.Sprintf(jsonRow[d], sel)+" FROM "+from)
		}
		if err != nil {
			return err
		}
		for _, r := range rows {
			var cols []any
			if err := json.Unmarshal([]byte(r), &cols); err != nil {
				return err
			}
			for _, g := range src.row(cols) {
				if g.typ != "workspace" && !valid[g.permit] {
					continue // NO_PERMISSIONS, NULL or unknown: dropped
				}
				role := fmt.Sprintf("__user_%d__", g.user)
				for _, s := range []struct {
					sql  string
					args []any
				}{
					{`INSERT INTO roles (name, workspace, description) SELECT CAST($1 AS VARCHAR(255)), CAST($2 AS VARCHAR(63)), NULL
						WHERE NOT EXISTS (SELECT 1 FROM roles WHERE name = $1 AND workspace = $2)`, []any{role, g.ws}},
					{`INSERT INTO user_role_assignments (user_id, role_id) SELECT CAST($1 AS INTEGER), r.id FROM roles r WHERE r.name = $2 AND r.workspace = $3
						AND NOT EXISTS (SELECT 1 FROM user_role_assignments a WHERE a.user_id = $1 AND a.role_id = r.id)`, []any{g.user, role, g.ws}},
					{`INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission)
						SELECT r.id, CAST($3 AS VARCHAR(64)), CAST($4 AS VARCHAR(255)), CAST($5 AS VARCHAR(255)) FROM roles r WHERE r.name = $1 AND r.workspace = $2
						AND NOT EXISTS (SELECT 1 FROM role_permissions p WHERE p.role_id = r.id AND p.resource_type = $3 AND p.resource_pattern = $4)`,
						[]any{role, g.ws, g.typ, g.key, g.permit}},
				} {
					if err := exec(ctx, s.sql, s.args...); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// promotePrompts is f1a2b3c4d5e6's upgrade(): a non-wildcard
// registered_model grant on a model tagged mlflow.prompt.is_prompt =
// 'true' (compared lower-cased) becomes resource_type prompt, when the
// tag table is in the auth database.
func promotePrompts(ctx context.Context, d store.Dialect, exec ExecFunc, query QueryFunc) error {
	q := `SELECT CAST(COUNT(*) AS TEXT) FROM information_schema.tables WHERE table_name = 'registered_model_tags' AND table_schema = current_schema()`
	if d == store.SQLite {
		q = `SELECT CAST(COUNT(*) AS TEXT) FROM sqlite_master WHERE type = 'table' AND name = 'registered_model_tags'`
	}
	n, err := query(ctx, q)
	if err != nil || len(n) == 0 || n[0] == "0" {
		return err
	}
	return exec(ctx, `UPDATE role_permissions SET resource_type = 'prompt'
		WHERE resource_type = 'registered_model' AND resource_pattern <> '*' AND resource_pattern IN
			(SELECT name FROM registered_model_tags WHERE key = 'mlflow.prompt.is_prompt' AND LOWER(value) = 'true')`)
}

func num(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case string:
		var i int64
		_, _ = fmt.Sscan(n, &i)
		return i
	}
	return 0
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
