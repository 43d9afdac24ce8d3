package vmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ctlPortName names the virtio-serial port of the control channel.
const ctlPortName = "vmtest.ctl"

// ClusterMain is the TestMain of a package whose tests drive a Cluster: on the host it runs
// the tests; in a machine's guest it serves steps until the host ends the session, then exits
// (and the machine powers off). There is no skip path: a machine that cannot boot fails the
// test that boots it.
func ClusterMain(m *testing.M) {
	if name := os.Getenv(machineEnv); name != "" && InGuest() {
		if err := serveMachine(name); err != nil {
			fmt.Fprintln(os.Stderr, "vmtest:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// MachineName is the name of the machine this guest is, or "" outside a Cluster's machine.
func MachineName() string {
	if !InGuest() {
		return ""
	}
	return os.Getenv(machineEnv)
}

func serveMachine(name string) error {
	dev, err := findVirtioPort(ctlPortName, 30*time.Second)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return serveCtl(f, name, os.Stdout)
}

// findVirtioPort returns the device node of the named virtio-serial port, waiting for the
// driver to bring it up.
func findVirtioPort(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		ports, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range ports {
			raw, err := os.ReadFile(p)
			if err == nil && strings.TrimSpace(string(raw)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port %q after %s", name, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DiskDevice returns the block device (/dev/vdX) of the machine's disk of that name (its
// serial number), in the guest; an error when there is none.
func DiskDevice(name string) (string, error) {
	serials, _ := filepath.Glob("/sys/block/vd*/serial")
	for _, p := range serials {
		raw, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(raw)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(p)), nil
		}
	}
	return "", fmt.Errorf("no disk with serial %q in /sys/block", name)
}
