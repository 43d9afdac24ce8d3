//go:build vm

package nvme

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func TestConnectTCPFindVerifyDisconnect(t *testing.T) {
	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 64, portal{"tcp", vmtest.PortalA})
	in := &nvme.Initiator{}
	opts := connectOptions(id, tg, nvme.TransportTCP, vmtest.PortalA)
	opts.CtrlLossTmo, opts.ReconnectDelay, opts.KeepAliveTmo, opts.NrIOQueues = 30, 3, 7, 1

	start := time.Now()
	ctrl, err := in.Connect(vmenv.Context(t, time.Minute), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("connected %s in %s", ctrl, time.Since(start).Round(time.Millisecond))

	// The kernel applied every option we sent.
	sys := filepath.Join("/sys/class/nvme", ctrl)
	for name, want := range map[string]string{
		"ctrl_loss_tmo": "30", "reconnect_delay": "3", "kato": "7", "queue_count": "2", // 1 I/O + admin
		"hostnqn": id.HostNQN, "hostid": id.HostID, "subsysnqn": tg.NQN, "transport": "tcp",
	} {
		if got := vmenv.ReadAttr(t, filepath.Join(sys, name)); got != want {
			t.Errorf("%s/%s = %q, want %q", ctrl, name, got, want)
		}
	}
	ctrls, err := in.Controllers(tg.NQN)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrls) != 1 || ctrls[0].Name != ctrl || ctrls[0].Address != vmtest.PortalA || ctrls[0].ServiceID != "4420" ||
		ctrls[0].Transport != "tcp" || ctrls[0].HostNQN != id.HostNQN || ctrls[0].State != "live" {
		t.Errorf("Controllers = %+v, want only live %s over tcp to %s:4420", ctrls, ctrl, vmtest.PortalA)
	}

	dev, err := in.WaitNamespace(vmenv.Context(t, 30*time.Second), tg.NQN, tg.UUID, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace %s is %s", tg.UUID, dev)
	if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		t.Errorf("%s is not a block device: %v, %v", dev, fi, err)
	}
	if err := in.VerifyDevice(dev, tg.NQN, tg.UUID); err != nil {
		t.Errorf("VerifyDevice: %v", err)
	}
	if err := in.VerifyDevice(dev, tg.NQN, vmenv.NewUUID(t)); !errors.Is(err, nvme.ErrWrongDevice) {
		t.Errorf("VerifyDevice(other UUID) = %v, want ErrWrongDevice", err)
	}
	if err := in.VerifyDevice(dev, tg.NQN+"x", tg.UUID); !errors.Is(err, nvme.ErrWrongDevice) {
		t.Errorf("VerifyDevice(other NQN) = %v, want ErrWrongDevice", err)
	}
	if size, err := in.DeviceSize(dev); err != nil || size != 64<<20 {
		t.Errorf("DeviceSize = %d, %v; want 64 MiB", size, err)
	}

	// Connecting again reuses the controller.
	again, err := in.Connect(vmenv.Context(t, time.Minute), opts)
	if err != nil || again != ctrl {
		t.Errorf("second Connect = %q, %v; want %q", again, err, ctrl)
	}
	if ctrls, _ := in.Controllers(tg.NQN); len(ctrls) != 1 {
		t.Errorf("%d controllers after connecting twice, want 1", len(ctrls))
	}

	if err := in.Disconnect(vmenv.Context(t, 30*time.Second), tg.NQN); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sys); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still in sysfs after Disconnect: %v", sys, err)
	}
	if ctrls, _ := in.Controllers(tg.NQN); len(ctrls) != 0 {
		t.Errorf("Controllers after Disconnect = %+v", ctrls)
	}
	if _, err := in.FindNamespace(tg.NQN, tg.UUID); !errors.Is(err, nvme.ErrNotFound) {
		t.Errorf("FindNamespace after Disconnect = %v, want ErrNotFound", err)
	}
	if err := in.Disconnect(vmenv.Context(t, 30*time.Second), tg.NQN); err != nil {
		t.Errorf("second Disconnect = %v, want nil", err)
	}
}

func TestKernelRefusesADuplicateConnectWithEALREADY(t *testing.T) {
	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 16, portal{"tcp", vmtest.PortalA})
	opts := connectOptions(id, tg, nvme.TransportTCP, vmtest.PortalA)
	if _, err := (&nvme.Initiator{}).Connect(vmenv.Context(t, time.Minute), opts); err != nil {
		t.Fatal(err)
	}
	// An initiator that cannot see sysfs skips its own duplicate check and reaches the
	// kernel's, which is what Connect relies on when two callers race.
	blind := &nvme.Initiator{SysfsRoot: t.TempDir()}
	if _, err := blind.Connect(vmenv.Context(t, time.Minute), opts); !errors.Is(err, syscall.EALREADY) {
		t.Fatalf("duplicate connect error = %v, want EALREADY", err)
	}
}

func TestConcurrentConnectsShareOneController(t *testing.T) {
	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 16, portal{"tcp", vmtest.PortalA})
	in := &nvme.Initiator{}
	opts := connectOptions(id, tg, nvme.TransportTCP, vmtest.PortalA)
	const n = 4
	ctrls := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ctrls[i], errs[i] = in.Connect(vmenv.Context(t, time.Minute), opts) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ctrls[i] != ctrls[0] {
			t.Errorf("Connect %d = %q, %v; Connect 0 = %q", i, ctrls[i], errs[i], ctrls[0])
		}
	}
	if got, _ := in.Controllers(tg.NQN); len(got) != 1 {
		t.Errorf("%d controllers, want 1: %+v", len(got), got)
	}
}

func TestConnectOfAHostTheTargetDoesNotAllowFails(t *testing.T) {
	allowed, stranger := newIdentity(t), newIdentity(t)
	tg := newTarget(t, allowed.HostNQN, 16, portal{"tcp", vmtest.PortalA})
	in := &nvme.Initiator{}
	_, err := in.Connect(vmenv.Context(t, time.Minute), connectOptions(stranger, tg, nvme.TransportTCP, vmtest.PortalA))
	if err == nil {
		t.Fatal("Connect of a host that is not allowed succeeded")
	}
	var errno syscall.Errno
	t.Logf("refused: %v (errno %v: %d)", err, errors.As(err, &errno), errno)
	if got, _ := in.Controllers(tg.NQN); len(got) != 0 {
		t.Errorf("controllers left after a refused connect: %+v", got)
	}
}

func TestConnectWithDHHMACCHAP(t *testing.T) {
	id := newIdentity(t)
	tg := newTarget(t, id.HostNQN, 16, portal{"tcp", vmtest.PortalA})
	secret := vmenv.DHCHAPSecret(t)
	write(t, filepath.Join(nvmetRoot, "hosts", id.HostNQN, "dhchap_key"), secret)
	in := &nvme.Initiator{}
	opts := connectOptions(id, tg, nvme.TransportTCP, vmtest.PortalA)
	if _, err := in.Connect(vmenv.Context(t, time.Minute), opts); err == nil {
		t.Fatal("Connect without the key succeeded")
	}
	opts.DHChapSecret = secret
	ctrl, err := in.Connect(vmenv.Context(t, time.Minute), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitNamespace(vmenv.Context(t, 30*time.Second), tg.NQN, tg.UUID, 20*time.Millisecond); err != nil {
		t.Fatalf("after authenticating as %s: %v", ctrl, err)
	}
}
