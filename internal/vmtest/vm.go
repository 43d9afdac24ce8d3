// Package vmtest runs Go test binaries inside a qemu VM that boots a real Linux kernel with the
// NVMe-oF, LVM thin and file system modules this project needs.
//
// The host root is shared read-only over virtio-9p under a tmpfs overlay, so the test binary
// built on the host runs unchanged in the guest with the host's tools, and can write anywhere
// without touching the host. The guest has no network device to the outside; it gets a veth
// pair carrying two portal addresses (PortalA, PortalB) and a Soft-RoCE device on each end.
//
// A test package opts in with
//
//	func TestMain(m *testing.M) { vmtest.Main(m) }
//
// On the host, Main boots the VM and runs the same binary in it with the same flags; in the
// guest, Main runs the tests. There is no skip path: a missing kernel or a VM that does not
// boot fails the package. Such packages carry the "vm" build tag so `go test ./...` (the unit
// tier) does not build them.
//
// Tests that need several kernels (a storage node and a worker that fail independently) use a
// Cluster instead: the test runs on the host, boots machines on a private network between
// their qemu processes, and runs steps (NewStep) in each; see ClusterMain.
package vmtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Guest-only addresses of the two portals. They live on the VM's veth pair and are unreachable
// from anywhere else (documentation range, RFC 5737).
const (
	PortalA = "192.0.2.1"
	PortalB = "192.0.2.2"
)

// RDMA devices (Soft-RoCE) bound to the interfaces carrying PortalA and PortalB.
const (
	RDMADeviceA = "rxe0"
	RDMADeviceB = "rxe1"
)

const guestEnv = "NVMEOF_VM_GUEST"

// InGuest reports whether the process runs inside the test VM.
func InGuest() bool { return os.Getenv(guestEnv) == "1" }

// ScratchDir is where the guest mounts its scratch disk: a real, large block device (a sparse
// file on the host) for loop files and volume groups. Only meaningful in the guest.
func ScratchDir() string { return os.Getenv("NVMEOF_VM_SCRATCH") }

// Main is the TestMain of a VM test package: in the guest it runs the tests; on the host it
// runs this very binary in a fresh VM and exits with the guest's exit code.
func Main(m *testing.M) {
	if InGuest() {
		os.Exit(m.Run())
	}
	os.Exit(RunSelf(Size{}))
}

// Size sizes a guest; a zero field keeps Config's default.
type Size struct {
	MemoryMiB, CPUs, ScratchGiB int
}

// RunSelf runs this test binary, with its flags, in a fresh VM of the given size and returns
// the guest's exit code. A TestMain that prepares the guest before its tests calls it on the
// host and does its own work when InGuest.
func RunSelf(size Size) int {
	args := guestArgs(os.Args[1:])
	cfg, err := Self(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 1
	}
	cfg.Timeout = testTimeout(args) + 2*time.Minute
	cfg.Env = forwardedEnv(os.Environ())
	cfg.MemoryMiB, cfg.CPUs, cfg.ScratchGiB = size.MemoryMiB, size.CPUs, size.ScratchGiB
	code, err := Run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Self returns a Config that runs this very binary in the guest with args, in the current
// directory, its output on os.Stdout; the caller sets the rest.
func Self(args []string) (Config, error) {
	bin, err := os.Executable()
	if err != nil {
		return Config{}, err
	}
	dir, err := os.Getwd()
	if err != nil {
		return Config{}, err
	}
	return Config{Binary: bin, Args: args, Dir: dir, Stdout: os.Stdout}, nil
}

// guestArgs drops the flags whose paths only exist on the host.
func guestArgs(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "-test.testlogfile=") || strings.HasPrefix(a, "-test.gocoverdir=") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// testTimeout is the -test.timeout the binary was given, or 30 minutes.
func testTimeout(args []string) time.Duration {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-test.timeout="); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				return d
			}
		}
	}
	return 30 * time.Minute
}

// forwardedEnv is the part of the host environment a guest test may read.
func forwardedEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == "CI" || name == "GOTRACEBACK" || (strings.HasPrefix(name, "NVMEOF_") && !strings.HasPrefix(name, "NVMEOF_VM_")) {
			out = append(out, kv)
		}
	}
	return out
}
