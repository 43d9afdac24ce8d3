package mounter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/mount-utils"
	testingexec "k8s.io/utils/exec/testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
)

// newTestMounter returns a Mounter over a fake exec and mount-utils' fake mount table.
func newTestMounter(fx *fakeExec, mps ...mount.MountPoint) (*Mounter, *mount.FakeMounter) {
	base := mount.NewFakeMounter(mps)
	return New(Options{Exec: fx, Base: base, MaxConcurrentFormats: 1}), base
}

func TestCommandsRunWithTheCLocaleAndTheCallersContext(t *testing.T) {
	fx := &fakeExec{}
	m, _ := newTestMounter(fx)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := m.GetDiskFormat(ctx, "/dev/nvme1n1"); err != nil {
		t.Fatal(err)
	}
	if len(fx.calls) != 1 {
		t.Fatalf("commands %v, want one blkid", fx.commands())
	}
	c := fx.calls[0]
	if c.ctx != ctx {
		t.Error("blkid did not get the caller's context")
	}
	var lcAll []string
	for _, kv := range c.env {
		if strings.HasPrefix(kv, "LC_ALL=") {
			lcAll = append(lcAll, kv)
		}
	}
	if !reflect.DeepEqual(lcAll, []string{"LC_ALL=C"}) {
		t.Errorf("LC_ALL entries %v, want exactly LC_ALL=C", lcAll)
	}
}

func TestFormatAndMountFormatsABlankDeviceThenMounts(t *testing.T) {
	fx := &fakeExec{respond: func(c *fakeCmd) ([]byte, error) {
		if c.name == "blkid" {
			return nil, testingexec.FakeExitError{Status: 2} // no file system
		}
		return nil, nil
	}}
	m, _ := newTestMounter(fx)
	if err := m.FormatAndMount(context.Background(), "/dev/nvme1n1", "/stage", "ext4", []string{"noatime"}, Format{}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"blkid -p -s TYPE -s PTTYPE -o export /dev/nvme1n1",
		"mkfs.ext4 -F -m0 /dev/nvme1n1",
		"mount -t ext4 -o noatime,defaults /dev/nvme1n1 /stage",
	}
	if got := fx.commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("commands\n%q\nwant\n%q", got, want)
	}
}

// A zeroed device (a new thin volume) is formatted without zeroing or discarding anything.
func TestFormatAndMountSkipsWhatAZeroedDeviceGuarantees(t *testing.T) {
	for fs, want := range map[string]string{
		"ext4": "mkfs.ext4 -E nodiscard,assume_storage_prezeroed=1 -F -m0 /dev/nvme1n1",
		"":     "mkfs.ext4 -E nodiscard,assume_storage_prezeroed=1 -F -m0 /dev/nvme1n1",
		"xfs":  "mkfs.xfs -K -f /dev/nvme1n1",
	} {
		fx := &fakeExec{respond: func(c *fakeCmd) ([]byte, error) {
			if c.name == "blkid" {
				return nil, testingexec.FakeExitError{Status: 2} // no file system
			}
			return nil, nil
		}}
		m, _ := newTestMounter(fx)
		if err := m.FormatAndMount(context.Background(), "/dev/nvme1n1", "/stage", fs, nil, Format{Zeroed: true}); err != nil {
			t.Fatal(err)
		}
		if got := fx.commands(); !slices.Contains(got, want) {
			t.Errorf("%q: commands %q, want %q", fs, got, want)
		}
	}
}

func TestFormatAndMountChecksAnExistingFileSystemInsteadOfFormatting(t *testing.T) {
	fx := &fakeExec{respond: func(c *fakeCmd) ([]byte, error) {
		if c.name == "blkid" {
			return []byte("DEVNAME=/dev/nvme1n1\nTYPE=xfs\n"), nil
		}
		return nil, nil
	}}
	m, _ := newTestMounter(fx)
	if err := m.FormatAndMount(context.Background(), "/dev/nvme1n1", "/stage", "xfs", nil, Format{Zeroed: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range fx.commands() {
		if strings.HasPrefix(c, "mkfs") {
			t.Errorf("formatted a device that holds xfs: %s", c)
		}
	}
	if got := fx.commands(); !slices.Contains(got, "mount -t xfs -o defaults /dev/nvme1n1 /stage") {
		t.Errorf("commands %q lack the mount", got)
	}
}

func TestConcurrentFormatsAreCapped(t *testing.T) {
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	fx := &fakeExec{respond: func(c *fakeCmd) ([]byte, error) {
		if c.name == "mkfs.ext4" {
			entered <- struct{}{}
			<-release
		}
		return nil, nil
	}}
	m, _ := newTestMounter(fx) // one format slot
	first := make(chan error, 1)
	go func() { first <- m.bound(context.Background()).Command("mkfs.ext4", "/dev/a").Run() }()
	<-entered

	// The second mkfs cannot start while the first holds the only slot; it gives up with its
	// context.
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- m.bound(ctx).Command("mkfs.ext4", "/dev/b").Run() }()
	select {
	case <-entered:
		t.Fatal("a second mkfs started while the only format slot was taken")
	case err := <-second:
		t.Fatalf("second mkfs returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Errorf("second mkfs: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The slot is free again.
	if err := m.bound(context.Background()).Command("mkfs.ext4", "/dev/c").Run(); err != nil {
		t.Fatal(err)
	}
}

func TestACommandStuckPastItsContextReturnsAtOnce(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	fx := &fakeExec{respond: func(*fakeCmd) ([]byte, error) { <-stuck; return nil, nil }}
	m, _ := newTestMounter(fx)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := m.runUnmount(ctx, "/target")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("umount stuck in the kernel: %v, want DeadlineExceeded", err)
	}
}

func TestTheVolumeLockOutlivesACommandStuckPastItsContext(t *testing.T) {
	stuck := make(chan struct{})
	fx := &fakeExec{respond: func(*fakeCmd) ([]byte, error) { <-stuck; return nil, nil }}
	m, _ := newTestMounter(fx)
	var locks keylock.Locks
	ctx, release, _ := locks.TryHold(context.Background(), "vol-1")
	ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := m.runUnmount(ctx, "/target"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("umount stuck in the kernel: %v, want DeadlineExceeded", err)
	}
	release() // the RPC returns
	if locks.TryLock("vol-1") {
		t.Fatal("the volume lock was free while its umount was still running")
	}
	close(stuck) // the process ends
	deadline := time.Now().Add(10 * time.Second)
	for !locks.TryLock("vol-1") {
		if time.Now().After(deadline) {
			t.Fatal("the volume lock stayed held after the process ended")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRealCommandsAreKilledWithTheirContextAndSeeTheCLocale(t *testing.T) {
	m := New(Options{})
	out, err := m.bound(context.Background()).Command("sh", "-c", "echo $LC_ALL").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "C" {
		t.Errorf("LC_ALL in the child = %q, %v; want C", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = m.bound(ctx).Command("sleep", "10").Run()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("sleep 10 with a 50ms context: %v after %s", err, time.Since(start))
	}
}

func TestBindMountWithOptionsRemountsKeepingTheSourcesFlags(t *testing.T) {
	fx := &fakeExec{}
	m, _ := newTestMounter(fx)
	src := t.TempDir()
	if err := m.Mount(context.Background(), src, "/target", "", []string{"bind", "ro"}); err != nil {
		t.Fatal(err)
	}
	got := fx.commands()
	if len(got) != 2 || got[0] != "mount -o bind "+src+" /target" ||
		!strings.HasPrefix(got[1], "mount -o bind,remount,ro") || !strings.HasSuffix(got[1], " "+src+" /target") {
		t.Errorf("commands %q, want a bind then a bind remount with ro", got)
	}

	// Without options there is nothing to remount.
	fx.calls = nil
	if err := m.Mount(context.Background(), "/dev/nvme1n1", "/file", "", []string{"bind"}); err != nil {
		t.Fatal(err)
	}
	if got := fx.commands(); !reflect.DeepEqual(got, []string{"mount -o bind /dev/nvme1n1 /file"}) {
		t.Errorf("commands %q", got)
	}
}

func TestRestrictiveFlagsMapsStatfsBits(t *testing.T) {
	got := restrictiveFlags(unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_RELATIME)
	want := []string{"ro", "nodev", "nosuid", "relatime"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restrictiveFlags = %v, want %v", got, want)
	}
}

func TestUnmountUnstacksMountsAndToleratesMissingTargets(t *testing.T) {
	target := t.TempDir()
	fx := &fakeExec{}
	m, base := newTestMounter(fx, mount.MountPoint{Path: target}, mount.MountPoint{Path: target})
	fx.respond = func(c *fakeCmd) ([]byte, error) {
		if c.name == "umount" {
			base.MountPoints = base.MountPoints[1:] // one layer per umount
		}
		return nil, nil
	}
	if err := m.Unmount(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if got := fx.commands(); !reflect.DeepEqual(got, []string{"umount " + target, "umount " + target}) {
		t.Errorf("commands %q, want two umounts", got)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("Unmount removed the target: %v", err)
	}
	if err := m.Unmount(context.Background(), filepath.Join(target, "missing")); err != nil {
		t.Errorf("Unmount of a missing path: %v", err)
	}
}

func TestCleanupMountPointRemovesTheTargetFileOrDirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "block")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fx := &fakeExec{}
	m, base := newTestMounter(fx, mount.MountPoint{Path: file})
	fx.respond = func(*fakeCmd) ([]byte, error) { base.MountPoints = nil; return nil, nil }
	if err := m.CleanupMountPoint(context.Background(), file); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target file still there: %v", err)
	}
	if err := m.CleanupMountPoint(context.Background(), file); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

func TestUnmountReportsAFailedUmount(t *testing.T) {
	target := t.TempDir()
	fx := &fakeExec{respond: func(*fakeCmd) ([]byte, error) {
		return []byte("umount: target is busy."), testingexec.FakeExitError{Status: 32}
	}}
	m, _ := newTestMounter(fx, mount.MountPoint{Path: target})
	err := m.CleanupMountPoint(context.Background(), target)
	if err == nil || !strings.Contains(err.Error(), "target is busy") {
		t.Fatalf("CleanupMountPoint = %v, want the umount failure", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("a still-mounted target was removed: %v", err)
	}
}

func TestDeviceMountPointsFindsFileSystemsAndDeviceBinds(t *testing.T) {
	infos, err := mount.ParseMountInfo("testdata/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := deviceMountPoints(infos, 259, 7, "nvme1n1"), []string{
		"/var/lib/kubelet/plugins/kubernetes.io/csi/nvmeof.csi.io/abc/globalmount",
		"/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pv1/mount",
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("nvme1n1: %q, want %q", got, want)
	}
	if got, want := deviceMountPoints(infos, 259, 8, "nvme2n1"), []string{
		"/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pv2/p2", "/mnt/other",
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("nvme2n1: %q, want %q", got, want)
	}
	if got := deviceMountPoints(infos, 259, 9, "nvme3n1"); len(got) != 0 {
		t.Errorf("nvme3n1: %q, want none", got)
	}
}

func TestDeviceNumberOfADirectoryIsItsFileSystemsDevice(t *testing.T) {
	dir := t.TempDir()
	m := New(Options{})
	got, err := m.DeviceNumber(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if got != st.Dev {
		t.Errorf("DeviceNumber = %d, want st_dev %d", got, st.Dev)
	}
	if _, err := m.DeviceMounts(dir); err == nil {
		t.Error("DeviceMounts of a directory succeeded")
	}
}

func TestFilesystemStatsAndBlockDeviceSize(t *testing.T) {
	dir := t.TempDir()
	m := New(Options{})
	s, err := m.FilesystemStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.TotalBytes <= 0 || s.UsedBytes < 0 || s.UsedBytes > s.TotalBytes || s.AvailableBytes > s.TotalBytes {
		t.Errorf("implausible byte stats %+v", s)
	}
	if s.TotalInodes > 0 && (s.UsedInodes > s.TotalInodes || s.AvailableInodes > s.TotalInodes) {
		t.Errorf("implausible inode stats %+v", s)
	}
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.BlockDeviceSize(file); err == nil {
		t.Error("BlockDeviceSize of a regular file succeeded")
	}
}
