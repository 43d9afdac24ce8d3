// Package e2e is the Kubernetes tier (make test-k8s): a one-node cluster inside the test VM
// (package cluster) runs the driver from its own image and manifests (the e2e overlay of
// deploy/kubernetes) with the real CSI sidecars; the tests go through the Kubernetes API as a
// platform team would, then run the Kubernetes external-storage suite (e2e.test) against it.
//
// This is its own Go module so that Kubernetes never enters the driver's go.mod. The binaries
// and images come from hack/build-k8s.sh and hack/build-images.sh.
package e2e
