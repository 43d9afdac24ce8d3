// Package version holds the build identity of every nvmeof-csi binary. The variables are set
// at link time with -ldflags "-X github.com/nvmeof-csi/nvmeof-csi/pkg/version.Version=...".
package version

import (
	"fmt"
	"runtime"
)

var (
	// Version is the release, e.g. v0.1.0, or a git describe string.
	Version = "v0.0.0-dev"
	// Commit is the git commit the binary was built from.
	Commit = "unknown"
	// BuildDate is the UTC build time in RFC 3339 form.
	BuildDate = "unknown"
)

// String returns a one-line description of the build for --version and logs.
func String(binary string) string {
	return fmt.Sprintf("%s %s (commit %s, built %s, %s %s/%s)",
		binary, Version, Commit, BuildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
