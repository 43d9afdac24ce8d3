//go:build vm

package nvmet

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
)

// The fake configfs the unit tests use passes the same check (pkg/nvmet/nvmettest).
func TestKernelConfigfsHasTheSemanticsTheFakeModels(t *testing.T) {
	dev, _ := loopDevice(t, 64<<20)
	if err := nvmettest.CheckSemantics(nvmet.OSFS{}, nvmet.DefaultRoot, dev, vmtest.PortalA); err != nil {
		t.Fatal(err)
	}
}
