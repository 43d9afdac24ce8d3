//go:build vm

package dm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
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
	path := vmenv.Loop(t, name, fmt.Sprintf("%dM", sizeMiB))
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

// removeOnCleanup removes, when the test ends, the dm devices whose names start with prefix
// (stacked ones first, see vmenv.RemoveDMDevices) and their nodes in dm.NodeDir.
func removeOnCleanup(t *testing.T, prefix string) {
	t.Cleanup(func() {
		vmenv.RemoveDMDevices(t, prefix)
		nodes, _ := filepath.Glob(filepath.Join(dm.NodeDir, prefix+"*"))
		for _, n := range nodes {
			os.Remove(n)
		}
	})
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
// prefix is removed when the test ends.
func newPool(t *testing.T, c *dm.Control, prefix string, dataMiB int64) *pool {
	t.Helper()
	p := &pool{prefix: prefix}
	p.meta = newLoop(t, prefix+"meta", 64)
	p.data = newLoop(t, prefix+"data", dataMiB)
	blocktest.Write(t, p.meta.path, 0, make([]byte, 4096))
	p.table = thin.PoolTable{MetadataDev: dm.FormatDev(p.meta.dev), DataDev: dm.FormatDev(p.data.dev),
		BlockSectors: 128, PoolFeatures: thin.PoolFeatures{SkipBlockZeroing: true}}
	p.Pool = thin.Pool{Control: c, Name: prefix + "pool"}
	removeOnCleanup(t, prefix)
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
	t.Logf("pool %s (%s) active in %s", p.Name, dm.FormatDev(p.info.Dev), timing.Since(start))
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

// openDirect opens a block device for I/O that bypasses the page cache.
func openDirect(t *testing.T, path string, flags int) int {
	t.Helper()
	fd, err := unix.Open(path, flags|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return fd
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
