//go:build vm

package nvmet

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// The fake configfs the unit tests use passes the same check (pkg/nvmet/nvmettest).
func TestKernelConfigfsHasTheSemanticsTheFakeModels(t *testing.T) {
	dev := vmenv.Loop(t, "nvmet-semantics", "64M")
	if err := nvmettest.CheckSemantics(nvmet.OSFS{}, nvmet.DefaultRoot, dev, vmtest.PortalA); err != nil {
		t.Fatal(err)
	}
}
