//go:build vm

package nvme

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// A deliberately small nvmet target set up directly through configfs, so that these tests
// exercise the initiator against the real kernel without depending on the target package.

const nvmetRoot = "/sys/kernel/config/nvmet"

// portal is one nvmet port to export the subsystem on.
type portal struct{ trtype, traddr string }

// target is one subsystem with namespace 1 backed by a loop device on the scratch disk.
type target struct {
	NQN  string
	UUID string // namespace UUID (device_uuid)
	Loop string // /dev/loopN
}

var serial atomic.Int64

// newTarget exports a fresh sizeMiB loop device as namespace 1 of a new subsystem that only
// allows hostNQN, on every portal given. Everything is removed again when the test ends, and
// any controller still connected to it is disconnected first.
func newTarget(t *testing.T, hostNQN string, sizeMiB int64, portals ...portal) *target {
	t.Helper()
	n := serial.Add(1)
	tg := &target{
		NQN:  fmt.Sprintf("nqn.2024-01.io.nvmeof-csi.test:%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), n),
		UUID: vmenv.NewUUID(t),
	}
	tg.Loop = vmenv.Loop(t, fmt.Sprintf("nvme-test-%d", n), fmt.Sprintf("%dM", sizeMiB))

	subsys := filepath.Join(nvmetRoot, "subsystems", tg.NQN)
	ns := filepath.Join(subsys, "namespaces", "1")
	mkdir(t, subsys)
	write(t, filepath.Join(subsys, "attr_allow_any_host"), "0")
	mkdir(t, ns)
	write(t, filepath.Join(ns, "device_path"), tg.Loop)
	write(t, filepath.Join(ns, "device_uuid"), tg.UUID)
	write(t, filepath.Join(ns, "enable"), "1")
	t.Cleanup(func() { os.WriteFile(filepath.Join(ns, "enable"), []byte("0"), 0) })
	allowHost(t, tg.NQN, hostNQN)
	for _, p := range portals {
		id := strconv.FormatInt(serial.Add(1), 10)
		dir := filepath.Join(nvmetRoot, "ports", id)
		mkdir(t, dir)
		write(t, filepath.Join(dir, "addr_trtype"), p.trtype)
		write(t, filepath.Join(dir, "addr_adrfam"), "ipv4")
		write(t, filepath.Join(dir, "addr_traddr"), p.traddr)
		write(t, filepath.Join(dir, "addr_trsvcid"), "4420")
		symlink(t, subsys, filepath.Join(dir, "subsystems", tg.NQN))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := (&nvme.Initiator{}).Disconnect(ctx, tg.NQN); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return tg
}

// allowHost adds hostNQN to the subsystem's allowed hosts, creating the host entry.
func allowHost(t *testing.T, subsysNQN, hostNQN string) {
	t.Helper()
	host := filepath.Join(nvmetRoot, "hosts", hostNQN)
	if _, err := os.Stat(host); err != nil {
		mkdir(t, host)
	}
	symlink(t, host, filepath.Join(nvmetRoot, "subsystems", subsysNQN, "allowed_hosts", hostNQN))
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(link); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func write(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		t.Fatalf("%s = %q: %v", path, value, err)
	}
}

// newIdentity creates a host identity of its own for a test: the kernel pairs each host ID
// with a single host NQN, so tests must not mix them.
func newIdentity(t *testing.T) nvme.Identity {
	t.Helper()
	id, err := nvme.LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func connectOptions(id nvme.Identity, tg *target, transport, addr string) nvme.ConnectOptions {
	return nvme.ConnectOptions{
		Transport: transport, Address: addr, SubsysNQN: tg.NQN,
		HostNQN: id.HostNQN, HostID: id.HostID,
		CtrlLossTmo: 30, ReconnectDelay: 2, KeepAliveTmo: 5,
	}
}
