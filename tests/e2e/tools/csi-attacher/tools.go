//go:build tools

// Package tools pins the main packages hack/build-k8s.sh builds, so
// `go mod tidy` keeps go.sum complete.
package tools

import (
	_ "github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher"
)
