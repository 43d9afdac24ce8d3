package manifests

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
)

// MainModule is the module path of the driver.
const MainModule = "github.com/nvmeof-csi/nvmeof-csi"

// RepoRoot finds the driver's repository root: the nearest directory above the working
// directory whose go.mod declares MainModule.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(mod, []byte("module "+MainModule+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of module " + MainModule + " above the working directory")
		}
		dir = parent
	}
}

// Paths of the deploy tree, relative to the repository root.
const (
	KustomizeBase    = "deploy/kubernetes/base"
	KustomizeExample = "deploy/kubernetes/overlays/example"
	KustomizeE2E     = "deploy/kubernetes/overlays/e2e"
	Examples         = "deploy/kubernetes/examples"
	Chart            = "deploy/helm/nvmeof-csi"
	ChartExample     = "deploy/helm/nvmeof-csi/ci/example-values.yaml"
	// ChartSnapshotMetadata turns the external-snapshot-metadata sidecar on.
	ChartSnapshotMetadata = "deploy/helm/nvmeof-csi/ci/snapshot-metadata-values.yaml"
)
