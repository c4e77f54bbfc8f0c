package mlflow

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// describe names resources in deny messages; quoted names are quoted as %q
// would (strconv.Quote), so that any byte in a name reads unambiguously.
func TestDescribe(t *testing.T) {
	tests := []struct {
		res  store.Resource
		want string
	}{
		{store.Resource{Kind: store.Experiment, ID: "12"}, "experiment 12"},
		{store.Resource{Kind: store.RegisteredModel, ID: `m "1"`}, `registered model "m \"1\""`},
		{store.Resource{Kind: store.Scorer, ID: "3", Name: "tox\nicity"}, `scorer "tox\nicity" of experiment 3`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, describe(tt.res))
	}
}
