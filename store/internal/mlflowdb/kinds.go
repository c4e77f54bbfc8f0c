package mlflowdb

import (
	"context"
	"fmt"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// kindSpec says where the rows of one resource kind live.
type kindSpec struct {
	kind    store.ResourceKind
	table   string // per-user rows
	idCol   string // resource id column (also in the group table)
	nameCol string // scorer name column, "" for other kinds
	// scope is the column that holds the workspace of the user table's
	// rows (registered models, MLflow 3.10+); insertCol is written on
	// insert with the resource's workspace.
	scope, insertCol string
	// groupTable holds mlflow-oidc-auth's group rows, "" when the kind has
	// none; groupInsertCol and groupInsertVal are written on insert.
	groupTable, groupInsertCol, groupInsertVal string

	// The rest is mlflow-oidc-auth's layout, read (never written) when its
	// tables exist. compatGroupTable holds group rows that only
	// mlflow.compat: oidc-auth applies (its scorer group table).
	compatGroupTable string
	// regexTable and groupRegexTable hold its regex and group-regex rows
	// (regex, priority, permission); regexScope restricts both to the rows
	// its resolver reads for the kind.
	regexTable, groupRegexTable, regexScope string
}

// kinds in ListGrants order (the order of store.ResourceKind's constants).
// The table names of mlflow-oidc-auth's layout are those of its alembic
// migrations (mlflow_oidc_auth/db/migrations/versions, revisions
// 1ddf23934b63, 3c3272527ade and 6a7b8c9def01).
var kinds = []kindSpec{
	{kind: store.Experiment, table: "experiment_permissions", idCol: "experiment_id",
		groupTable: "experiment_group_permissions",
		regexTable: "experiment_regex_permissions", groupRegexTable: "experiment_group_regex_permissions"},
	{kind: store.RegisteredModel, table: "registered_model_permissions", idCol: "name",
		scope: "workspace", insertCol: "workspace",
		// The prompt flag only sorts rows for mlflow-oidc-auth's listings;
		// the grant is by name either way, so a new row says false.
		groupTable: "registered_model_group_permissions", groupInsertCol: "prompt", groupInsertVal: "false",
		// Prompts are registered models. Its request validators resolve
		// every registered-model request, prompts included, with the
		// prompt = false regex rows (utils/permissions.py
		// _build_registered_model_sources); the prompt = true rows serve
		// only its admin UI's listings.
		regexTable: "registered_model_regex_permissions", groupRegexTable: "registered_model_group_regex_permissions",
		regexScope: "prompt = false"},
	{kind: store.Scorer, table: "scorer_permissions", idCol: "experiment_id", nameCol: "scorer_name",
		regexTable: "scorer_regex_permissions", groupRegexTable: "scorer_group_regex_permissions",
		compatGroupTable: "scorer_group_permissions"},
	// Its gateway group rows are never applied: its resolver passes the
	// username where the group name belongs
	// (sqlalchemy_store.get_user_groups_gateway_*_permission), so they are
	// not read here either.
	{kind: store.GatewaySecret, table: "gateway_secret_permissions", idCol: "secret_id",
		regexTable: "gateway_secret_regex_permissions", groupRegexTable: "gateway_secret_group_regex_permissions"},
	{kind: store.GatewayEndpoint, table: "gateway_endpoint_permissions", idCol: "endpoint_id",
		regexTable: "gateway_endpoint_regex_permissions", groupRegexTable: "gateway_endpoint_group_regex_permissions"},
	{kind: store.GatewayModelDefinition, table: "gateway_model_definition_permissions", idCol: "model_definition_id",
		regexTable: "gateway_model_definition_regex_permissions", groupRegexTable: "gateway_model_definition_group_regex_permissions"},
}

// scoped returns spec as the auth database holds its rows: without the
// workspace scope when registered_model_permissions has no workspace column
// (MLflow before 3.10, and mlflow-oidc-auth's layout), where every row is
// in the one default workspace.
func scoped(ctx context.Context, tx Tx, spec kindSpec) (kindSpec, error) {
	if spec.scope == "" {
		return spec, nil
	}
	var exists, ws bool
	if _, err := queryOne(ctx, tx, WorkspaceSQL[tx.Dialect()], []any{spec.table}, &exists, &ws); err != nil {
		return spec, err
	}
	if !ws {
		spec.scope, spec.insertCol = "", ""
	}
	return spec, nil
}

func specOf(k store.ResourceKind) (kindSpec, int, bool) {
	for i, s := range kinds {
		if s.kind == k {
			return s, i, true
		}
	}
	return kindSpec{}, 0, false
}

// userRefTables reference users.id through user_id. MLflow's foreign keys
// have no ON DELETE, so DeleteUser removes these rows first. Only those
// that exist are touched (workspace_permissions and the RBAC and
// mlflow-oidc-auth tables depend on the version and the plugin).
var userRefTables = []string{
	"experiment_permissions", "registered_model_permissions", "scorer_permissions",
	"gateway_secret_permissions", "gateway_endpoint_permissions", "gateway_model_definition_permissions",
	"workspace_permissions", "user_role_assignments", "user_groups",
}

// groupRefTables reference groups.id through group_id.
var groupRefTables = []string{"experiment_group_permissions", "registered_model_group_permissions", "user_groups"}

func checkResource(r store.Resource) (kindSpec, error) {
	spec, _, ok := specOf(r.Kind)
	if !ok {
		return spec, invalid("unknown resource kind %q", r.Kind)
	}
	if r.ID == "" {
		return spec, invalid("empty %s id", r.Kind)
	}
	if (spec.nameCol != "") != (r.Name != "") {
		return spec, invalid("a %s resource needs a name exactly when it is a scorer", r.Kind)
	}
	return spec, nil
}

// target is where g's rows on r live: table, row condition and its args
// (id, name, workspace as resourceCond binds them, then the subject).
// insertCol is written on insert: with insertVal, a constant; without, the
// workspace argument.
type target struct {
	table, subjCol, cond string
	args                 []any
	insertCol, insertVal string
}

// targetOf returns the rows of r for subject id subj (a users.id or a
// groups.id, bound as the last argument).
func targetOf(spec kindSpec, group bool, r store.Resource, subj int64) target {
	t := target{table: spec.table, subjCol: "user_id", insertCol: spec.insertCol}
	if group {
		t = target{table: spec.groupTable, subjCol: "group_id", insertCol: spec.groupInsertCol, insertVal: spec.groupInsertVal}
	}
	t.cond, t.args = resourceCond(spec, group, r)
	t.args = append(t.args, subj)
	t.cond += fmt.Sprintf(" AND %s = $%d", t.subjCol, len(t.args))
	return t
}

// resourceCond matches every row on r in the user (or group) table: id,
// then the scorer's name, then r's workspace where the table keeps one.
func resourceCond(spec kindSpec, group bool, r store.Resource) (string, []any) {
	cond, args := spec.idCol+" = $1", []any{r.ID}
	if spec.nameCol != "" {
		cond += " AND " + spec.nameCol + " = $2"
		args = append(args, r.Name)
	}
	if spec.scope != "" && !group {
		args = append(args, r.WorkspaceOf())
		cond += fmt.Sprintf(" AND %s = $%d", spec.scope, len(args))
	}
	return cond, args
}
