package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set at build time (the Dockerfile does):
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)"
//
// Left unset, they come from the module and VCS data Go records in the
// binary, so `go install …@v1.2.3` and a build in a git checkout still say
// what they are.
var (
	version = ""
	commit  = ""
)

// buildInfo is what `mlflow-authz version` prints.
type buildInfo struct {
	Version, Commit, GoVersion string
}

// currentBuild resolves the build's identity: the ldflags values first,
// then what Go recorded, then "dev" / "unknown".
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, GoVersion: "unknown"}
	if info, ok := debug.ReadBuildInfo(); ok {
		b = fromBuildInfo(b, info)
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// fromBuildInfo fills what the ldflags left empty from Go's build record.
func fromBuildInfo(b buildInfo, info *debug.BuildInfo) buildInfo {
	b.GoVersion = info.GoVersion
	if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version
	}
	if b.Commit == "" {
		var dirty bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if b.Commit != "" && dirty {
			b.Commit += "-dirty"
		}
	}
	return b
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build's version, commit and Go version",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := currentBuild()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "version: %s\ncommit:  %s\ngo:      %s\n", b.Version, b.Commit, b.GoVersion)
			return err
		},
	}
}
