package mlflow

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// TestParseWorkspace: the X-MLFLOW-WORKSPACE value resolves as MLflow's
// resolve_workspace_from_header resolves it, or is refused as its
// WorkspaceNameValidator refuses it.
func TestParseWorkspace(t *testing.T) {
	tests := []struct {
		name, header, want string
		bad                bool
	}{
		{name: "absent", header: "", want: "default"},
		{name: "blank", header: "  \t", want: "default"},
		{name: "default", header: "default", want: "default"},
		{name: "padded", header: " team-a ", want: "team-a"},
		{name: "digits", header: "42", want: "42"},
		{name: "max length", header: strings.Repeat("a", 63), want: strings.Repeat("a", 63)},
		{name: "too long", header: strings.Repeat("a", 64), bad: true},
		{name: "too short", header: "a", bad: true},
		{name: "upper case", header: "Team-A", bad: true},
		{name: "underscore", header: "team_a", bad: true},
		{name: "leading hyphen", header: "-team", bad: true},
		{name: "trailing hyphen", header: "team-", bad: true},
		{name: "double hyphen", header: "team--a", bad: true},
		{name: "reserved api", header: "api", bad: true},
		{name: "reserved ajax-api", header: "ajax-api", bad: true},
		{name: "reserved workspaces", header: "workspaces", bad: true},
		{name: "reserved static-files", header: "static-files", bad: true},
		{name: "list", header: "team-a,team-b", bad: true},
		{name: "slash", header: "team/a", bad: true},
		{name: "non-ASCII space", header: "\u00a0team-a", bad: true},
		{name: "inner space", header: "team a", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseWorkspace(tc.header)
			if tc.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// mlflowWorkspaceName is WorkspaceNameValidator._PATTERN without its
// lookahead (RE2 has none), which the fuzz target checks apart.
var mlflowWorkspaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// FuzzParseWorkspace: whatever ParseWorkspace accepts, MLflow's validator
// accepts too, and it never holds "/", which store.WorkspaceKey relies on.
func FuzzParseWorkspace(f *testing.F) {
	for _, s := range []string{"", "default", " team-a ", "a--b", "api", "Team", "x", "a\u00a0", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		ws, err := ParseWorkspace(header)
		if err != nil {
			return
		}
		if ws == store.DefaultWorkspace {
			return
		}
		if len(ws) < 2 || len(ws) > 63 || !mlflowWorkspaceName.MatchString(ws) || strings.Contains(ws, "--") || reservedWorkspaces[ws] {
			t.Fatalf("ParseWorkspace(%q) = %q, which MLflow refuses", header, ws)
		}
		if strings.ContainsRune(ws, '/') {
			t.Fatalf("workspace %q holds a slash", ws)
		}
	})
}

// TestWorkspaceFallback: with no grant on the resource, what decides in
// each workspace (MLflow's _workspace_permission and _role_permission_for).
func TestWorkspaceFallback(t *testing.T) {
	manage := &store.Grant{Permission: store.Manage, Valid: true}
	tests := []struct {
		name          string
		on, defAccess bool
		g             store.Grants
		ws            string
		want          store.Permission
		src           string
	}{
		{name: "off: default_permission", g: store.Grants{}, want: store.Read, src: "default"},
		{name: "off: workspace row ignored", g: store.Grants{Workspace: manage}, want: store.Read, src: "default"},
		{name: "on: workspace row", on: true, g: store.Grants{Workspace: manage}, ws: "team-a", want: store.Manage, src: "workspace"},
		{name: "on: unreadable workspace row", on: true, g: store.Grants{Workspace: &store.Grant{}}, ws: "team-a", want: store.NoPermissions, src: "workspace"},
		{name: "on: nothing", on: true, ws: "team-a", want: store.NoPermissions, src: "workspace"},
		{name: "on: nothing in default", on: true, ws: "default", want: store.NoPermissions, src: "workspace"},
		{name: "on, default access: default", on: true, defAccess: true, ws: "default", want: store.Read, src: "default"},
		{name: "on, default access: other workspace", on: true, defAccess: true, ws: "team-a", want: store.NoPermissions, src: "workspace"},
		{name: "on, roles layout: no workspace row read", on: true, g: store.Grants{Layout: store.LayoutRoles, Workspace: manage}, ws: "team-a", want: store.NoPermissions, src: "workspace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := NewResolution("", nil, store.Read, nil)
			require.NoError(t, err)
			rs = rs.WithWorkspaces(tc.on, tc.defAccess)
			got, src := rs.fallback(tc.g, store.Resource{Kind: store.Experiment, ID: "1", Workspace: tc.ws})
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.src, src)
		})
	}
}
