//go:build vm

// Package pool runs the one contract suite of pkg/pool/pooltest against every pool backend,
// on the real kernel in the VM.
package pool

import (
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/pooltest"
)

// backends are every backend the suite runs; crash tests' child processes find theirs here.
var backends = []pooltest.Backend{dmthinBackend(), lvmBackend()}

func TestMain(m *testing.M) {
	pooltest.MaybeRunChild(backends...)
	vmtest.Main(m)
}

func TestContract(t *testing.T) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) { pooltest.Run(t, b) })
	}
}
