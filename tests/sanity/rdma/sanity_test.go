//go:build vm

package rdma_test

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/sanity"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestMain(m *testing.M) {
	vmenv.MaybeRunAgent()
	vmtest.Main(m)
}

// TestSanityRDMA runs the full csi-sanity suite over NVMe/RDMA on Soft-RoCE.
func TestSanityRDMA(t *testing.T) { sanity.Run(t, "rdma", 2) }
