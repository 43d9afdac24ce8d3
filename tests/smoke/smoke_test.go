//go:build vm

package smoke

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const subsysPrefix = "nqn.2026-11.io.nvmeof-csi:smoke-"

// TestExportMountOverTCP exports a thin LV over NVMe/TCP and drives it end to end from the
// initiator side of the same kernel.
func TestExportMountOverTCP(t *testing.T) {
	exportMountRoundTrip(t, "tcp", 1, "smoketcp")
}

// TestExportMountOverRDMA does the same over NVMe/RDMA on Soft-RoCE.
func TestExportMountOverRDMA(t *testing.T) {
	exportMountRoundTrip(t, "rdma", 2, "smokerdma")
}

func exportMountRoundTrip(t *testing.T, trtype string, portID int, vg string) {
	dev := thinLV(t, vg, "256M")
	nqn := subsysPrefix + vg
	nsUUID := vmenv.NewUUID(t)
	h := newHost(t)
	export(t, portID, trtype, vmtest.PortalA, nqn, dev, nsUUID, h)

	ctrl, err := connect(trtype, vmtest.PortalA, nqn, h)
	if err != nil {
		t.Fatalf("connect over %s: %v", trtype, err)
	}
	connected := true
	t.Cleanup(func() {
		if connected {
			writeAttr(t, filepath.Join("/sys/class/nvme", ctrl, "delete_controller"), "1")
		}
	})
	if got := readAttr(filepath.Join("/sys/class/nvme", ctrl, "transport")); got != trtype {
		t.Fatalf("controller %s transport = %q, want %q", ctrl, got, trtype)
	}
	nsDev := waitNamespace(t, nqn, nsUUID)
	t.Logf("%s: controller %s, namespace %s", trtype, ctrl, nsDev)

	vmenv.Run(t, "mkfs.ext4", "-q", "-F", nsDev)
	mnt := t.TempDir()
	if err := syscall.Mount(nsDev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", nsDev, err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			syscall.Unmount(mnt, 0)
		}
	})

	want := make([]byte, 1<<20)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(mnt, "data")
	if err := os.WriteFile(file, want, 0o644); err != nil {
		t.Fatalf("write through %s: %v", trtype, err)
	}
	// Drop the page cache so the read-back really crosses the fabric.
	syscall.Sync()
	writeAttr(t, "/proc/sys/vm/drop_caches", "3")
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("data read back differs from data written")
	}

	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	mounted = false
	disconnect(t, ctrl)
	connected = false
	if _, err := findNamespace(nqn, nsUUID); err == nil {
		t.Fatal("namespace still visible after disconnect")
	}
}

// TestUnknownHostIsRefused proves attr_allow_any_host=0 with allowed_hosts fences a volume:
// a host NQN that is not allowed cannot connect, and no controller appears.
func TestUnknownHostIsRefused(t *testing.T) {
	dev := thinLV(t, "smokefence", "64M")
	nqn := subsysPrefix + "fence"
	nsUUID := vmenv.NewUUID(t)
	allowed, stranger := newHost(t), newHost(t)
	export(t, 3, "tcp", vmtest.PortalB, nqn, dev, nsUUID, allowed)

	before, _ := filepath.Glob("/sys/class/nvme/nvme*")
	ctrl, err := connect("tcp", vmtest.PortalB, nqn, stranger)
	if err == nil {
		disconnect(t, ctrl)
		t.Fatalf("host %s not in allowed_hosts connected as %s", stranger.nqn, ctrl)
	}
	t.Logf("refused as expected: %v", err)
	after, _ := filepath.Glob("/sys/class/nvme/nvme*")
	if len(after) != len(before) {
		t.Fatalf("controllers before %v, after the refused connect %v", before, after)
	}
	if _, err := findNamespace(nqn, nsUUID); err == nil {
		t.Fatal("namespace visible to a refused host")
	}

	// The allowed host still gets in: the refusal was about identity, not a broken export.
	ctrl, err = connect("tcp", vmtest.PortalB, nqn, allowed)
	if err != nil {
		t.Fatalf("allowed host refused: %v", err)
	}
	waitNamespace(t, nqn, nsUUID)
	disconnect(t, ctrl)
}
