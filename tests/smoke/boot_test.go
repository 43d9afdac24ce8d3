//go:build vm

package smoke

import (
	"os"
	"testing"
)

func TestGuestHasNVMeFabrics(t *testing.T) {
	for _, p := range []string{"/dev/nvme-fabrics", "/sys/kernel/config/nvmet/subsystems"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
