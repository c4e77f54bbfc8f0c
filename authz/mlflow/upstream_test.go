package mlflow

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlflow-authz/mlflow-authz/authz"
)

type fixedUpstream struct{}

func (fixedUpstream) Headers(*authz.Request, *authz.Identity) ([]authz.Header, []string) {
	return []authz.Header{{Name: "x-authz-user", Value: "alice"}}, []string{"x-authz-groups"}
}

func TestUpstreamStripsWorkspace(t *testing.T) {
	up := Upstream(fixedUpstream{}, false)
	set, remove := up.Headers(&authz.Request{Headers: map[string]string{"x-mlflow-workspace": "team-b"}}, authz.Anonymous)
	assert.Equal(t, []authz.Header{{Name: "x-authz-user", Value: "alice"}}, set)
	assert.Equal(t, []string{"x-authz-groups", "x-mlflow-workspace"}, remove)

	set, remove = up.Headers(&authz.Request{Headers: map[string]string{}}, authz.Anonymous)
	assert.Len(t, set, 1)
	assert.Equal(t, []string{"x-authz-groups"}, remove, "nothing extra to remove when the client sent no workspace")
}

func TestUpstreamPassesWorkspaceWhenOn(t *testing.T) {
	up := Upstream(fixedUpstream{}, true)
	set, remove := up.Headers(&authz.Request{Headers: map[string]string{"x-mlflow-workspace": "team-b"}}, authz.Anonymous)
	assert.Equal(t, []authz.Header{{Name: "x-authz-user", Value: "alice"}}, set)
	assert.Equal(t, []string{"x-authz-groups"}, remove, "MLflow must act in the workspace we decided in")
}
