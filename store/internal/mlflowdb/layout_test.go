package mlflowdb

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

func TestDetectLayout(t *testing.T) {
	legacy := map[string]bool{"users": true, "experiment_permissions": true}
	both := map[string]bool{"users": true, "experiment_permissions": true, "roles": true, "role_permissions": true, "user_role_assignments": true}
	dropped := map[string]bool{"users": true, "roles": true, "role_permissions": true, "user_role_assignments": true}
	tests := []struct {
		name, mode, rev string
		tables          map[string]bool
		want            store.LayoutInfo
		err             string
	}{
		{"3.11", "", "2ed73881770d", legacy, store.LayoutInfo{Layout: store.LayoutLegacy, Revision: "2ed73881770d"}, ""},
		{"no version table", "auto", "", legacy, store.LayoutInfo{Layout: store.LayoutLegacy}, ""},
		{"master RBAC phase 1 still reads the per-user rows", "", "c3d4e5f6a7b8", both, store.LayoutInfo{Layout: store.LayoutLegacy, Revision: "c3d4e5f6a7b8"}, ""},
		{"3.12: the legacy tables prove nothing", "", "e5f6a7b8c9d0", both, store.LayoutInfo{Layout: store.LayoutRoles, Revision: "e5f6a7b8c9d0"}, ""},
		{"legacy tables dropped", "", "f6a7b8c9d0e1", dropped, store.LayoutInfo{Layout: store.LayoutRoles, Revision: "f6a7b8c9d0e1"}, ""},
		{"unknown revision with role tables", "", "0123456789ab", both, store.LayoutInfo{Layout: store.LayoutRoles, Revision: "0123456789ab", Unknown: true}, ""},
		{"unknown revision without them", "", "0123456789ab", legacy, store.LayoutInfo{Layout: store.LayoutLegacy, Revision: "0123456789ab", Unknown: true}, ""},
		{"forced legacy", "legacy", "e5f6a7b8c9d0", both, store.LayoutInfo{Layout: store.LayoutLegacy, Revision: "e5f6a7b8c9d0", Forced: true}, ""},
		{"forced roles", "roles", "2ed73881770d", both, store.LayoutInfo{Layout: store.LayoutRoles, Revision: "2ed73881770d", Forced: true}, ""},
		{"forced roles without role tables", "roles", "", legacy, store.LayoutInfo{}, "no roles, role_permissions and user_role_assignments tables"},
		{"a roles revision without role tables", "", "e5f6a7b8c9d0", legacy, store.LayoutInfo{}, "no roles"},
		{"unknown mode", "newest", "", legacy, store.LayoutInfo{}, `layout "newest" is not auto, legacy or roles`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectLayout(tt.mode, tt.rev, tt.tables)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.want.Unknown, got.Warning() != "")
		})
	}
}

// TestPyQuote: the values are Python's urllib.parse.quote(s, safe="")
// (3.12), which MLflow's _scorer_pattern and migration e5f6a7b8c9d0 use.
func TestPyQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain_name-1.0~x": "plain_name-1.0~x",
		"a/b c":            "a%2Fb%20c",
		"50%+?&=#":         "50%25%2B%3F%26%3D%23",
		"é":                "%C3%A9",
		"":                 "",
	} {
		assert.Equal(t, want, PyQuote(in), in)
	}
	assert.Equal(t, "7/a%2Fb", RoleKey(store.Resource{Kind: store.Scorer, ID: "7", Name: "a/b"}))
	assert.Equal(t, "*", RoleKey(store.Resource{Kind: store.Scorer, ID: "*"}))
	assert.Equal(t, "m/1", RoleKey(store.Resource{Kind: store.RegisteredModel, ID: "m/1"}))
}
