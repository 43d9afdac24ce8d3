//go:build vm

package dm

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const (
	mib     = 1 << 20
	sectors = 512
)

// open opens the control device for one test.
func open(t *testing.T) *dm.Control {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// loop is a loop device over a sparse file of the scratch disk, removed when the test ends.
type loop struct {
	path string
	dev  uint64
	size uint64 // sectors
}

func newLoop(t *testing.T, name string, sizeMiB int64) loop {
	t.Helper()
	img := filepath.Join(vmtest.ScratchDir(), name+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB * mib); err != nil {
		t.Fatal(err)
	}
	f.Close()
	path := vmenv.Run(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() {
		if _, err := vmenv.RunE("losetup", "--detach", path); err != nil {
			t.Log(err)
		}
		os.Remove(img)
	})
	return loop{path: path, dev: rdev(t, path), size: uint64(sizeMiB * mib / sectors)}
}

// rdev is the dev_t of a device node.
func rdev(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Rdev
}

// removeOnCleanup removes dm devices whose names start with prefix when the test ends, in
// reverse name order after thin devices, so that stacked devices go first. Best effort: a
// failed test may leave devices open.
func removeOnCleanup(t *testing.T, c *dm.Control, prefix string, last ...string) {
	t.Cleanup(func() {
		devs, err := c.List(prefix)
		if err != nil {
			t.Log(err)
			return
		}
		slices.SortFunc(devs, func(a, b dm.Device) int {
			return boolInt(slices.Contains(last, a.Name)) - boolInt(slices.Contains(last, b.Name))
		})
		for _, d := range devs {
			c.Resume(d.Name) // a suspended device holds the I/O of whoever wants to close it
			if err := c.Remove(d.Name); err != nil && !errors.Is(err, dm.ErrNotFound) {
				t.Logf("cleanup: %v", err)
			}
			dm.RemoveNode(dm.NodeDir, d.Name)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pool is a thin pool on two loop devices, with its dm devices named <prefix>...
type pool struct {
	thin.Pool
	prefix     string
	meta, data loop
	table      thin.PoolTable
	info       dm.DeviceInfo
}

// newPool makes a thin pool called <prefix>pool over fresh metadata and data devices (the
// first 4 KiB of the metadata zeroed, so the kernel formats it). Every dm device named with
// prefix is removed when the test ends, the pool last.
func newPool(t *testing.T, c *dm.Control, prefix string, dataMiB int64) *pool {
	t.Helper()
	p := &pool{prefix: prefix}
	p.meta = newLoop(t, prefix+"meta", 64)
	p.data = newLoop(t, prefix+"data", dataMiB)
	zero(t, p.meta.path, 4096)
	p.table = thin.PoolTable{MetadataDev: dm.FormatDev(p.meta.dev), DataDev: dm.FormatDev(p.data.dev),
		BlockSectors: 128, PoolFeatures: thin.PoolFeatures{SkipBlockZeroing: true}}
	p.Pool = thin.Pool{Control: c, Name: prefix + "pool"}
	removeOnCleanup(t, c, prefix, p.Name)
	p.activate(t)
	return p
}

// activate loads the pool's table over its devices and resumes it.
func (p *pool) activate(t *testing.T) {
	t.Helper()
	target, err := p.table.Target(p.data.size)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.info, err = p.Control.CreateAndLoad(p.Name, "", []dm.Target{target}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pool %s (%s) active in %s", p.Name, dm.FormatDev(p.info.Dev), since(start))
}

// thinDev activates thin device id as <prefix>thin-<id>, with a node, and returns the node.
func (p *pool) thinDev(t *testing.T, id uint32, sizeMiB int64, readOnly bool) string {
	t.Helper()
	name := p.thinName(id)
	info, err := p.Activate(name, "", id, uint64(sizeMiB*mib/sectors), readOnly)
	if err != nil {
		t.Fatal(err)
	}
	node, err := dm.EnsureNode(dm.NodeDir, name, info.Dev)
	if err != nil {
		t.Fatal(err)
	}
	return node
}

func (p *pool) thinName(id uint32) string { return p.prefix + "thin-" + itoa(id) }

// deactivate removes a dm device and its node.
func deactivate(t *testing.T, c *dm.Control, name string) {
	t.Helper()
	if err := c.Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := dm.RemoveNode(dm.NodeDir, name); err != nil {
		t.Fatal(err)
	}
}

// zero writes n zero bytes at the start of a device.
func zero(t *testing.T, path string, n int) {
	t.Helper()
	writeAt(t, path, 0, make([]byte, n))
}

// pattern is n pseudo-random bytes determined by seed.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// alignedBuf is n bytes of page-aligned memory, as O_DIRECT needs.
func alignedBuf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// openDirect opens a block device for I/O that bypasses the page cache.
func openDirect(t *testing.T, path string, flags int) int {
	t.Helper()
	fd, err := unix.Open(path, flags|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return fd
}

// writeAt writes data (a multiple of 4 KiB) at off with O_DIRECT and syncs.
func writeAt(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	fd := openDirect(t, path, unix.O_WRONLY)
	defer unix.Close(fd)
	buf := alignedBuf(t, len(data))
	copy(buf, data)
	if n, err := unix.Pwrite(fd, buf, off); err != nil || n != len(buf) {
		t.Fatalf("write %s: %d, %v", path, n, err)
	}
	if err := unix.Fsync(fd); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
}

// readAt reads n bytes (a multiple of 4 KiB) at off with O_DIRECT.
func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	fd := openDirect(t, path, unix.O_RDONLY)
	defer unix.Close(fd)
	buf := alignedBuf(t, n)
	if got, err := unix.Pread(fd, buf, off); err != nil || got != n {
		t.Fatalf("read %s: %d, %v", path, got, err)
	}
	return bytes.Clone(buf)
}

// expectData fails the test unless the device holds want at off.
func expectData(t *testing.T, path string, off int64, want []byte, what string) {
	t.Helper()
	if got := readAt(t, path, off, len(want)); !bytes.Equal(got, want) {
		t.Errorf("%s: %s does not hold the expected data", what, path)
	}
}

// errnoOf is the errno an error carries, for logs.
func errnoOf(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e) + " (" + itoa(uint32(e)) + ")"
	}
	if err == nil {
		return "no error"
	}
	return "no errno"
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func since(start time.Time) time.Duration { return time.Since(start).Round(10 * time.Microsecond) }

// percentiles returns the median and the 90th percentile of durations.
func percentiles(d []time.Duration) (p50, p90 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Microsecond), s[len(s)*9/10].Round(10 * time.Microsecond)
}
