//go:build tools

// Package tools pins the etcd server main package so `go mod tidy` keeps
// go.sum complete for hack/build-k8s.sh.
package tools

import _ "go.etcd.io/etcd/server/v3"
