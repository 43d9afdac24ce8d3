//go:build vm

// Package twokernel runs the storage node and the worker in two kernels: a storage VM with
// the agent and its dm-thin pool on its own virtio disks, and a worker VM with the CSI plugin,
// on a private network between the two qemu processes (internal/vmtest's Cluster). The tests
// run on the host and drive both machines with steps; they cut the storage VM's power and the
// link between the machines, which one kernel cannot do to itself. Two tests add a third
// machine: a second worker (fencing a worker that lost power) or a second storage VM
// (placement, and one storage node's loss). The power-cut tests run on both pool backends,
// dmthin and lvm, on different disks of one storage VM.
package twokernel

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestMain(m *testing.M) {
	vmenv.MaybeRunAgent()
	maybeRunSanity()
	vmtest.ClusterMain(m)
}
