// Package store defines how mlflow-authz reads MLflow's tables: the grants in
// MLflow's auth tables and the ownership of runs, traces and models in its
// tracking tables. It holds interfaces and errors only; store/postgres and
// store/sqlite implement them, and store/storetest is the conformance suite
// every backend passes.
package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrNotFound is returned when a looked-up resource does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrUnavailable wraps failures to reach the database. Callers deny with 503.
var ErrUnavailable = errors.New("store: unavailable")

// ErrInvalid is returned by Admin methods for arguments that cannot be
// written: an unknown resource kind or permission, an empty name, a grantee
// that is neither (or both) a user and a group. Callers answer 400.
var ErrInvalid = errors.New("store: invalid argument")

// ErrGroupKind is returned for a group grant on a kind other than
// experiments and registered models: mlflow-oidc-auth's layout, which
// mlflow-authz reads, has group tables for those two only. It matches
// ErrInvalid with errors.Is too.
var ErrGroupKind error = invalidError("store: group grants exist only for experiments and registered models")

// ErrNoGroupTables is returned by group writes when the auth database has
// no group tables (plain MLflow).
var ErrNoGroupTables = errors.New("store: the auth database has no group tables; run mlflow-authz migrate")

// ErrNoRoleTables is returned by role writes when the auth database has no
// role tables (MLflow before 3.12, mlflow-oidc-auth).
var ErrNoRoleTables = errors.New("store: the auth database has no role tables")

type invalidError string

func (e invalidError) Error() string        { return string(e) }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// Dialect names the SQL engine that holds MLflow's tables. Its values are
// the configuration's store.driver and the names of the backend packages.
type Dialect string

// Dialects of the backends.
const (
	PostgreSQL Dialect = "postgres"
	SQLite     Dialect = "sqlite"
)

// Permission is one of MLflow's permission levels, ordered so that a higher
// value grants everything a lower one does.
type Permission int8

// Permission levels (mlflow/server/auth/permissions.py).
const (
	NoPermissions Permission = iota
	Read
	Use
	Edit
	Manage
)

var permissionNames = [...]string{"NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE"}

// String returns MLflow's name for p, as stored in the permission column.
func (p Permission) String() string {
	if p < 0 || int(p) >= len(permissionNames) {
		return "INVALID"
	}
	return permissionNames[p]
}

// ParsePermission parses MLflow's permission string. Unknown strings are not
// guessed at: ok is false, and callers treat the row as an explicit deny.
func ParsePermission(s string) (p Permission, ok bool) {
	for i, n := range permissionNames {
		if n == s {
			return Permission(i), true
		}
	}
	return NoPermissions, false
}

// CanRead and friends follow MLflow's permission table: USE may use gateway
// resources, EDIT may update, only MANAGE may delete and manage.
func (p Permission) CanRead() bool { return p >= Read }

// CanUse reports whether p allows using a gateway resource.
func (p Permission) CanUse() bool { return p >= Use }

// CanUpdate reports whether p allows updates.
func (p Permission) CanUpdate() bool { return p >= Edit }

// CanDelete reports whether p allows deletes (only MANAGE does).
func (p Permission) CanDelete() bool { return p >= Manage }

// CanManage reports whether p allows managing permissions.
func (p Permission) CanManage() bool { return p >= Manage }

// ResourceKind names a kind of resource that MLflow grants permissions on.
type ResourceKind string

// Resource kinds with their own permission tables.
const (
	Experiment             ResourceKind = "experiment"
	RegisteredModel        ResourceKind = "registered_model"
	Scorer                 ResourceKind = "scorer"
	GatewaySecret          ResourceKind = "gateway_secret"
	GatewayEndpoint        ResourceKind = "gateway_endpoint"
	GatewayModelDefinition ResourceKind = "gateway_model_definition"
)

// WholeWorkspace is the kind of a workspace-wide grant, which only the
// admin writes take (Admin.SetGrant, Admin.DeleteGrant): Resource.ID "*"
// in Resource.Workspace. The legacy layout keeps it in MLflow 3.10's
// workspace_permissions (users only), the roles layout as a (workspace, *)
// grant of the grantee's role (USE, a member, or MANAGE, its admin).
const WholeWorkspace ResourceKind = "workspace"

// Resource identifies one permission-bearing object.
type Resource struct {
	Kind ResourceKind
	// ID is the experiment id, registered-model name or gateway object id.
	ID string
	// Name is the scorer name (scorer grants are keyed by experiment id and name).
	Name string
	// Workspace is the MLflow workspace (3.10+) whose grants decide: the
	// workspace of registered_model_permissions rows, of the roles whose
	// grants count, and of the workspace_permissions row. "" is
	// DefaultWorkspace, the only one while workspaces are off.
	Workspace string
}

// DefaultWorkspace is the workspace every resource is in while MLflow's
// workspaces are off (mlflow/utils/workspace_utils.py DEFAULT_WORKSPACE_NAME).
const DefaultWorkspace = "default"

// WorkspaceOf returns r's workspace, DefaultWorkspace when unset.
func (r Resource) WorkspaceOf() string {
	if r.Workspace == "" {
		return DefaultWorkspace
	}
	return r.Workspace
}

// Grant is one permission row. Valid is false when the stored permission
// string is NULL or unknown; such a row is an explicit deny, never an error.
type Grant struct {
	Permission Permission
	Valid      bool
}

// Grants is everything the store knows that bears on one user's permission
// on one resource, read in a single round trip.
type Grants struct {
	// UserExists is true when users has a row for the username.
	UserExists bool
	// UserAdmin is users.is_admin.
	UserAdmin bool
	// User is the user's own row on the resource, if any.
	User *Grant
	// Groups maps group name to its row on the resource, for every group
	// with a row (callers pick the groups the identity belongs to). For a
	// scorer these are mlflow-oidc-auth's scorer group rows, which only
	// its resolution (mlflow.compat: oidc-auth) applies.
	Groups map[string]Grant
	// Name is an experiment's name, which mlflow-oidc-auth's regex rows
	// match, when the store read it in the same round trip (HasName; the
	// tracking tables live in the auth database). Otherwise callers that
	// need it resolve NameOfExperiment.
	Name    string
	HasName bool

	// Layout is LayoutRoles when the auth database has the roles layout:
	// the grants are then in Roles, and User and Groups are nil. Empty
	// means the legacy layout.
	Layout Layout
	// Workspace is the user's workspace_permissions row in the resource's
	// workspace (MLflow 3.10's workspace-wide grant, legacy layout), nil
	// when there is none or the table does not exist. Only a policy with
	// workspaces on applies it, as MLflow does.
	Workspace *Grant

	// Roles are the role_permissions rows that may bear on the resource,
	// in the resource's workspace: of the roles assigned to the user, and of
	// every named role (one a token group may map to; never a synthetic
	// __user_<id>__ role of someone else). Callers pick the roles that
	// apply.
	Roles []RoleGrant
	// Prompt says the registered model is a prompt (its
	// mlflow.prompt.is_prompt tag), which MLflow grants as resource type
	// prompt; PromptKnown is false when the store could not read the tag
	// in the same round trip (the tracking tables live elsewhere).
	Prompt, PromptKnown bool
}

// Layout names how an auth database keeps its grants.
type Layout string

// Layouts of MLflow's auth database.
const (
	// LayoutLegacy is the per-user tables (experiment_permissions, …) of
	// MLflow up to 3.11, with mlflow-oidc-auth's group tables.
	LayoutLegacy Layout = "legacy"
	// LayoutRoles is roles, role_permissions and user_role_assignments:
	// MLflow from its migration e5f6a7b8c9d0 on (3.12+), which leaves the
	// legacy tables behind as a snapshot it no longer reads.
	LayoutRoles Layout = "roles"
)

// LayoutInfo is the layout a backend decided on when it opened, and why.
type LayoutInfo struct {
	Layout Layout
	// Revision is alembic_version_auth's version_num ("" when the table is
	// missing or empty).
	Revision string
	// Forced says the configuration named the layout (mlflow.layout).
	Forced bool
	// Unknown says the revision is none this build knows: a newer MLflow.
	// The layout then follows the tables that exist.
	Unknown bool
}

// Warning returns what an operator should be told about l, or "".
func (l LayoutInfo) Warning() string {
	if l.Unknown {
		return "the auth database is at alembic revision " + l.Revision +
			", which this build does not know (a newer MLflow?); reading it as the " + string(l.Layout) +
			" layout: check the release notes for a newer mlflow-authz"
	}
	return ""
}

// LayoutReporter is a Reader that says which layout it reads.
type LayoutReporter interface {
	Layout() LayoutInfo
}

// RoleGrant is one role_permissions row (or, with Condition, one
// mutation_conditions row) of a role in the resource's workspace.
type RoleGrant struct {
	// Role is roles.name.
	Role string
	// Assigned says user_role_assignments assigns the role to the user.
	Assigned bool
	// Type and Pattern are resource_type and resource_pattern ("*" or an id).
	Type, Pattern string
	// Grant is the permission; Deny marks MLflow's DENY, an explicit veto
	// (Grant is then NO_PERMISSIONS and valid).
	Grant Grant
	Deny  bool
	// Condition marks a mutation_conditions row on Type: a restriction on
	// creates and mutations, which this build does not evaluate.
	Condition bool
}

// Source names where a permission row comes from, with the names of
// mlflow-oidc-auth's PERMISSION_SOURCE_ORDER.
type Source string

// Permission sources.
const (
	SourceUser       Source = "user"        // the user's own row on the resource
	SourceGroup      Source = "group"       // a row of one of the user's groups on the resource
	SourceRegex      Source = "regex"       // a regex row of the user that matches the resource's name
	SourceGroupRegex Source = "group-regex" // a regex row of one of the user's groups
)

// PatternGrant is one row of mlflow-oidc-auth's regex or group-regex
// tables: a permission on every resource of a kind whose name the regex
// matches (Python's re.match).
type PatternGrant struct {
	// ID is the row's id (the tables' primary key).
	ID int64
	// Group is the group's name as stored, "" for a user's own row.
	Group    string
	Regex    string
	Priority int64
	Grant    Grant
}

// Patterns is every regex row bearing on one user's permission on one
// kind of resource, read in a single round trip. Each list is in
// mlflow-oidc-auth's order: priority ascending (a lower number is
// consulted first), then id.
type Patterns struct {
	// User holds the user's own regex rows (Source regex).
	User []PatternGrant
	// Groups holds the group-regex rows of the groups asked for.
	Groups []PatternGrant
}

// Lookup names a way to resolve an id to the experiments that own it.
type Lookup string

// Lookups through MLflow's tracking tables.
const (
	RunExperiment         Lookup = "run"             // runs.run_uuid → experiment_id
	TraceExperiment       Lookup = "trace"           // trace_info.request_id → experiment_id
	LoggedModelExperiment Lookup = "logged_model"    // logged_models.model_id → experiment_id
	ExperimentByName      Lookup = "experiment_name" // experiments.name → experiment_id
	ExperimentByID        Lookup = "experiment"      // experiments.experiment_id exists
	JobExperiment         Lookup = "job"             // jobs.params ->> experiment_id
	IssueExperiment       Lookup = "issue"           // issues.issue_id → experiment_id
	DatasetExperiments    Lookup = "dataset"         // dataset → linked experiment ids (zero or more)
	GatewayEndpointByName Lookup = "gateway_endpoint_name"
	// AssessmentExperiment: assessments.assessment_id → the experiment of
	// the trace that holds it.
	AssessmentExperiment Lookup = "assessment"
	// OnlineScoringExperiments: a scorer id → the experiments of its online
	// scoring configurations (zero or more).
	OnlineScoringExperiments Lookup = "online_scoring_config"

	// By name within one workspace (MLflow 3.10+ keeps names unique per
	// workspace): the key is WorkspaceKey(workspace, name).
	ExperimentByNameIn      Lookup = "experiment_name_in"
	GatewayEndpointByNameIn Lookup = "gateway_endpoint_name_in"

	// The workspace a resource lives in (the workspace column of MLflow
	// 3.10's tracking tables; DefaultWorkspace where the column is
	// missing): one answer, or ErrNotFound when the id names nothing.
	WorkspaceOfExperiment             Lookup = "workspace_of_experiment"
	WorkspaceOfGatewaySecret          Lookup = "workspace_of_gateway_secret"
	WorkspaceOfGatewayEndpoint        Lookup = "workspace_of_gateway_endpoint"
	WorkspaceOfGatewayModelDefinition Lookup = "workspace_of_gateway_model_definition"

	// The workspaces a user may see, read in the auth database as MLflow's
	// list_accessible_workspace_names reads them: in the legacy layout the
	// workspaces of the user's workspace_permissions rows that allow READ,
	// in the roles layout the workspaces of its role assignments. The key
	// is the username; zero or more answers, never ErrNotFound.
	VisibleWorkspaces Lookup = "visible_workspaces"
	// WorkspacesOfRole are the workspaces holding a role of the key's name
	// (roles layout; none in the legacy one): a token group that names a
	// role makes its workspaces visible as an assignment would.
	WorkspacesOfRole Lookup = "workspaces_of_role"

	// Names, which mlflow-oidc-auth's regex rows match and its gateway
	// rows are keyed by. A rename changes them, so unlike ownership they
	// are cached no longer than grants (see Renamable).
	NameOfExperiment             Lookup = "name_of_experiment"               // experiments.experiment_id → name
	NameOfGatewaySecret          Lookup = "name_of_gateway_secret"           // secrets.secret_id → secret_name
	NameOfGatewayEndpoint        Lookup = "name_of_gateway_endpoint"         // endpoints.endpoint_id → name
	NameOfGatewayModelDefinition Lookup = "name_of_gateway_model_definition" // model_definitions.model_definition_id → name
)

// Renamable reports whether l's answer can change for the same key: a
// name, unlike the experiment that owns a run, can be renamed, and an
// operator can move a resource to another workspace (MLflow's
// mlflow/store/db/workspace_move.py), and the workspaces a user sees
// follow its grants, so none of them is cached longer than grants.
func (l Lookup) Renamable() bool {
	switch l {
	case NameOfExperiment, NameOfGatewaySecret, NameOfGatewayEndpoint, NameOfGatewayModelDefinition,
		WorkspaceOfExperiment, WorkspaceOfGatewaySecret, WorkspaceOfGatewayEndpoint, WorkspaceOfGatewayModelDefinition,
		VisibleWorkspaces, WorkspacesOfRole:
		return true
	}
	return false
}

// WorkspaceKey is the key of a lookup by name within a workspace
// (ExperimentByNameIn, GatewayEndpointByNameIn). A workspace name never
// holds "/", so the first one separates the two.
func WorkspaceKey(workspace, name string) string { return workspace + "/" + name }

// SplitWorkspaceKey undoes WorkspaceKey; ok is false for a key without a
// workspace.
func SplitWorkspaceKey(key string) (workspace, name string, ok bool) {
	i := strings.IndexByte(key, '/')
	if i <= 0 {
		return "", "", false
	}
	return key[:i], key[i+1:], true
}

// Reader is what the decision pipeline needs from a backend.
type Reader interface {
	// Grants returns the grants bearing on username's permission on res.
	Grants(ctx context.Context, username string, res Resource) (Grants, error)
	// User returns whether username has a users row and whether it is an admin.
	User(ctx context.Context, username string) (exists, admin bool, err error)
	// Resolve maps key through l to the ids that own it (experiment ids, or
	// the gateway endpoint id), or to its name. ErrNotFound when key does
	// not exist.
	Resolve(ctx context.Context, l Lookup, key string) ([]string, error)
	// Patterns returns mlflow-oidc-auth's regex rows of username and its
	// group-regex rows of groups (names as the identity carries them) for
	// kind. Without its regex tables both lists are empty.
	Patterns(ctx context.Context, username string, groups []string, kind ResourceKind) (Patterns, error)
}

// GrantsKey names one Grants read: a user and a resource.
type GrantsKey struct {
	Username string
	Resource Resource
}

// BatchReader is a Reader that reads the grants of many keys in one round
// trip. The cache re-reads entries in the background through it, so that
// keeping a thousand hot entries fresh costs the database a few round
// trips a second instead of a thousand.
type BatchReader interface {
	Reader
	// GrantsBatch returns, for each key, what Grants would return for it;
	// an error is the whole batch's.
	GrantsBatch(ctx context.Context, keys []GrantsKey) ([]Grants, error)
}

// Credentials reads what Basic authentication checks: MLflow's own
// password hashes. It is separate from Reader because only the Basic
// authenticator needs it, and a hash is never part of a decision on its own.
type Credentials interface {
	// Password returns the stored password of username. ErrNotFound when
	// there is no such user or its hash is NULL or empty (a user created
	// without a password cannot sign in with one).
	Password(ctx context.Context, username string) (Password, error)
}

// Password is a user's stored password.
type Password struct {
	// Hash is users.password_hash verbatim: a werkzeug hash such as
	// "scrypt:32768:8:1$salt$hex".
	Hash string
	// Expires is users.password_expiration, the column mlflow-oidc-auth
	// adds for its access tokens (stored in that column's place); zero when
	// the column is missing or NULL. A value that cannot be read is the
	// Unix epoch, long past, so the password is refused.
	Expires time.Time
}

// Expired reports whether p may no longer be used at now.
func (p Password) Expired(now time.Time) bool {
	return !p.Expires.IsZero() && !now.Before(p.Expires)
}

// FreshResolver is a Reader whose Resolve may answer from a cache and that
// can also read past it. Ownership is cached because it almost never
// changes; a check that must see it as it is now (a trace id that MLflow
// merges into, and may move, if it exists) asks for a fresh answer, which
// also replaces what the cache held.
type FreshResolver interface {
	ResolveFresh(ctx context.Context, l Lookup, key string) ([]string, error)
}

// TrackedName names an object of MLflow's tracking tables the way a create
// request does, before MLflow has given it an id: by its name, and a scorer
// also by the experiment it belongs to.
type TrackedName struct {
	Kind ResourceKind
	// Experiment is the scorer's experiment id ("" for other kinds).
	Experiment string
	// Name is the experiment, registered model, scorer or gateway object
	// name (secrets.secret_name for a gateway secret).
	Name string
	// Workspace is the workspace the request acted in ("" is
	// DefaultWorkspace): names are unique per workspace, and the grant
	// lands there.
	Workspace string
}

// Resource is what grants on the tracked object are keyed by, given the id
// MLflow gave it (o.ID).
func (n TrackedName) Resource(o TrackedObject) Resource {
	if n.Kind == Scorer {
		return Resource{Kind: Scorer, ID: o.ID, Name: n.Name, Workspace: n.Workspace}
	}
	return Resource{Kind: n.Kind, ID: o.ID, Workspace: n.Workspace}
}

// TrackedObject is the row of MLflow's tracking tables for an experiment, a
// registered model, a scorer or a gateway object: the proof that MLflow
// carried out a create, rename or delete that mlflow-authz allowed.
type TrackedObject struct {
	// ID is what grants are keyed by: the experiment id (a scorer's too),
	// the registered model's name, or the gateway object's id.
	ID string
	// Created is creation_time (milliseconds since the epoch, MLflow's
	// server clock): a scorer's first version's, a gateway object's
	// created_at. HasCreated is false when the column is NULL: such a row
	// proves nothing about when it was made, so it never earns a grant.
	Created    time.Time
	HasCreated bool
	// Updated is last_update_time (experiments) or last_updated_time
	// (registered models); MLflow stamps it on a rename.
	Updated    time.Time
	HasUpdated bool
}

// Grantee is who a grant row is for: a user or a group (exactly one).
type Grantee struct {
	User  string
	Group string
}

// GrantRow is one permission row, as listed by Admin.ListGrants.
type GrantRow struct {
	Grantee  Grantee
	Resource Resource
	// Permission is the stored string, verbatim (it may be invalid or empty
	// for NULL; such a row denies).
	Permission string
}

// GrantFilter narrows ListGrants; empty fields match everything, but
// Workspace: "" lists the rows of DefaultWorkspace (where a table keeps
// rows per workspace).
type GrantFilter struct {
	Kind      ResourceKind
	ID        string
	User      string
	Group     string
	Workspace string
}

// PatternRow is one of mlflow-oidc-auth's regex or group-regex rows, as
// listed by Admin.ListPatterns.
type PatternRow struct {
	// Grantee is the user (regex rows) or group (group-regex rows).
	Grantee  Grantee
	Kind     ResourceKind
	ID       int64
	Regex    string
	Priority int64
	// Permission is the stored string, verbatim ("" for NULL).
	Permission string
}

// UserRow is one row of MLflow's users table.
type UserRow struct {
	Username string
	Admin    bool
}

// Admin is what the CLI, the admin API and the creator-grant reconciler
// write. Writes go to MLflow's own tables, exactly as an admin with SQL
// would, so MLflow's basic-auth and mlflow-oidc-auth keep reading them.
type Admin interface {
	Reader
	// CreateUser inserts a users row (no password: identities come from
	// Keycloak or SPIFFE). created is false when it already existed.
	CreateUser(ctx context.Context, username string, admin bool) (created bool, err error)
	// DeleteUser removes the user and its grant rows. ErrNotFound if absent.
	DeleteUser(ctx context.Context, username string) error
	// SetAdmin sets users.is_admin; changed reports whether it differed.
	SetAdmin(ctx context.Context, username string, admin bool) (changed bool, err error)
	ListUsers(ctx context.Context) ([]UserRow, error)

	CreateGroup(ctx context.Context, name string) (created bool, err error)
	// DeleteGroup removes the group and its grant rows. ErrNotFound if absent.
	DeleteGroup(ctx context.Context, name string) error
	ListGroups(ctx context.Context) ([]string, error)

	// SetGrant writes g's permission on r, creating a missing users row (as
	// MLflow does) or groups row. before is the previous row, nil if none;
	// changed is false when the row already held p.
	SetGrant(ctx context.Context, g Grantee, r Resource, p Permission) (before *GrantRow, changed bool, err error)
	// DeleteGrant removes g's row on r; before is nil (and changed false)
	// when there was none.
	DeleteGrant(ctx context.Context, g Grantee, r Resource) (before *GrantRow, changed bool, err error)
	ListGrants(ctx context.Context, f GrantFilter) ([]GrantRow, error)
	// ListPatterns lists mlflow-oidc-auth's regex and group-regex rows of
	// f's kind, user or group (f.ID is ignored: a regex row names no one
	// resource), as its resolver reads them; none without its tables.
	ListPatterns(ctx context.Context, f GrantFilter) ([]PatternRow, error)

	// RenameRegisteredModel moves every user and group row of a registered
	// model in workspace ("" is the default one) to its new name (MLflow's
	// after-request hook on rename).
	RenameRegisteredModel(ctx context.Context, workspace, from, to string) error
	// DeleteResourceGrants removes every row on r (after a delete).
	DeleteResourceGrants(ctx context.Context, r Resource) error
}

// Role is one of MLflow's roles in the default workspace (its roles
// table), with its grants and the users assigned to it.
type Role struct {
	Name        string
	Description string
	Permissions []RolePermission
	// Users are the usernames assigned to the role, sorted.
	Users []string
}

// RolePermission is one role_permissions row, verbatim.
type RolePermission struct {
	// Type is resource_type: a kind, prompt, workspace or a sub-resource.
	Type string
	// Pattern is resource_pattern: "*" or an id (a scorer's is
	// <experiment_id>/<quoted name>).
	Pattern    string
	Permission string
}

// RoleAdmin manages MLflow's roles (the roles layout, MLflow 3.12+) in
// the default workspace. Grants to a role go through Admin.SetGrant with
// Grantee.Group naming the role. Every method returns ErrNoRoleTables on
// a database without them.
type RoleAdmin interface {
	// CreateRole creates a role in workspace ("" is DefaultWorkspace, as
	// for every method here: a role belongs to one workspace); created is
	// false when it existed. Names starting with __user_ are MLflow's
	// per-user roles and refused.
	CreateRole(ctx context.Context, workspace, name, description string) (created bool, err error)
	ListRoles(ctx context.Context, workspace string) ([]Role, error)
	// Role returns one role; ErrNotFound if absent.
	Role(ctx context.Context, workspace, name string) (Role, error)
	// DeleteRole removes the role, its grants and its assignments.
	DeleteRole(ctx context.Context, workspace, name string) error
	// AssignRole assigns the role to username (creating a missing users
	// row); changed is false when it was assigned already.
	AssignRole(ctx context.Context, workspace, username, role string) (changed bool, err error)
	UnassignRole(ctx context.Context, workspace, username, role string) (changed bool, err error)
}
