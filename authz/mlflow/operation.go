package mlflow

import (
	"net/http"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Reasons this package adds. Values never change meaning once released.
const (
	// ReasonDuplicateParameter: a single-valued parameter given twice, or one
	// field in both snake and camel spelling, or a duplicate JSON key.
	ReasonDuplicateParameter authz.Reason = "duplicate_parameter"
	// ReasonMissingParameter: the id MLflow would act on is absent.
	ReasonMissingParameter authz.Reason = "missing_parameter"
	// ReasonInvalidJSON: the body MLflow would parse is not a JSON object.
	ReasonInvalidJSON authz.Reason = "invalid_json"
	// ReasonUnsupportedContentType: a POST to a JSON endpoint that is not JSON.
	ReasonUnsupportedContentType authz.Reason = "unsupported_content_type"
	// ReasonGraphQLDenied: a GraphQL document touches a field we do not allow.
	ReasonGraphQLDenied authz.Reason = "graphql_field_denied"
	// ReasonGraphQLQueryInURL: a /graphql request carries query, variables
	// or operationName in its URL; MLflow reads only the JSON body.
	ReasonGraphQLQueryInURL authz.Reason = "graphql_query_in_url"
)

// Need is one permission an operation requires.
type Need struct {
	// Lookup, when set, resolves Key to the ids that own it (experiments, or a
	// gateway endpoint); each resolved id needs Permission on a resource of
	// Resource.Kind. When empty, Resource is checked as it is.
	Lookup   store.Lookup
	Key      string
	Resource store.Resource
	// Permission is the level required.
	Permission store.Permission
	// Source says where the id was read: query, body, path, header, graphql.
	Source string
	// Param names the parameter, for messages and the explain trace.
	Param string
	// FilterEnforced marks an id whose READ the ext_proc filter enforces
	// itself, as MLflow does after the request: it drops the id from the
	// request when the caller cannot read it (runs/search and GraphQL
	// mlflowSearchRuns experiment ids: filter_experiment_ids), or drops the
	// rows of that experiment from the response (logged-models/search:
	// filter_search_logged_models). With the filter deployed
	// (Config.ExtProcFilter) such a Need is not required here; without it,
	// it is, as every other Need.
	FilterEnforced bool
	// IfExists: Key names something MLflow creates when it is absent and
	// merges into when it exists, so a Key that resolves to nothing needs
	// nothing. It is resolved past the cache: a cached "not found" from
	// before someone created it must not let the merge through.
	IfExists bool
	// MovedTo is the experiment the request re-homes the resource to. An
	// owner other than MovedTo gives the resource up, which needs DELETE
	// there instead of Permission.
	MovedTo string
}

// Operation is what a request asks MLflow to do, and what that needs.
type Operation struct {
	// Route is the matched row (nil when no row matched).
	Route *Route
	// Access is the kind of check; it can be stricter than the route's
	// (an artifact path outside the experiment layout is admin-only).
	Access Access
	// Needs are the permissions required when Access is AccessResource.
	Needs []Need
	// Username is the user an AccessSelf route names.
	Username string
	// ClaimedUsers are the user names the request asks MLflow to record
	// (runs/create user_id, mlflow.user tags), for identity integrity.
	ClaimedUsers []string
	// Note explains an Access made stricter than the route's.
	Note string
	// NeedsFilter is true when the request is safe only behind the ext_proc
	// filter, which removes the rows the caller cannot read: a ListScorers
	// across every experiment. Without the filter it is refused.
	NeedsFilter bool
	// NewName is the name a create or a rename gives its object, read from
	// the body as MLflow reads it; "" when absent or unreadable. It is
	// recorded after an allow, never checked, so it never causes a deny.
	NewName string
	// Workspace is the MLflow workspace the request is decided in (see
	// workspace.go); "" while workspaces are off.
	Workspace string
	// ViewWorkspace is the workspace an AccessWorkspace route reads.
	ViewWorkspace string
}

// deny builds a refusal in the form every reader of this package returns:
// nil means "no objection", so a refusal needs a pointer.
func deny(status int, reason authz.Reason, msg string) *authz.Decision {
	d := authz.Deny(status, reason, msg)
	return &d
}

// badParam refuses a parameter MLflow could not read or that we cannot read
// the way MLflow does.
func badParam(msg string) *authz.Decision {
	return deny(http.StatusBadRequest, authz.ReasonInvalidParameter, msg)
}
