//go:build tools

// Package tools pins the main package hack/build-k8s.sh builds, so
// `go mod tidy` keeps go.sum complete.
package tools

import (
	_ "github.com/kubernetes-csi/external-snapshot-metadata/cmd/csi-snapshot-metadata"
)
