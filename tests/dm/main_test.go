//go:build vm

// Package dm proves pkg/dm and pkg/dm/thin against the real kernel in the test VM: no
// dmsetup, no LVM, no udev (the guest has none), only the library's own ioctls and nodes.
package dm

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
)

func TestMain(m *testing.M) { vmtest.Main(m) }
