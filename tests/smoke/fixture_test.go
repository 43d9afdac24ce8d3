//go:build vm

package smoke

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// These helpers are deliberately small and local: the smoke tests prove the kernel pieces work
// before any driver logic exists.

const nvmetRoot = "/sys/kernel/config/nvmet"

// host is an initiator identity: the kernel ties each hostid to one hostnqn.
type host struct{ nqn, id string }

func newHost(t *testing.T) host {
	id := vmenv.NewUUID(t)
	return host{nqn: "nqn.2014-08.org.nvmexpress:uuid:" + id, id: id}
}

// thinLV creates a loop-backed volume group with a thin pool and one thin LV in it, and
// returns the LV's device path. Everything is removed when the test ends.
func thinLV(t *testing.T, vg string, size string) string {
	t.Helper()
	img := filepath.Join(os.Getenv("NVMEOF_VM_SCRATCH"), vg+".img")
	vmenv.Run(t, "truncate", "-s", "2G", img)
	loop := vmenv.Run(t, "losetup", "-f", "--show", img)
	t.Cleanup(func() {
		_, _ = vmenv.RunE("vgremove", "-f", vg)
		_, _ = vmenv.RunE("losetup", "-d", loop)
		os.Remove(img)
	})
	vmenv.Run(t, "pvcreate", "-q", loop)
	vmenv.Run(t, "vgcreate", "-q", vg, loop)
	vmenv.Run(t, "lvcreate", "-q", "--type", "thin-pool", "-l", "90%FREE", "-n", "pool", vg)
	vmenv.Run(t, "lvcreate", "-q", "-V", size, "-T", vg+"/pool", "-n", "vol")
	dev := "/dev/" + vg + "/vol"
	if _, err := os.Stat(dev); err != nil {
		t.Fatalf("thin LV has no device node: %v", err)
	}
	return dev
}

func writeAttr(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatalf("write %s=%q: %v", path, value, err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// export publishes dev as namespace 1 (with nsUUID) of subsystem nqn on a new nvmet port,
// allowing exactly the given host. The configfs objects are removed when the test ends.
func export(t *testing.T, portID int, trtype, addr, nqn, dev, nsUUID string, allowed host) {
	t.Helper()
	port := filepath.Join(nvmetRoot, "ports", strconv.Itoa(portID))
	subsys := filepath.Join(nvmetRoot, "subsystems", nqn)
	hostDir := filepath.Join(nvmetRoot, "hosts", allowed.nqn)
	t.Cleanup(func() {
		os.Remove(filepath.Join(port, "subsystems", nqn))
		os.Remove(filepath.Join(subsys, "allowed_hosts", allowed.nqn))
		os.WriteFile(filepath.Join(subsys, "namespaces", "1", "enable"), []byte("0"), 0o644)
		os.Remove(filepath.Join(subsys, "namespaces", "1"))
		os.Remove(subsys)
		os.Remove(hostDir)
		os.Remove(port)
	})

	mkdir(t, subsys)
	writeAttr(t, filepath.Join(subsys, "attr_allow_any_host"), "0")
	ns := filepath.Join(subsys, "namespaces", "1")
	mkdir(t, ns)
	writeAttr(t, filepath.Join(ns, "device_path"), dev)
	writeAttr(t, filepath.Join(ns, "device_uuid"), nsUUID)
	writeAttr(t, filepath.Join(ns, "enable"), "1")
	mkdir(t, hostDir)
	symlink(t, hostDir, filepath.Join(subsys, "allowed_hosts", allowed.nqn))

	mkdir(t, port)
	writeAttr(t, filepath.Join(port, "addr_trtype"), trtype)
	writeAttr(t, filepath.Join(port, "addr_adrfam"), "ipv4")
	writeAttr(t, filepath.Join(port, "addr_traddr"), addr)
	writeAttr(t, filepath.Join(port, "addr_trsvcid"), "4420")
	symlink(t, subsys, filepath.Join(port, "subsystems", nqn))
}

// connect writes an option string to /dev/nvme-fabrics and returns the new controller's name
// from the kernel's "instance=N,cntlid=M" answer.
func connect(trtype, addr, nqn string, h host) (string, error) {
	f, err := os.OpenFile("/dev/nvme-fabrics", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	opts := fmt.Sprintf("nqn=%s,transport=%s,traddr=%s,trsvcid=4420,hostnqn=%s,hostid=%s,ctrl_loss_tmo=5,reconnect_delay=1",
		nqn, trtype, addr, h.nqn, h.id)
	if _, err := f.Write([]byte(opts)); err != nil {
		return "", err
	}
	buf := make([]byte, 128)
	n, err := f.Read(buf)
	if err != nil {
		return "", fmt.Errorf("reading the connect answer: %w", err)
	}
	for _, kv := range strings.Split(strings.TrimSpace(string(buf[:n])), ",") {
		if v, ok := strings.CutPrefix(kv, "instance="); ok {
			return "nvme" + v, nil
		}
	}
	return "", fmt.Errorf("unexpected connect answer %q", buf[:n])
}

func readAttr(path string) string {
	raw, _ := os.ReadFile(path)
	return strings.TrimSpace(string(raw))
}

// findNamespace returns the block device of the namespace whose subsystem NQN and UUID match.
// Hidden multipath path devices (nvmeXcYnZ) are never returned.
func findNamespace(nqn, nsUUID string) (string, error) {
	subsystems, _ := filepath.Glob("/sys/class/nvme-subsystem/*")
	for _, s := range subsystems {
		if readAttr(filepath.Join(s, "subsysnqn")) != nqn {
			continue
		}
		entries, _ := os.ReadDir(s)
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, "nvme") || !strings.Contains(name, "n") || strings.Contains(name[4:], "c") {
				continue
			}
			if readAttr(filepath.Join(s, name, "uuid")) == nsUUID {
				return "/dev/" + name, nil
			}
		}
	}
	return "", errors.New("namespace not found")
}

func waitNamespace(t *testing.T, nqn, nsUUID string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		dev, err := findNamespace(nqn, nsUUID)
		if err == nil {
			return dev
		}
		if time.Now().After(deadline) {
			t.Fatalf("no namespace with UUID %s of %s after 30s", nsUUID, nqn)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// disconnect deletes the controller and waits until sysfs no longer shows it.
func disconnect(t *testing.T, ctrl string) {
	t.Helper()
	sys := filepath.Join("/sys/class/nvme", ctrl)
	writeAttr(t, filepath.Join(sys, "delete_controller"), "1")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sys); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller %s still in sysfs 30s after delete_controller", ctrl)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
