//go:build vm

package lvm

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// newPool makes a volume group on a loop device of sizeMiB with a thin pool over 90% of it
// (vmenv.ThinPool), and removes both when the test ends.
func newPool(t *testing.T, vg string, sizeMiB int64) *lvm.Pool {
	t.Helper()
	start := time.Now()
	dev := vmenv.ThinPool(t, vg, fmt.Sprintf("%dM", sizeMiB))
	t.Logf("loop device and CreatePool on %s (%d MiB): %s", dev, sizeMiB, time.Since(start).Round(time.Millisecond))
	return &lvm.Pool{VG: vg, ThinPool: "pool", Runner: command.Exec{}}
}

// ctx bounds one step of a test.
func ctx(t *testing.T) context.Context { return vmenv.Context(t, 2*time.Minute) }

// mustExist fails the test unless path exists.
func mustExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("device node: %v", err)
	}
}

// step logs how long a step took.
func step(t *testing.T, what string, start time.Time) {
	t.Helper()
	t.Logf("%-40s %s", what, time.Since(start).Round(time.Millisecond))
}
