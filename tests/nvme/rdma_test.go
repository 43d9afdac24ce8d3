//go:build vm

package nvme

import (
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestConnectRDMAOverSoftRoCE(t *testing.T) {
	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 32, portal{"rdma", vmtest.PortalA})
	in := &nvme.Initiator{}
	opts := connectOptions(id, tg, nvme.TransportRDMA, vmtest.PortalA)
	ctrl, err := in.Connect(vmenv.Context(t, time.Minute), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctrls, err := in.Controllers(tg.NQN)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrls) != 1 || ctrls[0].Name != ctrl || ctrls[0].Transport != "rdma" || ctrls[0].Address != vmtest.PortalA {
		t.Fatalf("Controllers = %+v, want %s over rdma to %s", ctrls, ctrl, vmtest.PortalA)
	}
	if again, err := in.Connect(vmenv.Context(t, time.Minute), opts); err != nil || again != ctrl {
		t.Errorf("second Connect = %q, %v; want %q", again, err, ctrl)
	}
	dev, err := in.WaitNamespace(vmenv.Context(t, 30*time.Second), tg.NQN, tg.UUID, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.VerifyDevice(dev, tg.NQN, tg.UUID); err != nil {
		t.Error(err)
	}
	if err := in.Disconnect(vmenv.Context(t, 30*time.Second), tg.NQN); err != nil {
		t.Fatal(err)
	}
}
