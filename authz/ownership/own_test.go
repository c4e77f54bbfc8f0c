package ownership

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// TestPendingRecordsOwnTheirMemory: a record's strings are read from the
// request (a name from its body, a Basic user from the credential that holds
// the password too) and kept for up to the record's TTL, so they are copied:
// a substring would keep the whole request alive.
func TestPendingRecordsOwnTheirMemory(t *testing.T) {
	request := "alice:a-password|7|my-model|new-name|team-a" + strings.Repeat("b", 4096)
	field := func(i int) string { return strings.Split(request[:strings.Index(request, "bbb")], "|")[i] }
	k := key{
		op:   opRename,
		name: store.TrackedName{Kind: store.Scorer, Experiment: field(1), Name: field(2), Workspace: field(4)},
		to:   field(3),
		user: field(0)[:len("alice")],
	}
	r := New(nil, nil, Options{})
	r.add(t.Context(), k, time.Unix(1767225600, 0), time.Minute)
	require.Len(t, r.pending, 1)
	for stored, rec := range r.pending {
		assert.Equal(t, k, stored, "the copy reads the same")
		assert.Equal(t, stored, rec.key)
		for i, pair := range [][2]string{
			{k.name.Experiment, stored.name.Experiment}, {k.name.Name, stored.name.Name},
			{k.name.Workspace, stored.name.Workspace}, {k.to, stored.to}, {k.user, stored.user},
		} {
			assert.NotSame(t, unsafe.StringData(pair[0]), unsafe.StringData(pair[1]), "field %d shares the request's memory", i)
		}
	}
}
