//go:build vm

package tcp_test

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

// TestSanityTCP runs the full csi-sanity suite over NVMe/TCP.
func TestSanityTCP(t *testing.T) { sanity.Run(t, "tcp", 1) }
