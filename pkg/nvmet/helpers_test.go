package nvmet_test

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet/nvmettest"
)

const (
	prefix  = "nqn.2026-11.io.nvmeof-csi:"
	foreign = "nqn.2014-08.org.example:foreign"
	hostA   = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001"
	hostB   = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-000000000002"
	hostC   = "nqn.2014-08.org.nvmexpress:uuid:cccccccc-0000-4000-8000-000000000003"
	devA    = "/dev/nvmeof/vol-a"
	devB    = "/dev/nvmeof/vol-b"
	uuidA   = "6f1d2a8e-3b4c-4d5e-8f90-a1b2c3d4e5f6"
)

var ctx = context.Background()

// newTarget returns a Target over a fresh fake configfs with devices devA and devB and ports 1
// (192.0.2.1) and 2 (192.0.2.2), both NVMe/TCP.
func newTarget(t *testing.T) (*nvmet.Target, *nvmettest.FS) {
	t.Helper()
	f := nvmettest.New()
	f.AddDevice(devA)
	f.AddDevice(devB)
	tg := &nvmet.Target{Prefix: prefix, FS: f}
	for _, p := range []nvmet.Port{
		{ID: 1, Transport: nvmet.TransportTCP, Address: "192.0.2.1"},
		{ID: 2, Transport: nvmet.TransportTCP, Address: "192.0.2.2"},
	} {
		if err := tg.EnsurePort(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return tg, f
}

// volume is a typical desired subsystem.
func volume(name string) nvmet.Subsystem {
	return nvmet.Subsystem{
		NQN:       prefix + name,
		Namespace: nvmet.Namespace{DevicePath: devA, UUID: uuidA},
		Hosts:     []string{hostA},
		Ports:     []uint16{1, 2},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// p is a path below the fake's root.
func p(elem ...string) string {
	return filepath.Join(append([]string{nvmet.DefaultRoot}, elem...)...)
}

// read reads an attribute of the fake.
func read(t *testing.T, f nvmet.FS, elem ...string) string {
	t.Helper()
	b, err := f.ReadFile(p(elem...))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

func write(t *testing.T, f nvmet.FS, v string, elem ...string) {
	t.Helper()
	must(t, f.WriteFile(p(elem...), []byte(v+"\n")))
}

func exists(t *testing.T, f nvmet.FS, elem ...string) bool {
	t.Helper()
	_, err := f.Lstat(p(elem...))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// dump renders the tree below path as "relative path = value" lines: attribute contents, link
// targets and directories, so tests can prove a subtree unchanged.
func dump(t *testing.T, f nvmet.FS, elem ...string) string {
	t.Helper()
	var b strings.Builder
	var walk func(string)
	walk = func(path string) {
		mode, err := f.Lstat(path)
		must(t, err)
		rel := strings.TrimPrefix(path, nvmet.DefaultRoot)
		switch mode {
		case fs.ModeDir:
			b.WriteString(rel + "/\n")
			names, err := f.ReadDir(path)
			must(t, err)
			for _, n := range names {
				walk(filepath.Join(path, n))
			}
		case fs.ModeSymlink:
			dest, err := f.Readlink(path)
			must(t, err)
			b.WriteString(rel + " -> " + dest + "\n")
		default:
			if v, err := f.ReadFile(path); err == nil {
				b.WriteString(rel + " = " + string(v))
			}
		}
	}
	walk(p(elem...))
	return b.String()
}

// createForeign builds, directly in configfs, a subsystem outside our prefix with a namespace
// on devB, hostA allowed and links to ports 1 and 2, as another tool on the node would.
func createForeign(t *testing.T, f nvmet.FS) {
	t.Helper()
	must(t, f.Mkdir(p("subsystems", foreign)))
	must(t, f.Mkdir(p("subsystems", foreign, "namespaces", "1")))
	write(t, f, devB, "subsystems", foreign, "namespaces", "1", "device_path")
	write(t, f, "1", "subsystems", foreign, "namespaces", "1", "enable")
	if !exists(t, f, "hosts", hostA) {
		must(t, f.Mkdir(p("hosts", hostA)))
	}
	must(t, f.Symlink(p("hosts", hostA), p("subsystems", foreign, "allowed_hosts", hostA)))
	for _, port := range []string{"1", "2"} {
		must(t, f.Symlink(p("subsystems", foreign), p("ports", port, "subsystems", foreign)))
	}
}

func normalized(t *testing.T, s nvmet.Subsystem) nvmet.Subsystem {
	t.Helper()
	n, err := s.Normalized()
	must(t, err)
	return n
}
