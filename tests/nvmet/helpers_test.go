//go:build vm

package nvmet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// connect writes an option string to /dev/nvme-fabrics, as the node plugin will, and returns
// the new controller's name (nvmeN).
func connect(opts string) (string, error) {
	f, err := os.OpenFile("/dev/nvme-fabrics", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write([]byte(opts)); err != nil {
		return "", fmt.Errorf("connect %s: %w", opts, err)
	}
	buf := make([]byte, 256)
	n, err := f.Read(buf)
	if err != nil {
		return "", fmt.Errorf("reading the connect answer: %w", err)
	}
	var instance, cntlid int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(buf[:n])), "instance=%d,cntlid=%d", &instance, &cntlid); err != nil {
		return "", fmt.Errorf("connect answer %q: %w", buf[:n], err)
	}
	return fmt.Sprintf("nvme%d", instance), nil
}

// tcpOpts is the option string for an NVMe/TCP or NVMe/RDMA connection.
func connectOpts(transport, addr, subnqn string, h hostID) string {
	return fmt.Sprintf("transport=%s,traddr=%s,trsvcid=4420,nqn=%s,hostnqn=%s,hostid=%s",
		transport, addr, subnqn, h.nqn, h.id)
}

// hostID is a host identity; the kernel wants a distinct hostid per host NQN.
type hostID struct{ nqn, id string }

// mustConnect connects and deletes the controller when the test ends (if still there).
func mustConnect(t *testing.T, opts string) string {
	t.Helper()
	ctrl, err := connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disconnect(t, ctrl) })
	return ctrl
}

// disconnect deletes controller ctrl and waits until it is gone from sysfs.
func disconnect(t *testing.T, ctrl string) {
	t.Helper()
	dir := filepath.Join("/sys/class/nvme", ctrl)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "delete_controller"), []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleting %s: %v", ctrl, err)
		return
	}
	waitFor(t, ctrl+" to go away", func() bool {
		_, err := os.Stat(dir)
		return errors.Is(err, os.ErrNotExist)
	})
}

// namespaceDir waits for controller ctrl to show a namespace and returns its sysfs directory
// (the path device nvmeXcYnZ, or nvmeXnY without native multipath).
func namespaceDir(t *testing.T, ctrl string) string {
	t.Helper()
	var dir string
	waitFor(t, "a namespace on "+ctrl, func() bool {
		m, _ := filepath.Glob(filepath.Join("/sys/class/nvme", ctrl, "nvme*n*", "uuid"))
		if len(m) == 0 {
			return false
		}
		dir = filepath.Dir(m[0])
		return true
	})
	return dir
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listDir lists a directory, failing the test on error.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
