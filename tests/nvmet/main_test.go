//go:build vm

package nvmet

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
)

func TestMain(m *testing.M) { vmtest.Main(m) }
