//go:build vm

// Package node drives the real CSI Node service (pkg/csi/node over *nvme.Initiator and
// pkg/mounter) against the real kernel in the test VM: volumes are exported with pkg/nvmet
// from loop devices on the scratch disk, and the tests call the Node's RPC methods in
// process with CSI requests, using temporary directories as staging and target paths.
package node

import (
	"flag"
	"os"
	"testing"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
)

func TestMain(m *testing.M) { vmtest.Main(m) }

// NVMEOF_KLOG_V raises klog's verbosity (e.g. 4 shows every command mount-utils runs).
func init() {
	if v := os.Getenv("NVMEOF_KLOG_V"); v != "" {
		fs := flag.NewFlagSet("klog", flag.ExitOnError)
		klog.InitFlags(fs)
		_ = fs.Set("v", v)
	}
}
