//go:build vm

package nvme

import (
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestRescanShowsATargetSideResize(t *testing.T) {
	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 64, portal{"tcp", vmtest.PortalA}, portal{"tcp", vmtest.PortalB})
	in := &nvme.Initiator{}
	for _, addr := range []string{vmtest.PortalA, vmtest.PortalB} {
		if _, err := in.Connect(vmenv.Context(t, time.Minute), connectOptions(id, tg, nvme.TransportTCP, addr)); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := in.WaitNamespace(vmenv.Context(t, 30*time.Second), tg.NQN, tg.UUID, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	// Grow the backing device. nvmet notices only when the host asks (identify namespace).
	vmenv.GrowLoop(t, tg.Loop, "128M")
	time.Sleep(500 * time.Millisecond)
	if size, err := in.DeviceSize(dev); err != nil || size != 64<<20 {
		t.Fatalf("before Rescan: DeviceSize = %d, %v; want still 64 MiB", size, err)
	}
	if err := in.Rescan(dev); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		size, err := in.DeviceSize(dev)
		if err != nil {
			t.Fatal(err)
		}
		if size == 128<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DeviceSize = %d after Rescan, want 128 MiB", size)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
