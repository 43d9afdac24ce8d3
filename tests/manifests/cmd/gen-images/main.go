// Command gen-images writes the images block of deploy/kubernetes/base/kustomization.yaml
// from the Helm chart (values.yaml sidecars, whose tags repeat versions.env, and Chart.yaml
// appVersion). Run it from anywhere in the repository:
//
//	cd tests/manifests && go run ./cmd/gen-images
package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/nvmeof-csi/nvmeof-csi/tests/manifests"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen-images:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := manifests.RepoRoot()
	if err != nil {
		return err
	}
	path, want, err := manifests.GenerateKustomization(root)
	if err != nil {
		return err
	}
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, want) {
		return nil
	}
	return os.WriteFile(path, want, 0o644)
}
