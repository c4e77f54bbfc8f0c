package mlflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/pyregex"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Source is one permission source that a resolution considered.
type Source struct {
	// Kind is "user", "group", "regex", "group-regex" or "default".
	Kind string
	// Group names the group (Kind "group" or "group-regex"), without
	// Keycloak's "/".
	Group string
	// Found is false for a source with no row on the resource (for a
	// regex source: no row whose regex matches).
	Found bool
	// Grant is the row (or, for "default", the default permission).
	Grant store.Grant
	// Outranked marks a row that an earlier source, or in mlflow-oidc-auth's
	// group rule another group's row, outranks.
	Outranked bool
	// Regex, Priority and ID describe a regex row; Name is the name it was
	// matched against.
	Regex    string
	Priority int64
	ID       int64
	Name     string
	// Unreadable says why the row cannot be read exactly (a regex RE2
	// cannot evaluate as Python would); the resolution then denies.
	Unreadable string

	// Role, Via, RoleType and Pattern describe a grant of the roles layout
	// (Kind "role"): the role, why it applies ("assigned" or "group g"),
	// and the grant's resource type and pattern. Deny marks MLflow's DENY,
	// Condition a mutation condition.
	Role, Via, RoleType, Pattern string
	Deny, Condition              bool
}

// EffectivePermission is the caller's permission on one resource, after the
// admin check: the user's own row (an explicit NO_PERMISSIONS, or a NULL or
// unknown row, denies), else the best of the groups' rows (an unreadable row
// denies), else def. It is MLflow's _get_permission_from_store_or_default
// (mlflow/server/auth/__init__.py) with mlflow-oidc-auth's group rows
// between the user's row and the default. The policy and the admin API's `permissions list`
// both call it, so what operators are shown is what is enforced. note, when
// not nil, hears every source considered, in order.
func EffectivePermission(g store.Grants, groups []string, def store.Permission, note func(Source)) store.Permission {
	if g.User != nil {
		if note != nil {
			note(Source{Kind: "user", Found: true, Grant: *g.User})
			for _, name := range groups {
				name = authz.NormalizeGroup(name)
				if gr, ok := g.Groups[name]; ok {
					note(Source{Kind: "group", Group: name, Found: true, Grant: gr, Outranked: true})
				}
			}
		}
		if !g.User.Valid {
			return store.NoPermissions
		}
		return g.User.Permission
	}
	best, found := store.NoPermissions, false
	for _, name := range groups {
		name = authz.NormalizeGroup(name)
		gr, ok := g.Groups[name]
		if note != nil {
			note(Source{Kind: "group", Group: name, Found: ok, Grant: gr})
		}
		if !ok {
			continue
		}
		if !gr.Valid {
			// An unreadable row is a deny, never a guess: it ends the search.
			return store.NoPermissions
		}
		if !found || gr.Permission > best {
			best, found = gr.Permission, true
		}
	}
	if found {
		return best
	}
	if note != nil {
		note(Source{Kind: "default", Found: true, Grant: store.Grant{Permission: def, Valid: true}})
	}
	return def
}

// Compatibility modes (Config.Compat).
const (
	CompatMLflow   = "mlflow"
	CompatOIDCAuth = "oidc-auth"
)

// DefaultSourceOrder is mlflow-oidc-auth's default PERMISSION_SOURCE_ORDER
// (mlflow_oidc_auth/config.py).
var DefaultSourceOrder = []store.Source{store.SourceUser, store.SourceGroup, store.SourceRegex, store.SourceGroupRegex}

// CompatConfig is the part of Config that says whose permission model
// decides.
type CompatConfig struct {
	// Compat is mlflow (the default: MLflow's order, with
	// mlflow-oidc-auth's group rows) or oidc-auth (mlflow-oidc-auth's
	// resolution: its regex rows, its source order, its group rule, and its
	// gateway rows keyed by name), for deployments that leave that plugin.
	Compat string `yaml:"compat"`
	// PermissionSourceOrder is mlflow-oidc-auth's PERMISSION_SOURCE_ORDER
	// (compat oidc-auth only; default user, group, regex, group-regex).
	PermissionSourceOrder []string `yaml:"permission_source_order"`
	// Layout is the auth database's layout: auto (default: detected from
	// alembic_version_auth and the tables), legacy (MLflow up to 3.11's
	// per-user tables) or roles (MLflow 3.12+'s role tables). The store
	// reads it at start; every MLflow application must agree.
	Layout string `yaml:"layout"`
	// GroupRoles maps token groups to MLflow roles in the roles layout.
	GroupRoles GroupRoles `yaml:"group_roles"`
}

// Resolution turns a caller's stored rows into its permission on one
// resource: MLflow's order (EffectivePermission), or with mlflow.compat:
// oidc-auth, mlflow-oidc-auth's. The policy, explain and the admin API's
// `permissions list` all resolve through it, so what operators are shown
// is what is enforced. It is safe for concurrent use; copies share their
// compiled regexes.
type Resolution struct {
	// groupRoles maps token groups to roles in the roles layout.
	groupRoles GroupRoles
	compat     bool
	order      []store.Source
	def        store.Permission
	regexes    *regexCache
	// workspaces and defaultWorkspaceAccess are Config.Workspaces and
	// Config.GrantDefaultWorkspaceAccess (see fallback).
	workspaces, defaultWorkspaceAccess bool
}

// WithWorkspaces returns rs deciding in MLflow's workspaces (Config.Workspaces).
func (rs Resolution) WithWorkspaces(on, defaultAccess bool) Resolution {
	rs.workspaces, rs.defaultWorkspaceAccess = on, on && defaultAccess
	return rs
}

// NewResolution validates the compatibility mode and, for oidc-auth, the
// source order (nil means DefaultSourceOrder). log hears, once per
// pattern, of a regex that cannot be evaluated.
func NewResolution(compat string, order []string, def store.Permission, log *slog.Logger) (Resolution, error) {
	rs := Resolution{def: def}
	switch compat {
	case "", CompatMLflow:
		if order != nil {
			return rs, errors.New("mlflow: permission_source_order needs compat: oidc-auth")
		}
		return rs, nil
	case CompatOIDCAuth:
	default:
		return rs, fmt.Errorf("mlflow: compat %q is not mlflow or oidc-auth", compat)
	}
	rs.compat = true
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rs.regexes = &regexCache{log: log}
	if order == nil {
		rs.order = DefaultSourceOrder
		return rs, nil
	}
	if len(order) == 0 {
		return rs, errors.New("mlflow: permission_source_order is empty")
	}
	seen := map[store.Source]bool{}
	for _, s := range order {
		src := store.Source(s)
		switch src {
		case store.SourceUser, store.SourceGroup, store.SourceRegex, store.SourceGroupRegex:
		default:
			return rs, fmt.Errorf("mlflow: permission_source_order: %q is not user, group, regex or group-regex", s)
		}
		if seen[src] {
			return rs, fmt.Errorf("mlflow: permission_source_order: %q twice", s)
		}
		seen[src] = true
		rs.order = append(rs.order, src)
	}
	return rs, nil
}

// Compat reports whether this is mlflow-oidc-auth's resolution.
func (rs Resolution) Compat() bool { return rs.compat }

// Order returns mlflow-oidc-auth's source order (nil for MLflow's).
func (rs Resolution) Order() []store.Source { return rs.order }

// Default returns the default permission.
func (rs Resolution) Default() store.Permission { return rs.def }

// nameLookups are the lookups that give the name a resource's rows are
// keyed by in mlflow-oidc-auth's layout, where that is not its id.
var nameLookups = map[store.ResourceKind]store.Lookup{
	store.GatewaySecret:          store.NameOfGatewaySecret,
	store.GatewayEndpoint:        store.NameOfGatewayEndpoint,
	store.GatewayModelDefinition: store.NameOfGatewayModelDefinition,
}

// GrantKey returns the resource whose rows to read for res. mlflow-oidc-auth
// keys its gateway rows by the object's name (its endpoint_id, secret_id
// and model_definition_id columns hold names), so under compat a gateway
// id is looked up to its name; store.ErrNotFound when there is none.
func (rs Resolution) GrantKey(ctx context.Context, r store.Reader, res store.Resource) (store.Resource, error) {
	l, ok := nameLookups[res.Kind]
	if !rs.compat || !ok {
		return res, nil
	}
	names, err := r.Resolve(ctx, l, res.ID)
	if err != nil {
		return res, err
	}
	if len(names) != 1 {
		return res, store.ErrNotFound
	}
	return store.Resource{Kind: res.Kind, ID: names[0], Name: res.Name, Workspace: res.Workspace}, nil
}

// Result is a resolved permission.
type Result struct {
	Permission store.Permission
	// Source is the source that decided ("default" when none had a row).
	Source string
	// Unreadable, when set, says why a deciding row could not be read
	// exactly; Permission is then NO_PERMISSIONS.
	Unreadable string
}

// Permission resolves the permission of username, in groups, on res from
// g, the rows read for key (GrantKey's answer), after the admin check.
// Under compat it reads regex rows and the resource's name through r only
// when the source order reaches a regex source. note, when not nil, hears
// every source considered. An error is a store failure.
func (rs Resolution) Permission(ctx context.Context, r store.Reader, username string, groups []string, res, key store.Resource, g store.Grants, note func(Source)) (Result, error) {
	if g.Layout == store.LayoutRoles {
		if rs.compat {
			// Configuration refuses the pair; a forced or detected layout
			// that disagrees with it is no reason to guess.
			return Result{Permission: store.NoPermissions, Source: "role",
				Unreadable: "mlflow.compat oidc-auth does not apply to MLflow's roles layout"}, nil
		}
		return rs.rolePermission(g, key, groups, note), nil
	}
	if !rs.compat {
		if res.Kind != store.Experiment && res.Kind != store.RegisteredModel {
			// MLflow's model has group rows for these two kinds only;
			// mlflow-oidc-auth's scorer group rows are its resolution's.
			g.Groups = nil
		}
		def, defSrc := rs.fallback(g, key)
		src := "default"
		p := EffectivePermission(g, groups, def, func(s Source) {
			if s.Kind == "default" && defSrc == "workspace" {
				s.Kind, s.Name = "workspace", key.WorkspaceOf()
			}
			if s.Found && !s.Outranked && src == "default" {
				src = s.Kind
			}
			if note != nil {
				note(s)
			}
		})
		return Result{Permission: p, Source: src}, nil
	}
	ev := &evaluation{rs: rs, r: r, username: username, groups: groups, res: res, key: key, g: g, note: note}
	for _, src := range rs.order {
		var (
			res Result
			ok  bool
			err error
		)
		switch src {
		case store.SourceUser:
			res, ok = ev.user(g)
		case store.SourceGroup:
			res, ok = ev.group(g)
		case store.SourceRegex, store.SourceGroupRegex:
			res, ok, err = ev.regex(ctx, src)
		}
		if err != nil {
			return Result{}, err
		}
		if ok {
			return res, nil
		}
	}
	if note != nil {
		note(Source{Kind: "default", Found: true, Grant: store.Grant{Permission: rs.def, Valid: true}})
	}
	return Result{Permission: rs.def, Source: "default"}, nil
}

// evaluation is one compat resolution; it reads the regex rows and the
// name at most once.
type evaluation struct {
	rs         Resolution
	r          store.Reader
	username   string
	groups     []string
	res, key   store.Resource
	g          store.Grants
	note       func(Source)
	patterns   *store.Patterns
	name       string
	nameLooked bool
	nameFound  bool
}

func (ev *evaluation) tell(s Source) {
	if ev.note != nil {
		ev.note(s)
	}
}

// user is the "user" source: the user's own row decides, a NULL or unknown
// one as a deny (mlflow-oidc-auth's get_permission raises on it).
func (ev *evaluation) user(g store.Grants) (Result, bool) {
	if g.User == nil {
		ev.tell(Source{Kind: "user"})
		return Result{}, false
	}
	ev.tell(Source{Kind: "user", Found: true, Grant: *g.User})
	if !g.User.Valid {
		return Result{Permission: store.NoPermissions, Source: "user", Unreadable: "the user's row holds a NULL or unknown permission"}, true
	}
	return Result{Permission: g.User.Permission, Source: "user"}, true
}

// group is the "group" source, ranked as
// repository/_base.get_group_permission_for_user_resource ranks the rows of
// the user's groups: compare_permissions keeps the row of the highest
// permissions.py priority, and NO_PERMISSIONS has priority 100, so one
// group's NO_PERMISSIONS outranks every other group's grant. A NULL or
// unknown row makes it raise: a deny.
func (ev *evaluation) group(g store.Grants) (Result, bool) {
	var (
		found       bool
		best        store.Permission
		bestGroup   string
		unreadable  string
		considered  []Source
		denyByGroup bool
	)
	for _, name := range ev.groups {
		name = authz.NormalizeGroup(name)
		gr, ok := g.Groups[name]
		if !ok {
			ev.tell(Source{Kind: "group", Group: name})
			continue
		}
		considered = append(considered, Source{Kind: "group", Group: name, Found: true, Grant: gr})
		switch {
		case !gr.Valid:
			unreadable = fmt.Sprintf("group %q's row holds a NULL or unknown permission", name)
		case gr.Permission == store.NoPermissions:
			if !denyByGroup {
				best, bestGroup = store.NoPermissions, name
			}
			denyByGroup = true
		case !denyByGroup && (!found || gr.Permission > best):
			best, bestGroup = gr.Permission, name
		}
		found = true
	}
	for _, s := range considered {
		s.Outranked = unreadable == "" && s.Group != bestGroup
		ev.tell(s)
	}
	if !found {
		return Result{}, false
	}
	if unreadable != "" {
		return Result{Permission: store.NoPermissions, Source: "group", Unreadable: unreadable}, true
	}
	return Result{Permission: best, Source: "group"}, true
}

// regex is the "regex" or "group-regex" source
// (utils/permissions.py _match_regex_permission): the rows in priority
// order, the first whose regex re.match-es the name decides. Rows of equal
// priority have no order in mlflow-oidc-auth (ORDER BY priority alone):
// when several of them match, the weakest decides. A regex that cannot be
// evaluated exactly, reached before a match, denies, as does a matching row
// with a NULL or unknown permission.
func (ev *evaluation) regex(ctx context.Context, src store.Source) (Result, bool, error) {
	if ev.patterns == nil {
		p, err := ev.r.Patterns(ctx, ev.username, ev.groups, ev.res.Kind)
		if err != nil {
			return Result{}, false, err
		}
		ev.patterns = &p
	}
	rows := ev.patterns.User
	if src == store.SourceGroupRegex {
		rows = ev.patterns.Groups
	}
	kind := string(src)
	if len(rows) == 0 {
		ev.tell(Source{Kind: kind})
		return Result{}, false, nil
	}
	name, ok, err := ev.resourceName(ctx)
	if err != nil {
		return Result{}, false, err
	}
	if !ok {
		// mlflow-oidc-auth's lookup of the name raises
		// RESOURCE_DOES_NOT_EXIST, which ends the source without a row.
		ev.tell(Source{Kind: kind, Name: "(no such " + string(ev.res.Kind) + ")"})
		return Result{}, false, nil
	}
	for i := 0; i < len(rows); {
		j := i
		for j < len(rows) && rows[j].Priority == rows[i].Priority {
			j++
		}
		var (
			matched    bool
			weakest    store.Grant
			unreadable string
		)
		for k := i; k < j; k++ {
			row := rows[k]
			s := Source{Kind: kind, Group: authz.NormalizeGroup(row.Group), Grant: row.Grant, Regex: row.Regex,
				Priority: row.Priority, ID: row.ID, Name: name}
			m, err := ev.rs.regexes.match(row.Regex, name)
			if err != nil {
				s.Unreadable = err.Error()
				ev.tell(s)
				if unreadable == "" {
					unreadable = fmt.Sprintf("%s row %d (regex %q) cannot be evaluated exactly as Python would: %v", kind, row.ID, row.Regex, err)
				}
				continue
			}
			s.Found = m
			if m {
				if !row.Grant.Valid && unreadable == "" {
					unreadable = fmt.Sprintf("%s row %d (regex %q) holds a NULL or unknown permission", kind, row.ID, row.Regex)
				}
				if !matched || weaker(row.Grant, weakest) {
					weakest = row.Grant
				}
				matched = true
			}
			ev.tell(s)
		}
		if unreadable != "" {
			return Result{Permission: store.NoPermissions, Source: kind, Unreadable: unreadable}, true, nil
		}
		if matched {
			return Result{Permission: weakest.Permission, Source: kind}, true, nil
		}
		i = j
	}
	return Result{}, false, nil
}

// weaker reports whether a is weaker than b (an invalid row is the weakest
// of all).
func weaker(a, b store.Grant) bool {
	if !a.Valid {
		return b.Valid
	}
	return b.Valid && a.Permission < b.Permission
}

// resourceName is the name regex rows are matched against: an
// experiment's name from the tracking tables (read with the grants when
// they share its database), a registered model's name
// (its id), a scorer's name, a gateway object's name (the grant key).
func (ev *evaluation) resourceName(ctx context.Context) (string, bool, error) {
	if ev.nameLooked {
		return ev.name, ev.nameFound, nil
	}
	ev.nameLooked = true
	switch ev.res.Kind {
	case store.Experiment:
		if ev.g.HasName {
			// Read with the grants, in the same round trip.
			ev.name, ev.nameFound = ev.g.Name, true
			break
		}
		names, err := ev.r.Resolve(ctx, store.NameOfExperiment, ev.res.ID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && len(names) != 1) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		ev.name, ev.nameFound = names[0], true
	case store.Scorer:
		ev.name, ev.nameFound = ev.res.Name, true
	default:
		ev.name, ev.nameFound = ev.key.ID, true
	}
	return ev.name, ev.nameFound, nil
}

// regexCache compiles each pattern once. Patterns come from the database,
// so it is bounded: past maxPatterns it starts over.
type regexCache struct {
	log *slog.Logger
	mu  sync.RWMutex
	m   map[string]compiled
}

type compiled struct {
	re  *pyregex.Regexp
	err error
}

const maxPatterns = 10000

func (c *regexCache) match(pattern, name string) (bool, error) {
	c.mu.RLock()
	e, ok := c.m[pattern]
	c.mu.RUnlock()
	if !ok {
		re, err := pyregex.Compile(pattern)
		e = compiled{re, err}
		c.mu.Lock()
		if c.m == nil || len(c.m) >= maxPatterns {
			c.m = make(map[string]compiled)
		}
		if _, dup := c.m[pattern]; !dup && err != nil {
			c.log.Warn("mlflow: a regex grant of mlflow-oidc-auth cannot be evaluated; requests it decides are denied",
				"regex", pattern, "error", err)
		}
		c.m[pattern] = e
		c.mu.Unlock()
	}
	if e.err != nil {
		return false, e.err
	}
	return e.re.Match(name)
}

// Describe renders one considered source of username's permission for the
// explain trace and `permissions list`, naming the source.
func (s Source) Describe(username string) string {
	var b strings.Builder
	switch s.Kind {
	case "default":
		return "default_permission: " + s.Grant.Permission.String()
	case "workspace":
		return fmt.Sprintf("no grant on the resource: workspace %q gives %s", s.Name, grantString(s.Grant))
	case "role":
		what := s.RoleType + " " + s.Pattern
		switch {
		case s.Condition:
			return fmt.Sprintf("role %q (%s): a mutation condition on %s: not evaluated, reads only", s.Role, s.Via, s.RoleType)
		case s.Deny:
			return fmt.Sprintf("role %q (%s) on %s: DENY", s.Role, s.Via, what)
		case s.Outranked:
			return fmt.Sprintf("role %q (%s) on %s: %s (a workspace member's grant; only MANAGE counts on resources)", s.Role, s.Via, what, grantString(s.Grant))
		}
		fmt.Fprintf(&b, "role %q (%s) on %s: %s", s.Role, s.Via, what, grantString(s.Grant))
	case "role-type":
		return s.Name
	case "user":
		if !s.Found {
			return fmt.Sprintf("user %q: no row", username)
		}
		fmt.Fprintf(&b, "user %q row: %s", username, grantString(s.Grant))
	case "group":
		if !s.Found {
			return fmt.Sprintf("group %q: no row", s.Group)
		}
		fmt.Fprintf(&b, "group %q row: %s", s.Group, grantString(s.Grant))
	case "regex", "group-regex":
		if s.Regex == "" {
			if s.Name != "" {
				return fmt.Sprintf("%s: %s", s.Kind, s.Name)
			}
			return s.Kind + ": no row"
		}
		owner := fmt.Sprintf("user %q", username)
		if s.Kind == "group-regex" {
			owner = fmt.Sprintf("group %q", s.Group)
		}
		fmt.Fprintf(&b, "%s row %d of %s, regex %q priority %d: ", s.Kind, s.ID, owner, s.Regex, s.Priority)
		switch {
		case s.Unreadable != "":
			fmt.Fprintf(&b, "cannot be evaluated (%s) → deny", s.Unreadable)
			return b.String()
		case !s.Found:
			fmt.Fprintf(&b, "does not match %q", s.Name)
			return b.String()
		}
		fmt.Fprintf(&b, "matches %q: %s", s.Name, grantString(s.Grant))
	}
	if !s.Grant.Valid {
		b.WriteString(" → deny")
	}
	if s.Outranked {
		b.WriteString(" (outranked)")
	}
	return b.String()
}

func grantString(g store.Grant) string {
	if !g.Valid {
		return "NULL or unknown"
	}
	return g.Permission.String()
}
