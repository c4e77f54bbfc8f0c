package server

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestStreamWorkers: the file's 0 turns the workers off, which
// GRPCOptions spells negative (its 0 takes the default).
func TestStreamWorkers(t *testing.T) {
	assert.Equal(t, -1, streamWorkers(0))
	assert.Equal(t, 64, streamWorkers(64))
	assert.Equal(t, 1, streamWorkers(1))
}
