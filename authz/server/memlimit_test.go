package server

import (
	"os"
	"runtime/debug"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCgroupMemoryLimit(t *testing.T) {
	tests := []struct {
		name  string
		files fstest.MapFS
		want  int64
	}{
		{name: "cgroup v2 limit", files: fstest.MapFS{"memory.max": {Data: []byte("402653184\n")}}, want: 402653184},
		{name: "cgroup v2 unlimited", files: fstest.MapFS{"memory.max": {Data: []byte("max\n")}}},
		{name: "cgroup v1 limit", files: fstest.MapFS{"memory/memory.limit_in_bytes": {Data: []byte("402653184\n")}}, want: 402653184},
		{name: "cgroup v1 unlimited", files: fstest.MapFS{"memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")}}},
		{name: "v2 wins over v1", files: fstest.MapFS{"memory.max": {Data: []byte("1000")}, "memory/memory.limit_in_bytes": {Data: []byte("2000")}}, want: 1000},
		{name: "garbage", files: fstest.MapFS{"memory.max": {Data: []byte("lots")}}},
		{name: "no cgroup", files: fstest.MapFS{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, cgroupMemoryLimit(tt.files))
		})
	}
}

func TestSetGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	t.Setenv("GOGC", "150")
	assert.Equal(t, 0, SetGCPercent(), "GOGC in the environment wins")
	assert.Equal(t, 100, debug.SetGCPercent(100), "left as it was")

	require.NoError(t, os.Unsetenv("GOGC")) // t.Setenv restores it after the test
	assert.Equal(t, DefaultGCPercent, SetGCPercent())
	assert.Equal(t, DefaultGCPercent, debug.SetGCPercent(100), "set")
}
