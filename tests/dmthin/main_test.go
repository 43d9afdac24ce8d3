//go:build vm

// Package dmthin proves pkg/pool/dmthin against the real kernel in the test VM: pools
// formatted over loop devices of the scratch disk, every operation, reopening after Close,
// after Shutdown (a reboot) and after a child process was SIGKILLed at each crash point, with
// thin_check and thin_ls as the oracle of the thin metadata.
package dmthin

import (
	"os"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
)

func TestMain(m *testing.M) {
	maybeRunChild() // a child process started by runChild does its operation and exits
	vmtest.Main(m)
	os.Exit(0)
}
