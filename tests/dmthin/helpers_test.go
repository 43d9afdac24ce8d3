//go:build vm

package dmthin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func ctx(t testing.TB) context.Context { return vmenv.Context(t, 5*time.Minute) }

// newLoop is a loop device over a sparse file of sizeMiB on the scratch disk, detached when
// the test ends.
func newLoop(t testing.TB, name string, sizeMiB int64) string {
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
	return path
}

// env is a pool's two loop devices and its options.
type env struct {
	opts dmthin.Options
}

// newEnv makes the devices of a pool called dmt-<name>: a metadata device of metaMiB, a data
// device of dataMiB. Every dm device of the pool is removed when the test ends (before the
// loop devices are detached).
func newEnv(t testing.TB, name string, metaMiB, dataMiB int64) *env {
	t.Helper()
	e := &env{opts: dmthin.Options{
		MetadataDevice: newLoop(t, name+"-meta", metaMiB),
		DataDevice:     newLoop(t, name+"-data", dataMiB),
		Name:           "dmt-" + name,
		NodeDir:        filepath.Join(t.TempDir(), "dev"),
	}}
	t.Cleanup(func() { removeAll(t, e.opts.Name) })
	return e
}

// removeAll removes every dm device named <name>-..., thin devices before the pool before its
// sub-devices. Best effort.
func removeAll(t testing.TB, name string) {
	c, err := dm.Open()
	if err != nil {
		t.Log(err)
		return
	}
	defer c.Close()
	devs, _ := c.List(name + "-")
	rank := func(d dm.Device) int {
		switch {
		case strings.HasSuffix(d.Name, "-pool_tmeta"), strings.HasSuffix(d.Name, "-pool_tdata"):
			return 2
		case strings.HasSuffix(d.Name, "-pool"):
			return 1
		}
		return 0
	}
	slices.SortFunc(devs, func(a, b dm.Device) int { return rank(a) - rank(b) })
	for _, d := range devs {
		c.Resume(d.Name)
		if err := c.Remove(d.Name); err != nil && !errors.Is(err, dm.ErrNotFound) {
			t.Logf("cleanup: %v", err)
		}
	}
}

// open opens the pool (closed when the test ends unless the test closed or shut it down).
func (e *env) open(t testing.TB) *dmthin.Pool {
	t.Helper()
	p, err := dmthin.Open(ctx(t), e.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// shutdown deactivates the pool and checks it with thin_check and thin_ls.
func (e *env) shutdown(t testing.TB, p *dmthin.Pool) {
	t.Helper()
	vmenv.ShutdownAndCheckThin(ctx(t), t, p, e.opts)
}

// checkThin checks an inactive pool with thin_check and thin_ls (ID → thin id).
func (e *env) checkThin(t testing.TB, want map[string]uint32) {
	t.Helper()
	vmenv.CheckThin(t, e.opts, want)
}

// record is a volume record for tests.
func record(id string, sizeMiB int64) pool.Record {
	return pool.Record{ID: id, SizeBytes: sizeMiB * mib, Name: "name-" + id, UUID: uuidOf(id),
		Labels: map[string]string{"test": "yes"}, CreatedUnixNano: 1700000000000000000}
}

func uuidOf(id string) string {
	h := fmt.Sprintf("%032x", []byte(id))[:32]
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func mustCreate(t testing.TB, p *dmthin.Pool, id string, sizeMiB int64) pool.Volume {
	t.Helper()
	v, err := p.Create(ctx(t), record(id, sizeMiB))
	if err != nil {
		t.Fatalf("Create %s: %v", id, err)
	}
	return v
}

func mustActivate(t testing.TB, p *dmthin.Pool, id string) string {
	t.Helper()
	v, err := p.Activate(ctx(t), id)
	if err != nil {
		t.Fatalf("Activate %s: %v", id, err)
	}
	if v.Path == "" {
		t.Fatalf("Activate %s: no path", id)
	}
	return v.Path
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
func alignedBuf(t testing.TB, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// writeAt writes data (whole 4 KiB blocks) at off with O_DIRECT and syncs.
func writeAt(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
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

// readAt reads n bytes (whole 4 KiB blocks) at off with O_DIRECT.
func readAt(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer unix.Close(fd)
	buf := alignedBuf(t, n)
	if got, err := unix.Pread(fd, buf, off); err != nil || got != n {
		t.Fatalf("read %s: %d, %v", path, got, err)
	}
	return bytes.Clone(buf)
}

func expectData(t testing.TB, path string, off int64, want []byte, what string) {
	t.Helper()
	if got := readAt(t, path, off, len(want)); !bytes.Equal(got, want) {
		t.Errorf("%s: %s does not hold the expected data", what, path)
	}
}

// deviceSize is the size of a block device.
func deviceSize(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Seek(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// noSuspended fails the test if a device of the pool is suspended or has an inactive table.
func noSuspended(t testing.TB, name string) {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	devs, err := c.List(name + "-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		info, err := c.Info(d.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Suspended || info.InactiveTable || !info.LiveTable {
			t.Errorf("device %s: suspended %v, inactive table %v, live table %v", d.Name, info.Suspended, info.InactiveTable, info.LiveTable)
		}
	}
}

// activeThins lists the pool's active thin devices (names without the pool prefix).
func activeThins(t testing.TB, name string) []string {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	devs, err := c.List(name + "-")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range devs {
		rest := strings.TrimPrefix(d.Name, name+"-")
		if !strings.HasPrefix(rest, "pool") {
			out = append(out, rest)
		}
	}
	return out
}

func since(start time.Time) time.Duration { return time.Since(start).Round(10 * time.Microsecond) }

// p50 is the median of durations.
func p50(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Microsecond)
}

// measure runs op n times and logs the median.
func measure(t testing.TB, what string, n int, op func(i int) error) {
	t.Helper()
	d := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		if err := op(i); err != nil {
			t.Fatalf("%s %d: %v", what, i, err)
		}
		d[i] = time.Since(start)
	}
	t.Logf("%-44s p50 %9s (n=%d)", what, p50(d), n)
}
