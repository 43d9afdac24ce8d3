//go:build vm

package agent_test

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmtest"
)

func TestMain(m *testing.M) {
	vmenv.MaybeRunAgent()
	vmtest.Main(m)
}
