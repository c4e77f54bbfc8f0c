package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// TestGrantsBatchEveryKind reads one batch holding a key of every resource
// kind, interleaved and repeated, and requires each answer to be what
// Grants reads for the key alone: the batch query of every kind is built
// from its Grants query (one statement per kind), so a kind whose arguments
// were typed or numbered wrong would read another key's rows, or fail.
func TestGrantsBatchEveryKind(t *testing.T) {
	st := openTracking(t,
		`INSERT INTO users (id, username, password_hash, is_admin) VALUES (1, 'alice', 'x', false), (2, 'bob', 'x', false), (3, 'root', 'x', true)`,
		`INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (7, 'exp-7', 'active'), (8, 'exp-8', 'active')`,
		`INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('7', 1, 'EDIT'), ('8', 2, 'READ')`,
		`INSERT INTO registered_model_permissions (name, user_id, permission) VALUES ('m', 1, 'MANAGE'), ('m', 2, 'READ')`,
		`INSERT INTO scorer_permissions (experiment_id, scorer_name, user_id, permission) VALUES ('7', 's', 1, 'READ')`,
		`INSERT INTO gateway_secret_permissions (secret_id, user_id, permission) VALUES ('g', 2, 'USE')`,
		`INSERT INTO gateway_endpoint_permissions (endpoint_id, user_id, permission) VALUES ('g', 1, 'EDIT')`,
		`INSERT INTO gateway_model_definition_permissions (model_definition_id, user_id, permission) VALUES ('g', 1, 'READ')`,
	)

	resources := []store.Resource{
		{Kind: store.Experiment, ID: "7"},
		{Kind: store.RegisteredModel, ID: "m"},
		{Kind: store.Experiment, ID: "8"},
		{Kind: store.Scorer, ID: "7", Name: "s"},
		{Kind: store.GatewaySecret, ID: "g"},
		{Kind: store.Experiment, ID: "not-a-number"}, // its integer id binds NULL
		{Kind: store.GatewayEndpoint, ID: "g"},
		{Kind: store.GatewayModelDefinition, ID: "g"},
		{Kind: store.RegisteredModel, ID: "missing"},
	}
	var keys []store.GrantsKey
	for _, user := range []string{"alice", "bob", "root", "nobody"} {
		for _, res := range resources {
			keys = append(keys, store.GrantsKey{Username: user, Resource: res})
		}
	}
	keys = append(keys, keys[0], keys[len(keys)-1])
	batch, err := st.GrantsBatch(t.Context(), keys)
	require.NoError(t, err)
	require.Len(t, batch, len(keys))
	seen := 0
	for i, k := range keys {
		want, err := st.Grants(t.Context(), k.Username, k.Resource)
		require.NoError(t, err)
		assert.Equal(t, want, batch[i], "key %d: %+v", i, k)
		if want.User != nil {
			seen++
		}
	}
	assert.Equal(t, 9, seen, "the keys with a user row of their own") // the test reads real rows

	_, err = st.GrantsBatch(t.Context(), []store.GrantsKey{{Username: "alice", Resource: store.Resource{Kind: "dataset", ID: "1"}}})
	require.ErrorContains(t, err, `unknown resource kind "dataset"`)
}
