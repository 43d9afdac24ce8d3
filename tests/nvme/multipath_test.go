//go:build vm

package nvme

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestTwoPortalsMergeIntoOneMultipathHead(t *testing.T) {
	in := &nvme.Initiator{}
	if !in.MultipathEnabled() {
		t.Fatal("native multipath is off in the guest; this test needs the kernel default")
	}
	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 64, portal{"tcp", vmtest.PortalA}, portal{"tcp", vmtest.PortalB})
	a, err := in.Connect(vmenv.Context(t, time.Minute), connectOptions(id, tg, nvme.TransportTCP, vmtest.PortalA))
	if err != nil {
		t.Fatal(err)
	}
	b, err := in.Connect(vmenv.Context(t, time.Minute), connectOptions(id, tg, nvme.TransportTCP, vmtest.PortalB))
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("both portals gave controller %s", a)
	}
	dev, err := in.WaitNamespace(vmenv.Context(t, 30*time.Second), tg.NQN, tg.UUID, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.VerifyDevice(dev, tg.NQN, tg.UUID); err != nil {
		t.Error(err)
	}

	// Both paths show up as hidden devices; only the head is visible.
	var heads, paths []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		heads, paths, err = in.NamespaceDevices(tg.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(heads) != 1 || "/dev/"+heads[0] != dev || len(paths) != 2 {
		t.Fatalf("visible devices %v, hidden paths %v; want the head %s and two paths", heads, paths, dev)
	}
	t.Logf("head %s, paths %v, controllers %s and %s", dev, paths, a, b)
	// The head's subsystem links both controllers.
	for _, c := range []string{a, b} {
		if _, err := os.Stat(filepath.Join("/sys/class/block", heads[0], "device", c)); err != nil {
			t.Errorf("head's subsystem does not link %s: %v", c, err)
		}
	}
	ctrls, err := in.Controllers(tg.NQN)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, c := range ctrls {
		addrs = append(addrs, c.Address)
	}
	if strings.Join(addrs, ",") != vmtest.PortalA+","+vmtest.PortalB {
		t.Errorf("controller addresses %v, want %s and %s", addrs, vmtest.PortalA, vmtest.PortalB)
	}

	if err := in.Disconnect(vmenv.Context(t, 30*time.Second), tg.NQN); err != nil {
		t.Fatal(err)
	}
	if heads, paths, err := in.NamespaceDevices(tg.UUID); err != nil || len(heads)+len(paths) != 0 {
		t.Errorf("after Disconnect: devices %v, paths %v remain (%v)", heads, paths, err)
	}
}
