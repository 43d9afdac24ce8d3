// Package manifests renders nvmeof-csi's Kubernetes manifests (the kustomize base and
// overlays, the Helm chart) in-process and decodes every object strictly into the real API
// types. Its tests check the two agree and that the manifests agree with the binaries they
// run. It is a separate Go module so that Helm, kustomize and the Kubernetes API types stay
// out of the driver's go.mod.
package manifests
