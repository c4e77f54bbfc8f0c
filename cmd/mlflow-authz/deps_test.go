package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBinaryLinksNoTestCode: the production binary must not link package
// testing, nor the test kits that pull it in (testify, httptest, ours):
// their flags and init code have no place in a service.
func TestBinaryLinksNoTestCode(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH")
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", "github.com/mlflow-authz/mlflow-authz/cmd/...").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/mlflow-authz/mlflow-authz/cmd/mlflow-authz")
	for _, pkg := range deps {
		forbidden := pkg == "testing" || strings.HasPrefix(pkg, "testing/") ||
			pkg == "net/http/httptest" ||
			strings.HasPrefix(pkg, "github.com/stretchr/testify/") ||
			(strings.HasPrefix(pkg, "github.com/mlflow-authz/mlflow-authz/") && strings.HasSuffix(pkg, "test"))
		assert.False(t, forbidden, "./cmd/... links %s", pkg)
	}
}
