//go:build tools

// Package tools pins the main packages hack/build-k8s.sh builds, so
// `go mod tidy` keeps go.sum complete.
package tools

import (
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter"
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"
)
