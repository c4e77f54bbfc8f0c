package server

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlflow-authz/mlflow-authz/authz/config"
	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

// TestStreamWorkers: the file's 0 turns the workers off, which
// GRPCOptions spells negative (its 0 takes the default).
func TestStreamWorkers(t *testing.T) {
	assert.Equal(t, -1, streamWorkers(0))
	assert.Equal(t, 64, streamWorkers(64))
	assert.Equal(t, 1, streamWorkers(1))
}

// TestStreamWorkersDefault: the file's default is the library's, which
// config cannot import without pulling gRPC into the manifests module.
func TestStreamWorkersDefault(t *testing.T) {
	assert.Equal(t, extauthz.DefaultStreamWorkers, config.Default().Server.StreamWorkers)
}
