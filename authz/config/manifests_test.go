package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The Kubernetes manifests ship a configuration; it must load as the
// service would load it, with the database URL from the Secret's env var.
func TestManifestConfigLoads(t *testing.T) {
	data, err := os.ReadFile("../../manifests/config.yaml")
	require.NoError(t, err)
	cfg, err := Parse(data, env(map[string]string{EnvTrackingURL: "postgres://mlflow@db/mlflow"}))
	require.NoError(t, err)
	assert.Equal(t, "postgres", cfg.Store.Driver)

	_, err = Parse(data, env(nil))
	require.Error(t, err, "without the Secret the store has no URL")
	assert.Contains(t, err.Error(), "store.postgres.tracking_url")
}

func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return docs
		} else {
			require.NoError(t, err, path)
		}
		docs = append(docs, d)
	}
}

// Pitfalls from reference/envoy-istio.md that the manifests must avoid.
func TestManifestsAvoidIstioPitfalls(t *testing.T) {
	svc := yamlDocs(t, "../../manifests/service.yaml")[0]
	port := svc["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)
	assert.Equal(t, "grpc", port["name"], "Envoy speaks HTTP/2 only to a port named grpc")

	mesh := yamlDocs(t, "../../manifests/meshconfig-extension-provider.yaml")[0]
	p := mesh["meshConfig"].(map[string]any)["extensionProviders"].([]any)[0].(map[string]any)["envoyExtAuthzGrpc"].(map[string]any)
	assert.NotEmpty(t, p["timeout"], "Istio's default provider timeout is 600s")
	assert.Equal(t, false, p["failOpen"])
	body := p["includeRequestBodyInCheck"].(map[string]any)
	assert.Equal(t, true, body["allowPartialMessage"], "large uploads must not get 413")
	assert.Less(t, body["maxRequestBytes"].(int), Default().Server.MaxRecvMsgSize)
}
