//go:build vm && bench

// Package bench measures the storage engine against the real kernel in the VM and prints the
// tables `make bench` reports: agent operations per backend (p50), how their cost scales with
// the number of volumes in the pool, and what the CSI controller adds to CreateVolume. Figures
// are printed, never asserted: timing varies with the machine (and TCG emulation); ratios
// measured in one run are what compares.
package bench

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestMain(m *testing.M) {
	vmenv.MaybeRunAgent()
	vmtest.Main(m)
}
