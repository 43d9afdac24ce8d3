//go:build vm

package nvme

import (
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestWithoutNativeMultipath reloads nvme_core with multipath=N (and back afterwards), which
// needs a quiet kernel: no controller and no nvmet object left by another test.
func TestWithoutNativeMultipath(t *testing.T) {
	in := &nvme.Initiator{}
	if ctrls, err := in.Controllers(""); err != nil || len(ctrls) != 0 {
		t.Fatalf("controllers left by other tests: %+v, %v", ctrls, err)
	}
	vmenv.ReloadNVMe(t, "N")
	t.Cleanup(func() { vmenv.ReloadNVMe(t, "Y") })
	if in.MultipathEnabled() {
		t.Fatal("MultipathEnabled after loading nvme_core multipath=N")
	}

	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 32, portal{"tcp", vmtest.PortalA}, portal{"tcp", vmtest.PortalB})
	var ctrls []string
	for _, addr := range []string{vmtest.PortalA, vmtest.PortalB} {
		c, err := in.Connect(vmenv.Context(t, time.Minute), connectOptions(id, tg, nvme.TransportTCP, addr))
		if err != nil {
			t.Fatal(err)
		}
		ctrls = append(ctrls, c)
	}
	// Each controller gets its own visible device for the namespace; no hidden paths.
	var visible, hidden []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		visible, hidden, err = in.NamespaceDevices(tg.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if len(visible) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(visible) != 2 || len(hidden) != 0 {
		t.Fatalf("devices %v, hidden %v; want one visible device per controller %v", visible, hidden, ctrls)
	}
	t.Logf("controllers %v, devices %v", ctrls, visible)
	for _, d := range visible {
		if err := in.VerifyDevice(d, tg.NQN, tg.UUID); err != nil {
			t.Error(err)
		}
	}
	dev, err := in.FindNamespace(tg.NQN, tg.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/dev/" + visible[0]; dev != want {
		t.Errorf("FindNamespace = %s, want the first live controller's %s", dev, want)
	}
	if err := in.Disconnect(vmenv.Context(t, 30*time.Second), tg.NQN); err != nil {
		t.Fatal(err)
	}
	if v, h, err := in.NamespaceDevices(tg.UUID); err != nil || len(v)+len(h) != 0 {
		t.Errorf("after Disconnect: %v %v remain (%v)", v, h, err)
	}
}
