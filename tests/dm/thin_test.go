//go:build vm

package dm

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// poolStatus fails the test on error.
func poolStatus(t *testing.T, p *pool) thin.PoolStatus {
	t.Helper()
	s, err := p.Status(false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// thinStatus is the parsed status of an active thin device.
func thinStatus(t *testing.T, c *dm.Control, name string) thin.ThinStatus {
	t.Helper()
	st, err := c.Status(name, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Type != thin.ThinTargetType {
		t.Fatalf("%s status %+v", name, st)
	}
	s, err := thin.ParseThinStatus(st[0].Params)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestThinPoolLifecycle: a pool built from two loop devices without LVM; a thin device
// written through the node EnsureNode made; a snapshot of it while active (suspend, message,
// resume); the snapshot read back; the origin diverging; delete.
func TestThinPoolLifecycle(t *testing.T) {
	c := open(t)
	p := newPool(t, c, "dmtest-life-", 1024)

	s := poolStatus(t, p)
	t.Logf("fresh pool: %+v", s)
	if s.Mode != thin.PoolWrite || s.TransactionID != 0 || s.UsedDataBlocks != 0 || s.TotalDataBlocks != 1024*mib/(128*sectors) ||
		s.TotalMetadataBlocks != 64*mib/4096 || s.Discards != thin.DiscardPassdown || s.NeedsCheck {
		t.Errorf("fresh pool status %+v", s)
	}
	table, err := c.Table(p.Name)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := thin.ParsePoolTable(table[0].Params); err != nil || pt != p.table {
		t.Errorf("pool table %q parses to %+v, %v; want %+v", table[0].Params, pt, err, p.table)
	}

	if err := p.CreateThin(1); err != nil {
		t.Fatal(err)
	}
	vol := p.thinDev(t, 1, 256, false)
	if st := thinStatus(t, c, p.thinName(1)); st.MappedSectors != 0 || st.HighestMappedSector != -1 {
		t.Errorf("empty thin device status %+v", st)
	}
	if table, err := c.Table(p.thinName(1)); err != nil || table[0].Params != dm.FormatDev(p.info.Dev)+" 1" {
		t.Errorf("thin table %+v, %v", table, err)
	}
	dataA := blocktest.Pattern(1, 4*mib)
	blocktest.Write(t, vol, 0, dataA)
	if st := thinStatus(t, c, p.thinName(1)); st.MappedSectors != 4*mib/sectors || st.HighestMappedSector != 4*mib/sectors-1 {
		t.Errorf("thin status after 4 MiB %+v", st)
	}

	// Snapshot of the active origin.
	start := time.Now()
	if err := c.Suspend(p.thinName(1), false); err != nil {
		t.Fatal(err)
	}
	snapErr := p.CreateSnap(2, 1)
	if _, err := c.Resume(p.thinName(1)); err != nil {
		t.Fatal(err)
	}
	if snapErr != nil {
		t.Fatal(snapErr)
	}
	t.Logf("snapshot of an active origin (suspend, create_snap, resume): %s", timing.Since(start))

	snap := p.thinDev(t, 2, 256, true)
	if info, _ := c.Info(p.thinName(2)); !info.ReadOnly {
		t.Errorf("snapshot activated read-only is not: %+v", info)
	}
	blocktest.Expect(t, snap, 0, dataA, "snapshot")
	dataB := blocktest.Pattern(2, mib)
	blocktest.Write(t, vol, 0, dataB)
	blocktest.Expect(t, snap, 0, dataA, "snapshot after the origin was overwritten")
	blocktest.Expect(t, vol, 0, dataB, "origin after overwrite")
	fd, err := unix.Open(snap, unix.O_WRONLY|unix.O_DIRECT, 0)
	if err == nil {
		_, err = unix.Pwrite(fd, blocktest.Aligned(4096), 0)
		unix.Close(fd)
	}
	if err == nil {
		t.Error("wrote to a read-only snapshot")
	}

	// Delete: refused while active, then done; the blocks only the snapshot held are freed.
	if err := p.Delete(2); !errors.Is(err, dm.ErrBusy) {
		t.Errorf("Delete of an active thin device = %v, want ErrBusy", err)
	} else {
		t.Logf("delete of an active thin device → %s: %v", errnoOf(err), err)
	}
	used := poolStatus(t, p).UsedDataBlocks
	deactivate(t, c, p.thinName(2))
	if err := p.Delete(2); err != nil {
		t.Fatal(err)
	}
	if after := poolStatus(t, p).UsedDataBlocks; after >= used {
		t.Errorf("deleting the snapshot freed nothing: %d → %d blocks", used, after)
	}

	// Transaction id.
	if err := p.SetTransactionID(0, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.SetTransactionID(0, 2); !errors.Is(err, thin.ErrTransactionID) {
		t.Errorf("SetTransactionID from a stale id = %v, want ErrTransactionID", err)
	}
	if s := poolStatus(t, p); s.TransactionID != 1 {
		t.Errorf("transaction id %d, want 1", s.TransactionID)
	}

	// Metadata snapshot for userspace tools.
	if err := p.ReserveMetadataSnap(); err != nil {
		t.Fatal(err)
	}
	if s := poolStatus(t, p); s.HeldMetadataRoot == 0 {
		t.Errorf("no held root after reserve_metadata_snap: %+v", s)
	}
	if err := p.ReleaseMetadataSnap(); err != nil {
		t.Fatal(err)
	}
}

// TestThinErrnos records what the 6.12 kernel answers to each wrong thin-pool request, and
// checks the sentinel each maps to.
func TestThinErrnos(t *testing.T) {
	c := open(t)
	p := newPool(t, c, "dmtest-errno-", 256)
	if err := p.CreateThin(1); err != nil {
		t.Fatal(err)
	}
	p.thinDev(t, 1, 16, false)
	activateMissing := func() error { _, err := p.Activate(p.prefix+"missing", "", 99, 2048, false); return err }
	activateTwice := func() error { _, err := p.Activate(p.prefix+"second", "", 1, 2048, false); return err }
	rawMessage := func(msg string) error { _, err := c.Message(p.Name, 0, msg); return err }
	for _, tc := range []struct {
		what  string
		err   error
		want  error
		errno unix.Errno
	}{
		{"create_thin of an existing id", p.CreateThin(1), thin.ErrIDExists, unix.EEXIST},
		{"create_snap onto an existing id", p.CreateSnap(1, 1), thin.ErrIDExists, unix.EEXIST},
		{"create_snap of a missing origin", p.CreateSnap(5, 77), thin.ErrIDNotFound, unix.ENODATA},
		{"delete of a missing id", p.Delete(77), thin.ErrIDNotFound, unix.ENODATA},
		{"delete of an active id", p.Delete(1), dm.ErrBusy, unix.EBUSY},
		{"activation of a missing id", activateMissing(), thin.ErrIDNotFound, unix.ENODATA},
		{"set_transaction_id from a wrong id", p.SetTransactionID(9, 10), thin.ErrTransactionID, unix.EINVAL},
		{"release_metadata_snap with none held", p.ReleaseMetadataSnap(), dm.ErrInvalid, unix.EINVAL},
		{"trim (no such message in 6.12)", rawMessage("trim 1 2048"), dm.ErrInvalid, unix.EINVAL},
		{"an unknown message", rawMessage("frobnicate 1"), dm.ErrInvalid, unix.EINVAL},
		{"create_thin with an id beyond 24 bits", rawMessage("create_thin 16777216"), dm.ErrInvalid, unix.EINVAL},
		{"a message to a missing pool", thin.Pool{Control: c, Name: p.prefix + "nopool"}.CreateThin(3), dm.ErrNotFound, unix.ENXIO},
	} {
		t.Logf("%-40s → %-14s %v", tc.what, errnoOf(tc.err), tc.err)
		if !errors.Is(tc.err, tc.want) || !errors.Is(tc.err, tc.errno) {
			t.Errorf("%s: %v, want %v (%s)", tc.what, tc.err, tc.want, unix.ErrnoName(tc.errno))
		}
	}
	// The kernel lets one thin id be active under two dm devices at once.
	if err := activateTwice(); err != nil {
		t.Errorf("second activation of an active id: %v", err)
	} else {
		t.Logf("%-40s → %-14s (the kernel allows it: both devices map the same thin device)", "activation of an active id", "no error")
		deactivate(t, c, p.prefix+"second")
	}

	if err := p.ReserveMetadataSnap(); err != nil {
		t.Fatal(err)
	}
	err := p.ReserveMetadataSnap()
	t.Logf("%-40s → %-14s %v", "reserve_metadata_snap twice", errnoOf(err), err)
	if !errors.Is(err, dm.ErrBusy) {
		t.Errorf("reserve_metadata_snap twice = %v, want ErrBusy", err)
	}
	p.ReleaseMetadataSnap()

	// A thin device cannot be activated while its pool is suspended.
	if err := c.Suspend(p.Name, false); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateThin(2); err != nil {
		t.Errorf("create_thin on a suspended pool: %v", err)
	}
	_, err = p.Activate(p.thinName(2), "", 2, 2048, false)
	t.Logf("%-40s → %-14s %v", "activation while the pool is suspended", errnoOf(err), err)
	if !errors.Is(err, dm.ErrInvalid) {
		t.Errorf("activation on a suspended pool = %v, want ErrInvalid", err)
	}
	if _, err := c.Resume(p.Name); err != nil {
		t.Fatal(err)
	}

	// A read-only pool takes no messages.
	deactivate(t, c, p.thinName(1))
	if err := c.Remove(p.Name); err != nil {
		t.Fatal(err)
	}
	p.table.ReadOnly = true
	p.activate(t)
	if s := poolStatus(t, p); s.Mode != thin.PoolReadOnly {
		t.Errorf("read_only pool status %+v", s)
	}
	err = p.CreateThin(3)
	t.Logf("%-40s → %-14s %v", "create_thin on a read-only pool", errnoOf(err), err)
	if !errors.Is(err, thin.ErrPoolReadOnly) || !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("create_thin on a read-only pool = %v, want ErrPoolReadOnly (EOPNOTSUPP)", err)
	}
}

// TestPoolReloadFindsItsThinDevices: after every device is torn down, thin_check finds the
// metadata clean, and a pool loaded again over the same two devices has its thin devices,
// their data and its transaction id.
func TestPoolReloadFindsItsThinDevices(t *testing.T) {
	c := open(t)
	p := newPool(t, c, "dmtest-reload-", 512)
	data := make(map[uint32][]byte)
	for id := uint32(1); id <= 3; id++ {
		if err := p.CreateThin(id); err != nil {
			t.Fatal(err)
		}
		node := p.thinDev(t, id, 64, false)
		data[id] = blocktest.Pattern(uint64(id), mib)
		blocktest.Write(t, node, int64(id)*mib, data[id])
		deactivate(t, c, p.thinName(id))
	}
	if err := p.CreateSnap(4, 2); err != nil {
		t.Fatal(err)
	}
	data[4] = data[2]
	if err := p.SetTransactionID(0, 4); err != nil {
		t.Fatal(err)
	}
	before := poolStatus(t, p)
	if err := c.Remove(p.Name); err != nil {
		t.Fatal(err)
	}

	out, err := vmenv.RunE("thin_check", p.meta.path)
	t.Logf("thin_check %s: %s", p.meta.path, out)
	if err != nil {
		t.Errorf("thin_check finds the metadata of a cleanly deactivated pool damaged: %v", err)
	}
	if dump, err := vmenv.RunE("thin_dump", p.meta.path); err == nil {
		t.Logf("thin_dump:\n%s", firstLines(dump, 8))
	}

	p.activate(t)
	after := poolStatus(t, p)
	if after.TransactionID != 4 || after.UsedDataBlocks != before.UsedDataBlocks {
		t.Errorf("reloaded pool %+v, before %+v", after, before)
	}
	for id := uint32(1); id <= 4; id++ {
		node := p.thinDev(t, id, 64, true)
		off := int64(id) * mib
		if id == 4 {
			off = 2 * mib
		}
		blocktest.Expect(t, node, off, data[id], fmt.Sprintf("thin device %d after the pool reload", id))
	}
	if err := p.CreateThin(1); !errors.Is(err, thin.ErrIDExists) {
		t.Errorf("create_thin 1 in the reloaded pool = %v, want ErrIDExists", err)
	}
}

func firstLines(s string, n int) string {
	lines := 0
	for i, r := range s {
		if r == '\n' {
			if lines++; lines == n {
				return s[:i]
			}
		}
	}
	return s
}

// TestThinLatency measures the in-process cost of the operations the backend does most, p50
// (and p90) over 50 each, under the VM's emulation.
func TestThinLatency(t *testing.T) {
	c := open(t)
	p := newPool(t, c, "dmtest-lat-", 1024)
	const n = 50
	measure := func(what string, op func(i int) error) {
		t.Helper()
		s := timing.Repeat(t, what, n, op)
		t.Logf("%-52s p50 %9s  p90 %9s", what, timing.Round(s.P50()), timing.Round(s.Percentile(90)))
	}

	measure("create_thin", func(i int) error { return p.CreateThin(uint32(100 + i)) })
	measure("thin activation (create, load, resume)", func(i int) error {
		_, err := p.Activate(p.thinName(uint32(100+i)), "", uint32(100+i), 2048*256, false)
		return err
	})
	measure("EnsureNode (mknod, rename)", func(i int) error {
		info, err := c.Info(p.thinName(uint32(100 + i)))
		if err == nil {
			_, err = dm.EnsureNode(dm.NodeDir, info.Name, info.Dev)
		}
		return err
	})
	origin := p.thinName(100)
	blocktest.Write(t, filepath.Join(dm.NodeDir, origin), 0, blocktest.Pattern(3, 4*mib)) // the origin holds data
	measure("create_snap of an active origin (suspend/resume)", func(i int) error {
		if err := c.Suspend(origin, false); err != nil {
			return err
		}
		err := p.CreateSnap(uint32(200+i), 100)
		if _, rerr := c.Resume(origin); rerr != nil {
			return rerr
		}
		return err
	})
	measure("create_snap of an inactive origin", func(i int) error { return p.CreateSnap(uint32(300+i), 101) })
	measure("pool status (commits metadata)", func(int) error { _, err := p.Status(false); return err })
	measure("pool status, noflush", func(int) error { _, err := p.Status(true); return err })
	measure("thin deactivation (remove)", func(i int) error { return c.Remove(p.thinName(uint32(100 + i))) })
	measure("delete", func(i int) error { return p.Delete(uint32(300 + i)) })
	measure("info", func(i int) error { _, err := c.Info(p.Name); return err })
	measure("version (one bare ioctl)", func(int) error { _, err := c.Version(); return err })
}
