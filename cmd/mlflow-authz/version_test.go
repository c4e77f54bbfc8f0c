package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionFromBuildInfo(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Version: "v1.4.0"},
		Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.modified", Value: "true"}},
	}
	got := fromBuildInfo(buildInfo{}, info)
	assert.Equal(t, buildInfo{Version: "v1.4.0", Commit: "0123abc-dirty", GoVersion: "go1.26.8"}, got)

	// The ldflags win over what Go recorded.
	got = fromBuildInfo(buildInfo{Version: "v2.0.0", Commit: "fedcba9"}, info)
	assert.Equal(t, buildInfo{Version: "v2.0.0", Commit: "fedcba9", GoVersion: "go1.26.8"}, got)

	// A build from a work tree says (devel): that is no version.
	got = fromBuildInfo(buildInfo{}, &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}})
	assert.Empty(t, got.Version)
}

// The binary built plainly says dev; built as the Dockerfile builds it, it
// says what the ldflags set.
func TestVersionCommand(t *testing.T) {
	out, err := exec.Command(binary, "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "version: dev\n")
	assert.Contains(t, string(out), "go:      "+runtime.Version()+"\n")

	bin := filepath.Join(t.TempDir(), "mlflow-authz")
	// Only the link step differs from TestMain's build, so this is quick;
	// -trimpath and CGO_ENABLED=0 would rebuild every package.
	b, err := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X main.version=v9.8.7 -X main.commit=0123456789abcdef", ".").CombinedOutput()
	require.NoError(t, err, "%s", b)
	out, err = exec.Command(bin, "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "version: v9.8.7\ncommit:  0123456789abcdef\ngo:      "+runtime.Version()+"\n", string(out))
	out, err = exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "mlflow-authz version v9.8.7\n", string(out))
}
