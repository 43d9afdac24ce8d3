//go:build vm

package nvmet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const (
	prefix  = "nqn.2026-11.io.nvmeof-csi.vmtest:"
	foreign = "nqn.2014-08.org.example:foreign"
	root    = nvmet.DefaultRoot
	uuid1   = "7d4a4c1e-5f0b-4d6a-9c43-1f2e3d4c5b6a"
)

var (
	hostA = hostID{"nqn.2014-08.org.nvmexpress:uuid:a0a0a0a0-1111-4111-8111-000000000001", "a0a0a0a0-1111-4111-8111-000000000001"}
	hostB = hostID{"nqn.2014-08.org.nvmexpress:uuid:b0b0b0b0-2222-4222-8222-000000000002", "b0b0b0b0-2222-4222-8222-000000000002"}
)

// portals are the ports every test here uses: NVMe/TCP on both portals, NVMe/RDMA (Soft-RoCE)
// on the first.
var portals = []nvmet.Port{
	{ID: 1, Transport: nvmet.TransportTCP, Address: vmtest.PortalA},
	{ID: 2, Transport: nvmet.TransportTCP, Address: vmtest.PortalB},
	{ID: 3, Transport: nvmet.TransportRDMA, Address: vmtest.PortalA},
}

// setUp returns a Target with the portals ensured, removing everything it owns when the test
// ends (before the loop devices registered earlier are detached).
func setUp(t *testing.T) *nvmet.Target {
	t.Helper()
	ctx := context.Background()
	tg := &nvmet.Target{Prefix: prefix}
	t.Cleanup(func() {
		subsystems, err := tg.List(ctx)
		if err != nil {
			t.Error(err)
		}
		for _, s := range subsystems {
			if err := tg.RemoveSubsystem(ctx, s.NQN); err != nil {
				t.Error(err)
			}
		}
		for _, p := range portals {
			if err := tg.RemovePort(ctx, p.ID); err != nil {
				t.Error(err)
			}
		}
	})
	for _, p := range portals {
		for range 2 {
			if err := tg.EnsurePort(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tg
}

func TestTargetLifecycleOnTheKernel(t *testing.T) {
	ctx := context.Background()
	dev := vmenv.Loop(t, "nvmet-target", "256M")
	tg := setUp(t)
	vol := nvmet.Subsystem{
		NQN:       prefix + "vol-1",
		Namespace: nvmet.Namespace{DevicePath: dev, UUID: uuid1},
		Hosts:     []string{hostA.nqn},
		Ports:     []uint16{1, 2, 3},
	}
	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}

	step("ports read back as configured", func(t *testing.T) {
		for _, p := range portals {
			dir := filepath.Join(root, "ports", itoa(p.ID))
			for attr, want := range map[string]string{
				"addr_trtype": p.Transport, "addr_adrfam": "ipv4", "addr_traddr": p.Address, "addr_trsvcid": "4420",
				"ana_groups/1/ana_state": "optimized",
			} {
				if got := vmenv.ReadAttr(t, filepath.Join(dir, attr)); got != want {
					t.Errorf("port %d %s = %q, want %q", p.ID, attr, got, want)
				}
			}
		}
	})

	step("an unused port is rewritten", func(t *testing.T) {
		moved := portals[0]
		moved.Address = vmtest.PortalB
		moved.ServiceID = "4430"
		mustDo(t, tg.EnsurePort(ctx, moved))
		if got := vmenv.ReadAttr(t, filepath.Join(root, "ports/1/addr_traddr")); got != vmtest.PortalB {
			t.Errorf("addr_traddr = %s", got)
		}
		mustDo(t, tg.EnsurePort(ctx, portals[0]))
	})

	step("ensure creates the subsystem and is idempotent", func(t *testing.T) {
		want, err := vol.Normalized()
		mustDo(t, err)
		for range 2 {
			mustDo(t, tg.EnsureSubsystem(ctx, vol))
			got, err := tg.List(ctx)
			mustDo(t, err)
			if !reflect.DeepEqual(got, []nvmet.Subsystem{want}) {
				t.Fatalf("List:\n got %+v\nwant %+v", got, want)
			}
		}
	})

	step("a port in use is not rewritten", func(t *testing.T) {
		moved := portals[0]
		moved.Address = vmtest.PortalB
		if err := tg.EnsurePort(ctx, moved); !errors.Is(err, nvmet.ErrPortConflict) {
			t.Fatalf("EnsurePort: %v, want ErrPortConflict", err)
		}
		if got := vmenv.ReadAttr(t, filepath.Join(root, "ports/1/addr_traddr")); got != vmtest.PortalA {
			t.Errorf("addr_traddr = %s", got)
		}
	})

	step("the allowed host connects on every portal and sees the namespace", func(t *testing.T) {
		for _, p := range portals {
			ctrl := mustConnect(t, connectOpts(p.Transport, p.Address, vol.NQN, hostA))
			if got := vmenv.ReadAttr(t, filepath.Join("/sys/class/nvme", ctrl, "subsysnqn")); got != vol.NQN {
				t.Errorf("%s subsysnqn = %s", ctrl, got)
			}
			if got := vmenv.ReadAttr(t, filepath.Join(namespaceDir(t, ctrl), "uuid")); got != uuid1 {
				t.Errorf("%s namespace uuid = %s", ctrl, got)
			}
			disconnect(t, ctrl)
		}
	})

	step("an unlisted host is refused", func(t *testing.T) {
		ctrl, err := connect(connectOpts("tcp", vmtest.PortalA, vol.NQN, hostB))
		if err == nil {
			disconnect(t, ctrl)
			t.Fatal("hostB connected")
		}
		t.Logf("refused as expected: %v", err)
	})

	step("changing hosts lets the new host in and keeps the old one out", func(t *testing.T) {
		old := mustConnect(t, connectOpts("tcp", vmtest.PortalA, vol.NQN, hostA))
		head := headDevice(t, uuid1)
		vol.Hosts = []string{hostB.nqn}
		mustDo(t, tg.EnsureSubsystem(ctx, vol))
		if _, err := os.Stat(filepath.Join(root, "hosts", hostA.nqn)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("hosts/hostA was not collected: %v", err)
		}
		// The kernel checks allowed_hosts only when a controller is created.
		if got := vmenv.ReadAttr(t, filepath.Join("/sys/class/nvme", old, "state")); got != "live" {
			t.Errorf("hostA's existing controller is %s", got)
		}
		vmenv.Run(t, "dd", "if=/dev/"+head, "of=/dev/null", "bs=4096", "count=1", "iflag=direct")
		disconnect(t, old)
		if ctrl, err := connect(connectOpts("tcp", vmtest.PortalA, vol.NQN, hostA)); err == nil {
			disconnect(t, ctrl)
			t.Fatal("hostA connected after it was removed")
		}
		ctrl := mustConnect(t, connectOpts("rdma", vmtest.PortalA, vol.NQN, hostB))
		namespaceDir(t, ctrl)
		disconnect(t, ctrl)
	})

	step("revalidation shows a grown device to a connected host", func(t *testing.T) {
		ctrl := mustConnect(t, connectOpts("tcp", vmtest.PortalB, vol.NQN, hostB))
		head := headDevice(t, uuid1)
		vmenv.GrowLoop(t, dev, "512M")
		mustDo(t, tg.RevalidateNamespace(ctx, vol.NQN, 1))
		waitFor(t, "the host to see 512 MiB", func() bool {
			return vmenv.ReadAttr(t, filepath.Join("/sys/block", head, "size")) == "1048576"
		})
		disconnect(t, ctrl)
	})

	step("a foreign subsystem is neither listed nor touched", func(t *testing.T) {
		dev2 := vmenv.Loop(t, "nvmet-foreign", "64M")
		createForeign(t, dev2)
		before := tree(t, filepath.Join(root, "subsystems", foreign))
		if err := tg.RemoveSubsystem(ctx, foreign); !errors.Is(err, nvmet.ErrForeign) {
			t.Errorf("RemoveSubsystem(foreign): %v, want ErrForeign", err)
		}
		got, err := tg.List(ctx)
		mustDo(t, err)
		if len(got) != 1 || got[0].NQN != vol.NQN {
			t.Errorf("List: %+v", got)
		}
		vol.Hosts = []string{hostA.nqn, hostB.nqn} // hostA is shared with the foreign subsystem
		vol.Ports = []uint16{1}
		mustDo(t, tg.EnsureSubsystem(ctx, vol))
		for range 2 {
			mustDo(t, tg.RemoveSubsystem(ctx, vol.NQN))
		}
		if after := tree(t, filepath.Join(root, "subsystems", foreign)); after != before {
			t.Errorf("foreign subsystem changed:\n%s\nwas:\n%s", after, before)
		}
		for _, path := range []string{"ports/1/subsystems/" + foreign, "hosts/" + hostA.nqn} {
			if _, err := os.Lstat(filepath.Join(root, path)); err != nil {
				t.Errorf("foreign %s: %v", path, err)
			}
		}
		if err := tg.RemovePort(ctx, 1); !errors.Is(err, nvmet.ErrPortConflict) {
			t.Errorf("RemovePort of a port a foreign subsystem uses: %v", err)
		}
		ctrl := mustConnect(t, connectOpts("tcp", vmtest.PortalA, foreign, hostA))
		disconnect(t, ctrl)
		removeForeign(t)
	})

	step("removing everything leaves configfs clean", func(t *testing.T) {
		mustDo(t, tg.RemoveSubsystem(ctx, vol.NQN))
		for _, p := range portals {
			mustDo(t, tg.RemovePort(ctx, p.ID))
			mustDo(t, tg.RemovePort(ctx, p.ID))
		}
		for _, dir := range []string{"subsystems", "ports", "hosts"} {
			if got := listDir(t, filepath.Join(root, dir)); len(got) != 0 {
				t.Errorf("%s: %v", dir, got)
			}
		}
	})
}

// createForeign sets up, by hand, a subsystem another tool might own: namespace on dev, hostA
// allowed, linked to port 1.
func createForeign(t *testing.T, dev string) {
	t.Helper()
	s := filepath.Join(root, "subsystems", foreign)
	t.Cleanup(func() { removeForeign(t) })
	mustDo(t, os.Mkdir(s, 0o755))
	mustDo(t, os.Mkdir(filepath.Join(s, "namespaces", "1"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(s, "namespaces/1/device_path"), []byte(dev), 0))
	mustDo(t, os.WriteFile(filepath.Join(s, "namespaces/1/enable"), []byte("1"), 0))
	mustDo(t, os.Mkdir(filepath.Join(root, "hosts", hostA.nqn), 0o755))
	mustDo(t, os.Symlink(filepath.Join(root, "hosts", hostA.nqn), filepath.Join(s, "allowed_hosts", hostA.nqn)))
	mustDo(t, os.Symlink(s, filepath.Join(root, "ports/1/subsystems", foreign)))
}

// removeForeign undoes createForeign, tolerating parts already gone.
func removeForeign(t *testing.T) {
	s := filepath.Join(root, "subsystems", foreign)
	for _, path := range []string{
		filepath.Join(root, "ports/1/subsystems", foreign),
		filepath.Join(s, "allowed_hosts", hostA.nqn),
		filepath.Join(s, "namespaces/1"),
		s,
		filepath.Join(root, "hosts", hostA.nqn),
	} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleaning up the foreign subsystem: %v", err)
		}
	}
}

// tree renders a configfs subtree (attributes, links, directories) for comparison.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&os.ModeSymlink != 0:
			dest, err := os.Readlink(path)
			b.WriteString(path + " -> " + dest + "\n")
			return err
		case d.IsDir():
			b.WriteString(path + "/\n")
		default:
			if v, err := os.ReadFile(path); err == nil { // write-only attributes are skipped
				b.WriteString(path + " = " + string(v))
			}
		}
		return nil
	})
	mustDo(t, err)
	return b.String()
}

// headDevice waits for the multipath head block device (nvmeXnY) with namespace UUID uuid.
func headDevice(t *testing.T, uuid string) string {
	t.Helper()
	var head string
	waitFor(t, "a block device with UUID "+uuid, func() bool {
		m, _ := filepath.Glob("/sys/block/nvme*n*/uuid")
		for _, path := range m {
			name := filepath.Base(filepath.Dir(path))
			if strings.Contains(strings.TrimPrefix(name, "nvme"), "c") {
				continue // a hidden path device
			}
			if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == uuid {
				head = name
				return true
			}
		}
		return false
	})
	return head
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func itoa(id uint16) string { return strconv.FormatUint(uint64(id), 10) }
