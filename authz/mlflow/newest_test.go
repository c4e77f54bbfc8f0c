package mlflow

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The routes of MLflow after 3.11 that no committed extraction covers. No
// whole source tree of a later release is at hand (tools/mlflow-routes
// README): the newest mlflow/server/auth/__init__.py stored is
// 000d336a1aa8c48094d37b6e6a6a7f9447b8538d (3.16.1 or later, read in full),
// but no handlers.py, routes.py or .proto file of that commit is, so the
// extractor cannot run on it. Its rules are transcribed here instead, one
// entry per row and method, each naming the upstream function, table or PR
// it is read from, and the test holds the table to them. The README's
// second table is rendered from this list.

// newestSource is the commit the entries are read at.
const newestSource = "000d336a1aa8c48094d37b6e6a6a7f9447b8538d"

// newerRoute is MLflow's rule for one row and method of the table in the
// newest MLflow read, in the drift test's notation (rule.String()).
type newerRoute struct {
	row, method string
	// mlflow is MLflow's rule. Where the drift notation cannot say it (a
	// workspace admin, a queue's members), it is prose.
	mlflow string
	// source names where mlflow is read: a function or table of
	// mlflow/server/auth/__init__.py at newestSource unless it says
	// otherwise, and the PR where known.
	source string
	// ours is the row's rule where it differs from MLflow's, and why says
	// why; both empty when the row follows MLflow.
	ours, why string
}

// Shared reasons.
const (
	whyAuthApp = "MLflow runs without its auth app behind mlflow-authz, so this route answers only where an operator keeps the app; " +
		"grants and roles are managed through mlflow-authz's admin API and CLI, and the route is for admins (and the user themself where MLflow lets them read their own)."
	whyQueueState = "MLflow's rule mixes the queue's experiment with its assigned users and owner, resource state no grant expresses, " +
		"and a request by queue_id or schema_id needs a tracking table of MLflow after 3.11 that mlflow-authz does not read yet: admins only."
	whyMCP = "MCP server grants are a resource type of MLflow's role tables alone (mcp_server), which mlflow-authz does not resolve, " +
		"and MLflow filters the search responses row by row: admins only."
	whyTraces = "The job reads, and may annotate, every trace it is given whatever its experiment: EDIT on each trace's experiment too, as for scorer invoke."
)

var newerRoutes = []newerRoute{
	// Artifacts.
	{row: "CreatePresignedDownloadUrl", method: "POST", mlflow: "resource READ body:run_id",
		source: "BEFORE_REQUEST_HANDLERS: CreatePresignedDownloadUrl → validate_can_read_run"},
	{row: "CreatePresignedUploadUrl", method: "POST", mlflow: "resource EDIT body:model_id,body:run_id",
		source: "validate_can_update_run_or_logged_model (exactly one of run_id and model_id)"},

	// GenAI jobs.
	{row: "InvokeGenAIEvaluate", method: "POST", mlflow: "resource EDIT body:experiment_id",
		source: "(INVOKE_GENAI_EVALUATE, POST) → validate_can_update_experiment",
		ours:   "resource EDIT body:experiment_id,body:trace_ids", why: whyTraces},
	{row: "InvokeScorer", method: "POST", mlflow: "resource EDIT body:experiment_id",
		source: "validate_can_invoke_scorer (plus DENY vetoes on traces, assessments and the scorer)",
		ours:   "resource EDIT body:experiment_id,body:trace_ids", why: whyTraces},
	{row: "InvokeIssueDetection", method: "POST", mlflow: "resource EDIT+USE body:experiment_id,body:secret_id",
		source: "validate_can_invoke_issue_detection",
		ours:   "resource EDIT+USE body:endpoint_name,body:experiment_id,body:secret_id,body:trace_ids",
		why:    whyTraces + " Also USE on the gateway endpoint it calls, unchecked behind the sidecar."},

	// Online scoring, guardrails, budgets.
	{row: "GetOnlineScoringConfigs", method: "GET", mlflow: "resource READ args_or_json:scorer_ids",
		source: "validate_can_read_online_scoring_configs (READ on each configuration's experiment)"},
	{row: "SetOnlineScoringConfig", method: "PUT", mlflow: "resource EDIT body:experiment_id",
		source: "validate_can_update_online_scoring_config"},
	{row: "AddGuardrailToEndpoint", method: "POST", mlflow: "resource EDIT body:endpoint_id",
		source: "validate_can_add_guardrail_to_gateway_endpoint (plus a DENY veto on the guardrail's scorer)"},
	{row: "RemoveGuardrailFromEndpoint", method: "DELETE", mlflow: "resource EDIT param:endpoint_id",
		source: "validate_can_remove_guardrail_from_gateway_endpoint"},
	{row: "UpdateEndpointGuardrailConfig", method: "PATCH", mlflow: "resource EDIT body:endpoint_id",
		source: "validate_can_update_gateway_endpoint_guardrail_config"},
	{row: "ListEndpointGuardrailConfigs", method: "GET", mlflow: "resource READ query:endpoint_id",
		source: "validate_can_read_gateway_endpoint_guardrail_configs"},
	{row: "CreateGatewayGuardrail", method: "POST", mlflow: "admin", source: "BEFORE_REQUEST_HANDLERS: sender_is_admin"},
	{row: "GetGatewayGuardrail", method: "GET", mlflow: "admin", source: "BEFORE_REQUEST_HANDLERS: sender_is_admin"},
	{row: "ListGatewayGuardrails", method: "GET", mlflow: "admin", source: "BEFORE_REQUEST_HANDLERS: sender_is_admin"},
	{row: "DeleteGatewayGuardrail", method: "DELETE", mlflow: "admin", source: "BEFORE_REQUEST_HANDLERS: sender_is_admin"},
	{row: "CreateGatewayBudgetPolicy", method: "POST", mlflow: "admin", source: "sender_is_admin (mlflow#21120)"},
	{row: "UpdateGatewayBudgetPolicy", method: "POST", mlflow: "admin", source: "sender_is_admin (mlflow#21120)"},
	{row: "DeleteGatewayBudgetPolicy", method: "DELETE", mlflow: "admin", source: "sender_is_admin (mlflow#21120)"},
	{row: "GetGatewayBudgetPolicy", method: "GET", mlflow: "authenticated", source: "_allow_authenticated"},
	{row: "ListGatewayBudgetPolicies", method: "GET", mlflow: "authenticated", source: "_allow_authenticated"},
	{row: "ListGatewayBudgetWindows", method: "GET", mlflow: "authenticated", source: "_allow_authenticated"},

	// Gateway (FastAPI).
	{row: "GatewayRawProxy", method: "GET,POST,PUT,PATCH,DELETE", mlflow: "resource USE path:endpoint_name",
		source: "_get_gateway_validator, _extract_gateway_endpoint_name (/gateway/proxy/<name>/)"},
	{row: "GatewayListModels", method: "GET", mlflow: "authenticated",
		source: "_get_gateway_validator (/gateway/mlflow/v1/models); the response is filtered by _filter_list_gateway_models",
		why:    "A check cannot filter a response: every endpoint name is listed, as by the gateway list RPCs."},

	// Review queues and label schemas.
	{row: "CreateReviewQueue", method: "POST", mlflow: "resource EDIT body:experiment_id", source: "validate_can_create_review_queue"},
	{row: "GetOrCreateUserQueue", method: "POST", mlflow: "resource EDIT body:experiment_id", source: "validate_can_get_or_create_user_queue"},
	{row: "ListReviewQueues", method: "GET", mlflow: "resource READ query:experiment_id",
		source: "ListReviewQueues → validate_can_read_experiment; filter_list_review_queues narrows a READ-only caller's list",
		ours:   "resource EDIT query:experiment_id",
		why:    "A check cannot narrow the list: only callers who see every queue in MLflow (EDIT) may list."},
	{row: "GetReviewQueueByName", method: "GET",
		mlflow: "READ on the experiment and MANAGE, membership of the queue, or EDIT and ownership",
		source: "validate_can_view_review_queue_by_name",
		ours:   "resource MANAGE query:experiment_id", why: whyQueueState},
	{row: "ReviewQueue", method: "GET,POST,PATCH,DELETE",
		mlflow: "through the queue's experiment, with its members and owner",
		source: "validate_can_view_review_queue, _update_, _delete_, _add_items_to_, _remove_items_from_review_queue, validate_can_review_queue_item",
		ours:   "admin", why: whyQueueState},
	{row: "CreateLabelSchema", method: "POST", mlflow: "resource MANAGE body:experiment_id", source: "validate_can_create_label_schema"},
	{row: "ListLabelSchemas", method: "GET", mlflow: "resource READ query:experiment_id", source: "ListLabelSchemas → validate_can_read_experiment"},
	{row: "GetLabelSchemaByName", method: "GET", mlflow: "resource READ query:experiment_id", source: "GetLabelSchemaByName → validate_can_read_experiment"},
	{row: "LabelSchema", method: "GET,POST,PATCH,DELETE",
		mlflow: "READ (get) or MANAGE (update, delete) on the schema's experiment; upsert has no validator",
		source: "validate_can_read_label_schema, validate_can_manage_label_schema; UpsertLabelSchema is not in BEFORE_REQUEST_HANDLERS",
		ours:   "admin", why: whyQueueState},

	// MCP servers (FastAPI, mlflow/server/mcp_server_api.py).
	{row: "MCPServers", method: "GET,POST",
		mlflow: "any signed-in user, the search filtered per server; a create in the workspace",
		source: "_get_mcp_server_validator, _filter_search_mcp_servers, validate_can_create_mcp_server",
		ours:   "admin", why: whyMCP},
	{row: "MCPServer", method: "GET,POST,PUT,PATCH,DELETE",
		mlflow: "READ, UPDATE or DELETE on the mcp_server grant by method",
		source: "_get_mcp_server_validator",
		ours:   "admin", why: whyMCP},

	// Users and roles (MLflow's auth app).
	{row: "GetCurrentUser", method: "GET", mlflow: "authenticated", source: "(GET_CURRENT_USER, GET): lambda: True"},
	{row: "CreateUser", method: "POST", mlflow: "an admin of any workspace", source: "validate_can_create_user",
		ours: "admin", why: whyAuthApp},
	{row: "GetUser", method: "GET", mlflow: "self query:username", source: "validate_can_read_user"},
	{row: "UpdateUserPassword", method: "PATCH", mlflow: "self body:username", source: "validate_can_update_user_password"},
	{row: "UpdateUserAdmin", method: "PATCH", mlflow: "admin", source: "validate_can_update_user_admin"},
	{row: "DeleteUser", method: "DELETE", mlflow: "admin", source: "validate_can_delete_user"},
	{row: "ListUsers", method: "GET", mlflow: "a create right in the workspace (any signed-in user with workspaces off)",
		source: "validate_can_list_users", ours: "admin", why: whyAuthApp},
	{row: "ListUserRoles", method: "GET", mlflow: "self, or an admin of a workspace the user has a role in",
		source: "validate_can_view_user_roles", ours: "self query:username", why: whyAuthApp},
	{row: "GetUserPermission", method: "GET", mlflow: "self, or an admin of the resource's workspace",
		source: "validate_can_get_user_permission (mlflow#23247)", ours: "self query:username", why: whyAuthApp},
	{row: "GrantUserPermission", method: "POST", mlflow: "MANAGE on the resource named by resource_type and resource_id",
		source: "validate_can_manage_resource (mlflow#23247)", ours: "admin", why: whyAuthApp},
	{row: "RevokeUserPermission", method: "POST", mlflow: "MANAGE on the resource named by resource_type and resource_id",
		source: "validate_can_manage_resource (mlflow#23247)", ours: "admin", why: whyAuthApp},
	{row: "CreateRole", method: "POST", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "GetRole", method: "GET", mlflow: "a role in the role's workspace", source: "validate_can_view_roles", ours: "admin", why: whyAuthApp},
	{row: "ListRoles", method: "GET", mlflow: "a role in every workspace named", source: "validate_can_list_roles", ours: "admin", why: whyAuthApp},
	{row: "UpdateRole", method: "PATCH", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "DeleteRole", method: "DELETE", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "AddRolePermission", method: "POST", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "RemoveRolePermission", method: "DELETE", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "ListRolePermissions", method: "GET", mlflow: "a role in the role's workspace", source: "validate_can_view_roles", ours: "admin", why: whyAuthApp},
	{row: "UpdateRolePermission", method: "PATCH", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "AssignRole", method: "POST", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "UnassignRole", method: "DELETE", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
	{row: "ListRoleUsers", method: "GET", mlflow: "an admin of the role's workspace", source: "validate_can_manage_roles", ours: "admin", why: whyAuthApp},
}

// newerRows names the rows and methods newerRoutes covers, for the drift
// test: an extraction older than a row may lack its route.
func newerRows() map[string]bool {
	m := map[string]bool{}
	for _, n := range newerRoutes {
		for _, method := range strings.Split(n.method, ",") {
			m[n.row+" "+method] = true
		}
	}
	return m
}

// TestRouteTableAgainstNewestMLflow holds every row the list names to
// MLflow's newest rule, or to the listed difference with its reason.
func TestRouteTableAgainstNewestMLflow(t *testing.T) {
	byName := map[string]*Route{}
	for _, r := range NewClassifier("", StaticPrefixAPI).Routes() {
		byName[r.Name] = r
	}
	seen := map[string]bool{}
	for _, n := range newerRoutes {
		r := byName[n.row]
		require.NotNil(t, r, "newerRoutes names %s, which is no row of the table", n.row)
		assert.Equal(t, strings.Split(n.method, ","), r.Methods, "row %s: methods", n.row)
		assert.NotEmpty(t, n.source, "row %s: no upstream source", n.row)
		assert.True(t, n.ours == "" || n.why != "", "row %s: a difference needs its reason", n.row)
		for _, method := range r.Methods {
			key := n.row + " " + method
			assert.False(t, seen[key], "%s listed twice", key)
			seen[key] = true
			want := n.mlflow
			if n.ours != "" {
				want = n.ours
			}
			assert.Equal(t, want, ourRule(r, method).String(), "row %s %s (MLflow: %s, %s)", n.row, method, n.mlflow, n.source)
		}
	}
}

// renderNewer writes the README's table of the newest rules.
func renderNewer() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Read from `mlflow/server/auth/__init__.py` at `%s` (no extraction; see `authz/mlflow/newest_test.go`).\n\n", newestSource[:8])
	b.WriteString("| routes | MLflow (newest read) | here | why |\n|---|---|---|---|\n")
	rows := append([]newerRoute(nil), newerRoutes...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].why != "" && rows[j].why == "" })
	for _, n := range rows {
		var mounts []string
		for _, r := range NewClassifier("", StaticPrefixAPI).Routes() {
			if r.Name == n.row {
				for _, m := range ourMounts(r) {
					mounts = append(mounts, "`"+strings.ReplaceAll(n.method, ",", "|")+" "+m+"`")
				}
			}
		}
		here := "same"
		if n.ours != "" {
			here = "`" + n.ours + "`"
		}
		fmt.Fprintf(&b, "| %s | `%s` (%s) | %s | %s |\n", strings.Join(mounts, ", "), n.mlflow, n.source, here, n.why)
	}
	return b.String()
}
