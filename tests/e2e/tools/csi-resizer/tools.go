//go:build tools

// Package tools pins the main packages hack/build-k8s.sh builds, so
// `go mod tidy` keeps go.sum complete.
package tools

import (
	_ "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer"
)
