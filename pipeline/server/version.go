package server

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Build describes the running binary, as `fastflow --version` prints it
// and /metrics exports it (fastflow_build_info, the Prometheus
// convention of prometheus_build_info): the module version (a release
// tag with `go install ...@vX`, "devel" when built from a checkout), the
// VCS revision the go command stamped (empty with -buildvcs=false), with
// "-dirty" when the tree had changes, and the Go version.
type Build struct {
	Version, Revision, GoVersion string
}

// ReadBuild reads the running binary's build information.
func ReadBuild() Build {
	b := Build{Version: "devel", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		b.Version = v
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(b.Revision) > 12 {
		b.Revision = b.Revision[:12]
	}
	if dirty && b.Revision != "" {
		b.Revision += "-dirty"
	}
	return b
}

// String is the one line `fastflow --version` prints after the name.
func (b Build) String() string {
	var s strings.Builder
	s.WriteString(b.Version)
	if b.Revision != "" {
		s.WriteString(" (" + b.Revision + ")")
	}
	s.WriteString(" " + b.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH)
	return s.String()
}
