//go:build vm

package metrics_test

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestMain(m *testing.M) {
	vmenv.MaybeRunAgent()
	vmtest.Main(m)
}
