//go:build vm

package dmthin

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestRefusesDevicesThatHoldSomething: a device made an ext4 or XFS file system, an LVM
// physical volume, a swap area or a LUKS container by the real tools is refused, with the
// device and what it holds named, and is left as it was.
func TestRefusesDevicesThatHoldSomething(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("not a secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		make func(dev string) []string
		want string
	}{
		{"ext4", func(dev string) []string { return []string{"mkfs.ext4", "-q", "-F", dev} }, "ext2/ext3/ext4"},
		{"xfs", func(dev string) []string { return []string{"mkfs.xfs", "-q", "-f", dev} }, "XFS"},
		{"lvm", func(dev string) []string {
			return []string{"pvcreate", "--config", lvm.DeviceFilter(dev), "-q", dev}
		}, "LVM2"},
		{"swap", func(dev string) []string { return []string{"mkswap", dev} }, "swap"},
		{"luks", func(dev string) []string {
			return []string{"cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", "--key-file", keyFile, dev}
		}, "LUKS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "sig-"+tc.name, 320, 320) // mkfs.xfs wants 300 MB
			for _, which := range []string{"metadata", "data"} {
				dev := e.opts.MetadataDevice
				if which == "data" {
					dev = e.opts.DataDevice
				}
				args := tc.make(dev)
				vmenv.Run(t, args[0], args[1:]...)
				before := blocktest.Read(t, dev, 0, 128<<10)
				_, err := dmthin.Open(ctx(t), e.opts)
				t.Logf("%s device with %s → %v", which, tc.name, err)
				if !errors.Is(err, dmthin.ErrForeignDevice) || !strings.Contains(err.Error(), dev) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Open over a %s device holding %s: %v", which, tc.name, err)
				}
				if !bytes.Equal(blocktest.Read(t, dev, 0, 128<<10), before) {
					t.Errorf("the refused %s device was written to", which)
				}
				vmenv.Run(t, "wipefs", "-a", "-q", dev)
			}
			// Wiped, the devices are blank again: formatted.
			p := e.open(t)
			e.shutdown(t, p)
		})
	}
}

// TestInterruptedFormat: a metadata device of ours with a blank data device is a format that
// stopped before the data header: finished if the pool never held anything, refused if it
// did (the data device would not be its own).
func TestInterruptedFormat(t *testing.T) {
	e := newEnv(t, "fmt", 32, 256)
	p := e.open(t)
	e.shutdown(t, p)
	blocktest.Write(t, e.opts.DataDevice, 0, make([]byte, 8192)) // the data header never written
	p = e.open(t)
	mustCreate(t, p, "vol-1", 16)
	e.shutdown(t, p)

	blocktest.Write(t, e.opts.DataDevice, 0, make([]byte, 8192)) // the data device swapped for a blank one
	_, err := dmthin.Open(ctx(t), e.opts)
	t.Logf("a pool with volumes over a blank data device → %v", err)
	if !errors.Is(err, dmthin.ErrForeignDevice) {
		t.Fatalf("Open: %v, want ErrForeignDevice", err)
	}
	// A blank metadata device with our data device: refused, never formatted.
	m := newEnv(t, "fmt2", 32, 256)
	m.opts.DataDevice = e.opts.MetadataDevice // any device of ours in the data role is refused too
	if _, err := dmthin.Open(ctx(t), m.opts); !errors.Is(err, dmthin.ErrForeignDevice) {
		t.Errorf("Open with a device of another role: %v", err)
	}
}

// TestStaleThinMetadata: thin metadata restored from an older copy (its transaction id lower
// than the records') is refused at Open.
func TestStaleThinMetadata(t *testing.T) {
	e := newEnv(t, "stale", 16, 256)
	p := e.open(t)
	mustCreate(t, p, "vol-1", 16)
	e.shutdown(t, p)
	off, length, err := dmthin.ThinMetadataRange(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	old := blocktest.Read(t, e.opts.MetadataDevice, off, int(length))

	p = e.open(t)
	mustCreate(t, p, "vol-2", 16)
	e.shutdown(t, p)
	blocktest.Write(t, e.opts.MetadataDevice, off, old)

	_, err = dmthin.Open(ctx(t), e.opts)
	t.Logf("stale thin metadata → %v", err)
	if !errors.Is(err, dmthin.ErrStale) {
		t.Fatalf("Open over stale thin metadata: %v, want ErrStale", err)
	}
}

// TestFullPool: a data device filled up (writes fail at once: ErrorIfNoSpace) is reported by
// Usage, and new volumes are refused with ErrNoSpace until space is freed and the pool is
// reopened.
func TestFullPool(t *testing.T) {
	e := newEnv(t, "full", 16, 1+4) // 64 data blocks of 64 KiB
	e.opts.ErrorIfNoSpace = true
	p := e.open(t)
	mustCreate(t, p, "vol-1", 64)
	path := mustActivate(t, p, "vol-1")
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := blocktest.Aligned(mib)
	var werr error
	for off := int64(0); off < 8*mib && werr == nil; off += mib {
		_, werr = unix.Pwrite(fd, buf, off)
	}
	unix.Close(fd)
	t.Logf("writing 8 MiB into 4 MiB of data → %v", werr)
	if werr == nil {
		t.Fatal("wrote more than the data device holds")
	}
	u, err := p.Usage(ctx(t))
	t.Logf("usage of the full pool: %+v", u)
	if err != nil || u.Health != "out of data space" || u.DataUsedBytes != u.DataBytes {
		t.Errorf("Usage of a full pool: %+v, %v", u, err)
	}
	for what, err := range map[string]error{
		"Create":   errOf(p.Create(ctx(t), record("vol-2", 64))),
		"Snapshot": errOf(p.Snapshot(ctx(t), "vol-1", record("snap-1", 64), true)),
	} {
		t.Logf("%s in a full pool → %v", what, err)
		if !errors.Is(err, pool.ErrNoSpace) {
			t.Errorf("%s in a full pool: %v, want ErrNoSpace", what, err)
		}
	}
	if err := p.Delete(ctx(t), "vol-1"); err != nil {
		t.Fatal(err)
	}
	u, _ = p.Usage(ctx(t))
	t.Logf("after the delete: %+v", u)
	e.shutdown(t, p)
	p = e.open(t)
	if u, _ := p.Usage(ctx(t)); u.Health != "" {
		t.Errorf("after a reopen the pool is still %q", u.Health)
	}
	mustCreate(t, p, "vol-2", 64)
	e.shutdown(t, p)
}
