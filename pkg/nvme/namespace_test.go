package nvme

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFindNamespaceByIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, tree, nqn, uuid string
		want                  string // "" means ErrNotFound
	}{
		{"multipath head, not a path device", "multipath", testNQN1, testUUID1, "/dev/nvme0n1"},
		{"UUID compared case-insensitively", "multipath", testNQN1, strings.ToUpper(testUUID1), "/dev/nvme0n1"},
		{"UUID from wwid when there is no uuid attribute", "multipath", testNQN2, testUUID2, "/dev/nvme1n1"},
		{"UUID of another subsystem", "multipath", testNQN1, testUUID2, ""},
		{"NQN of another subsystem", "multipath", testNQN2, testUUID1, ""},
		{"unknown subsystem", "multipath", "nqn.2024-01.io.example:absent", testUUID1, ""},
		{"no multipath: the live controller's namespace", "nomultipath", testNQN1, testUUID1, "/dev/nvme1n1"},
		{"no multipath: unknown UUID", "nomultipath", testNQN1, testUUID2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &Initiator{SysfsRoot: loadTree(t, tc.tree)}
			got, err := in.FindNamespace(tc.nqn, tc.uuid)
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("FindNamespace = %q, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("FindNamespace = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestFindNamespaceWithoutMultipathPrefersTheLowestLiveController(t *testing.T) {
	root := loadTree(t, "nomultipath")
	setAttr(t, root, "class/nvme/nvme0/state", "live")
	if got, err := (&Initiator{SysfsRoot: root}).FindNamespace(testNQN1, testUUID1); err != nil || got != "/dev/nvme0n1" {
		t.Fatalf("FindNamespace = %q, %v; want /dev/nvme0n1", got, err)
	}
	setAttr(t, root, "class/nvme/nvme0/state", "connecting")
	setAttr(t, root, "class/nvme/nvme1/state", "connecting")
	if got, err := (&Initiator{SysfsRoot: root}).FindNamespace(testNQN1, testUUID1); err != nil || got != "/dev/nvme0n1" {
		t.Fatalf("no live path: FindNamespace = %q, %v; want /dev/nvme0n1", got, err)
	}
}

func TestFindNamespaceNeverReturnsHiddenPathDevices(t *testing.T) {
	// Take the head away: only the hidden nvme0c0n1/nvme0c1n1 remain, which must not be used.
	root := loadTree(t, "multipath")
	if err := os.RemoveAll(filepath.Join(root, "devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1")); err != nil {
		t.Fatal(err)
	}
	if got, err := (&Initiator{SysfsRoot: root}).FindNamespace(testNQN1, testUUID1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("FindNamespace = %q, %v; want ErrNotFound", got, err)
	}
}

func TestFindNamespaceRejectsMalformedArguments(t *testing.T) {
	in := &Initiator{SysfsRoot: loadTree(t, "multipath")}
	for _, args := range [][2]string{{"vol1", testUUID1}, {testNQN1, "1"}, {testNQN1, ""}} {
		if _, err := in.FindNamespace(args[0], args[1]); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("FindNamespace(%q, %q) error = %v, want ErrInvalidOption", args[0], args[1], err)
		}
	}
}

func TestWaitNamespaceReturnsOnceTheNamespaceAppears(t *testing.T) {
	root := loadTree(t, "multipath")
	link := filepath.Join(root, "class/nvme-subsystem/nvme-subsys0")
	target, _ := os.Readlink(link)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	// The disk shows in sysfs first, its device node a little later (as devtmpfs makes it).
	dev := t.TempDir()
	go func() {
		time.Sleep(30 * time.Millisecond)
		_ = os.Symlink(target, link)
		time.Sleep(30 * time.Millisecond)
		_ = os.WriteFile(filepath.Join(dev, "nvme0n1"), nil, 0o600)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := (&Initiator{SysfsRoot: root, DevRoot: dev}).WaitNamespace(ctx, testNQN1, testUUID1, 5*time.Millisecond)
	if err != nil || got != "/dev/nvme0n1" {
		t.Fatalf("WaitNamespace = %q, %v; want /dev/nvme0n1", got, err)
	}
	if _, err := os.Stat(filepath.Join(dev, "nvme0n1")); err != nil {
		t.Fatalf("WaitNamespace returned before the device node existed: %v", err)
	}
}

func TestWaitNamespaceWaitsForTheDeviceNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := (&Initiator{SysfsRoot: loadTree(t, "multipath"), DevRoot: t.TempDir()}).WaitNamespace(ctx, testNQN1, testUUID1, 5*time.Millisecond)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitNamespace without a device node = %v, want ErrNotFound and DeadlineExceeded", err)
	}
}

func TestWaitNamespaceGivesUpWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := (&Initiator{SysfsRoot: loadTree(t, "multipath")}).WaitNamespace(ctx, testNQN1, testUUID2, 5*time.Millisecond)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitNamespace error = %v, want ErrNotFound and DeadlineExceeded", err)
	}
	_, err = (&Initiator{SysfsRoot: t.TempDir()}).WaitNamespace(ctx, "bad", testUUID1, 0)
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("WaitNamespace(bad NQN) error = %v, want ErrInvalidOption at once", err)
	}
}

func TestVerifyDevice(t *testing.T) {
	for _, tc := range []struct {
		name, tree, dev, nqn, uuid string
		want                       error // nil means verified
	}{
		{"multipath head", "multipath", "/dev/nvme0n1", testNQN1, testUUID1, nil},
		{"bare device name", "multipath", "nvme0n1", testNQN1, testUUID1, nil},
		{"UUID from wwid", "multipath", "/dev/nvme1n1", testNQN2, testUUID2, nil},
		{"no multipath: controller namespace", "nomultipath", "/dev/nvme0n1", testNQN1, testUUID1, nil},
		{"other namespace UUID", "multipath", "/dev/nvme0n1", testNQN1, testUUID2, ErrWrongDevice},
		{"other subsystem", "multipath", "/dev/nvme1n1", testNQN1, testUUID2, ErrWrongDevice},
		{"hidden path device", "multipath", "/dev/nvme0c1n1", testNQN1, testUUID1, ErrWrongDevice},
		{"device gone", "multipath", "/dev/nvme5n1", testNQN1, testUUID1, ErrNotFound},
		{"not an NVMe namespace", "multipath", "/dev/loop0", testNQN1, testUUID1, ErrInvalidOption},
		{"partition", "multipath", "/dev/nvme0n1p1", testNQN1, testUUID1, ErrInvalidOption},
		{"path traversal", "multipath", "/dev/../nvme0n1", testNQN1, testUUID1, ErrInvalidOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Initiator{SysfsRoot: loadTree(t, tc.tree)}).VerifyDevice(tc.dev, tc.nqn, tc.uuid)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("VerifyDevice = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDeviceSize(t *testing.T) {
	in := &Initiator{SysfsRoot: loadTree(t, "multipath")}
	if got, err := in.DeviceSize("/dev/nvme1n1"); err != nil || got != 1<<30 {
		t.Errorf("DeviceSize = %d, %v; want 1 GiB", got, err)
	}
	if _, err := in.DeviceSize("/dev/nvme9n1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeviceSize(missing) error = %v, want ErrNotFound", err)
	}
}
