package mlflow

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlflow-authz/mlflow-authz/store"
)

func TestEffectivePermission(t *testing.T) {
	ok := func(p store.Permission) store.Grant { return store.Grant{Permission: p, Valid: true} }
	bad := store.Grant{}
	tests := []struct {
		name   string
		g      store.Grants
		groups []string
		def    store.Permission
		want   store.Permission
		kinds  []string
	}{
		{"user row outranks a better group", store.Grants{User: ptr(ok(store.Read)), Groups: map[string]store.Grant{"a": ok(store.Manage)}}, []string{"/a"}, store.Edit, store.Read, []string{"user", "group"}},
		{"explicit NO_PERMISSIONS denies", store.Grants{User: ptr(ok(store.NoPermissions)), Groups: map[string]store.Grant{"a": ok(store.Manage)}}, []string{"a"}, store.Read, store.NoPermissions, []string{"user", "group"}},
		{"NULL user row denies", store.Grants{User: ptr(bad)}, nil, store.Manage, store.NoPermissions, []string{"user"}},
		{"best group wins", store.Grants{Groups: map[string]store.Grant{"a": ok(store.Read), "b": ok(store.Edit)}}, []string{"a", "b", "c"}, store.NoPermissions, store.Edit, []string{"group", "group", "group"}},
		{"an unreadable group row denies", store.Grants{Groups: map[string]store.Grant{"a": ok(store.Manage), "b": bad}}, []string{"a", "b"}, store.Read, store.NoPermissions, []string{"group", "group"}},
		{"only the caller's groups count", store.Grants{Groups: map[string]store.Grant{"other": ok(store.Manage)}}, []string{"a"}, store.Read, store.Read, []string{"group", "default"}},
		{"nothing: the default", store.Grants{}, nil, store.NoPermissions, store.NoPermissions, []string{"default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kinds []string
			got := EffectivePermission(tt.g, tt.groups, tt.def, func(s Source) { kinds = append(kinds, s.Kind) })
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.kinds, kinds)
			assert.Equal(t, got, EffectivePermission(tt.g, tt.groups, tt.def, nil), "the note must not change the result")
		})
	}
}

func ptr[T any](v T) *T { return &v }
