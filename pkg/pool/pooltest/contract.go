package pooltest

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// IDs as the agent makes them (agentapi.VolumeID / SnapshotID): 32 hex digits after the prefix.
func volID(n int) string  { return fmt.Sprintf("vol-%032x", n) }
func snapID(n int) string { return fmt.Sprintf("snap-%032x", n) }

func testRecordsSurviveReopen(t *testing.T, h *harness) {
	rec := Record(volID(1), 64*MiB)
	rec.Hosts = []pool.Host{{NQN: "nqn.2014-08.org.nvmexpress:uuid:1", NodeID: "worker-1/nqn.2014-08.org.nvmexpress:uuid:1"}}
	rec.Transports = []string{"tcp"}
	sameRecord(t, h.create(rec), rec)
	sameRecord(t, h.get(rec.ID), rec)
	h.reopen()
	sameRecord(t, h.get(rec.ID), rec)
	list, err := h.p.List(h.ctx())
	if err != nil || len(list) != 1 || list[0].ID != rec.ID {
		t.Fatalf("List = %v, %v; want exactly %s", list, err, rec.ID)
	}
	h.check(rec.ID)
}

func testCreateExists(t *testing.T, h *harness) {
	rec := Record(volID(1), 64*MiB)
	h.create(rec)
	again := Record(volID(1), 128*MiB)
	v, err := h.p.Create(h.ctx(), again)
	wantErr(t, err, pool.ErrExists, "Create of a taken ID")
	sameRecord(t, v, rec) // the existing volume, unchanged, so the caller can compare
	h.check(rec.ID)
}

func testSnapshotsAndClones(t *testing.T, h *harness) {
	vol := Record(volID(1), 64*MiB)
	h.create(vol)
	dev := h.activate(vol.ID)
	writeBlock(t, dev, 0, 'A')
	writeBlock(t, dev, 32*MiB, 'A')

	snap := Record(snapID(2), vol.SizeBytes)
	snap.Source = vol.ID
	sameRecord(t, h.snapshot(vol.ID, snap, true), snap)
	writeBlock(t, dev, 0, 'B') // after the snapshot: the snapshot keeps A

	clone := Record(volID(3), vol.SizeBytes)
	clone.Source = snap.ID
	sameRecord(t, h.snapshot(snap.ID, clone, false), clone)

	snapDev, cloneDev := h.activate(snap.ID), h.activate(clone.ID)
	wantBlock(t, snapDev, 0, 'A', "snapshot taken before the overwrite")
	wantBlock(t, snapDev, 32*MiB, 'A', "snapshot")
	wantBlock(t, snapDev, 16*MiB, 0, "snapshot, never written")
	wantBlock(t, cloneDev, 0, 'A', "clone of the snapshot")
	if err := blocktest.WriteAt(snapDev, 0, pattern('X')); err == nil {
		t.Fatal("a read-only snapshot took a write")
	}
	writeBlock(t, cloneDev, 0, 'C')
	wantBlock(t, cloneDev, 0, 'C', "clone after its own write")
	wantBlock(t, snapDev, 0, 'A', "snapshot after a write to its clone")
	wantBlock(t, dev, 0, 'B', "origin after writes to its snapshot's clone")
	h.check(vol.ID, snap.ID, clone.ID)
	wantBlock(t, h.activate(clone.ID), 0, 'C', "clone after a reopen")
}

func testCloneSizes(t *testing.T, h *harness) {
	vol := Record(volID(1), 64*MiB)
	h.create(vol)
	writeBlock(t, h.activate(vol.ID), 60*MiB, 'A')
	big := Record(volID(2), 256*MiB)
	big.Source = vol.ID
	sameRecord(t, h.snapshot(vol.ID, big, false), big)
	dev := h.activate(big.ID)
	if got := blocktest.Size(t, dev); got != big.SizeBytes {
		t.Fatalf("grown clone's device is %d bytes, want %d", got, big.SizeBytes)
	}
	wantBlock(t, dev, 60*MiB, 'A', "grown clone, inside its origin's size")
	writeBlock(t, dev, 200*MiB, 'G')
	wantBlock(t, dev, 200*MiB, 'G', "grown clone, beyond its origin's size")

	small := Record(volID(3), 32*MiB)
	small.Source = vol.ID
	_, err := h.p.Snapshot(h.ctx(), vol.ID, small, false)
	wantErr(t, err, pool.ErrInvalid, "clone smaller than its origin")
	if _, err := h.p.Get(h.ctx(), small.ID); err == nil {
		t.Fatal("a refused clone exists")
	}
	h.check(vol.ID, big.ID)
}

func testMissingOrigin(t *testing.T, h *harness) {
	rec := Record(snapID(1), 64*MiB)
	_, err := h.p.Snapshot(h.ctx(), volID(99), rec, true)
	wantErr(t, err, pool.ErrNotFound, "snapshot of a missing origin")
	h.check()
}

func testDelete(t *testing.T, h *harness) {
	vol := Record(volID(1), 64*MiB)
	h.create(vol)
	dev := h.activate(vol.ID)
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, h.p.Delete(h.ctx(), vol.ID), pool.ErrInUse, "Delete of an open device")
	h.get(vol.ID) // still there
	f.Close()
	if err := h.p.Delete(h.ctx(), vol.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = h.p.Get(h.ctx(), vol.ID)
	wantErr(t, err, pool.ErrNotFound, "Get after Delete")
	wantErr(t, h.p.Delete(h.ctx(), vol.ID), pool.ErrNotFound, "second Delete")
	h.check()
}

func testSnapshotOutlivesOrigin(t *testing.T, h *harness) {
	vol := Record(volID(1), 64*MiB)
	h.create(vol)
	writeBlock(t, h.activate(vol.ID), 4*MiB, 'S')
	snap := Record(snapID(2), vol.SizeBytes)
	snap.Source = vol.ID
	h.snapshot(vol.ID, snap, true)
	if err := h.p.Delete(h.ctx(), vol.ID); err != nil {
		t.Fatalf("Delete of a snapshotted origin: %v", err)
	}
	wantBlock(t, h.activate(snap.ID), 4*MiB, 'S', "snapshot after its origin was deleted")
	h.check(snap.ID)
}

func testResize(t *testing.T, h *harness) {
	vol := Record(volID(1), 64*MiB)
	h.create(vol)
	dev := h.activate(vol.ID)
	writeBlock(t, dev, 0, 'R')
	v, err := h.p.Resize(h.ctx(), vol.ID, 192*MiB)
	if err != nil || v.SizeBytes != 192*MiB {
		t.Fatalf("Resize = %+v, %v", v.Record, err)
	}
	if got := blocktest.Size(t, h.activate(vol.ID)); got != 192*MiB {
		t.Fatalf("active device is %d bytes after Resize, want %d", got, 192*MiB)
	}
	writeBlock(t, dev, 150*MiB, 'Z')
	if v, err = h.p.Resize(h.ctx(), vol.ID, 32*MiB); err != nil || v.SizeBytes != 192*MiB {
		t.Fatalf("Resize to a smaller size = %+v, %v; want no change", v.Record, err)
	}
	_, err = h.p.Resize(h.ctx(), volID(9), 192*MiB)
	wantErr(t, err, pool.ErrNotFound, "Resize of a missing volume")
	h.check(vol.ID)
	if got := h.get(vol.ID).SizeBytes; got != 192*MiB {
		t.Fatalf("size after reopen %d", got)
	}
	wantBlock(t, h.activate(vol.ID), 0, 'R', "data before the resize")
}

func testSetHosts(t *testing.T, h *harness) {
	rec := Record(volID(1), 64*MiB)
	h.create(rec)
	hosts := []pool.Host{
		{NQN: "nqn.2014-08.org.nvmexpress:uuid:a", NodeID: "worker-a/nqn.2014-08.org.nvmexpress:uuid:a"},
		{NQN: "nqn.2014-08.org.nvmexpress:uuid:b", NodeID: "worker-b/nqn.2014-08.org.nvmexpress:uuid:b", ReadOnly: true},
		// With DH-HMAC-CHAP keys, which the record keeps through a reopen.
		{NQN: "nqn.2014-08.org.nvmexpress:uuid:c", NodeID: "worker-c/nqn.2014-08.org.nvmexpress:uuid:c",
			DHCHAPKey:       "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:",
			DHCHAPCtrlKey:   "DHHC-1:00:r9WLxLBDkFzrYpGaRI2NVLgrWDvaGsS3Ufa0mVY5rTgXwz6G:",
			KeysSetUnixNano: 1764763200000000000},
	}
	v, err := h.p.SetHosts(h.ctx(), rec.ID, hosts, []string{"tcp", "rdma"})
	if err != nil {
		t.Fatal(err)
	}
	rec.Hosts, rec.Transports = hosts, []string{"tcp", "rdma"}
	sameRecord(t, v, rec)
	h.reopen()
	sameRecord(t, h.get(rec.ID), rec)
	if v, err = h.p.SetHosts(h.ctx(), rec.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	rec.Hosts, rec.Transports = nil, nil
	sameRecord(t, v, rec)
	h.reopen()
	sameRecord(t, h.get(rec.ID), rec)
	_, err = h.p.SetHosts(h.ctx(), volID(9), hosts, nil)
	wantErr(t, err, pool.ErrNotFound, "SetHosts of a missing volume")
	h.check(rec.ID)
}

func testUsage(t *testing.T, h *harness) {
	before, err := h.p.Usage(h.ctx())
	if err != nil || before.DataBytes <= 0 || before.MetadataBytes <= 0 || before.Health != "" {
		t.Fatalf("Usage = %+v, %v", before, err)
	}
	h.create(Record(volID(1), 64*MiB))
	dev := h.activate(volID(1))
	for off := int64(0); off < 64*MiB; off += MiB {
		writeBlock(t, dev, off, 'U')
	}
	after, err := h.p.Usage(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	// 64 blocks of 4 KiB, each in its own MiB, take at least 64 pool blocks of ≥ 64 KiB (4 MiB);
	// LVM reports usage to 0.01% of the pool, so ask for half of that.
	if after.DataUsedBytes-before.DataUsedBytes < 2*MiB || after.MetadataUsedBytes < before.MetadataUsedBytes {
		t.Fatalf("usage did not grow with the data: before %+v, after %+v", before, after)
	}
	// The device's own use: the same 64 pool blocks; none for a device never written (absent
	// while inactive) or an unknown ID.
	h.create(Record(volID(2), 64*MiB))
	if ur, ok := h.p.(pool.UsedReporter); ok {
		used, err := ur.Used(h.ctx(), []string{volID(1), volID(2), volID(9)})
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := used[volID(1)]; !ok || n < 2*MiB || n > 64*MiB {
			t.Errorf("Used of the written volume = %d (known %v); want 64 pool blocks' worth, 2–64 MiB", n, ok)
		}
		if _, ok := used[volID(9)]; ok || used[volID(2)] != 0 {
			t.Errorf("Used = %v; want nothing for the unwritten volume and the unknown ID", used)
		}
	}
	h.check(volID(1), volID(2))
}

func testParallelCreates(t *testing.T, h *harness) {
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = volID(100 + i)
		wg.Go(func() {
			_, errs[i] = h.p.Create(h.ctx(), Record(ids[i], 64*MiB))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Create(%s): %v", ids[i], err)
		}
	}
	list, err := h.p.List(h.ctx())
	if err != nil || len(list) != n {
		t.Fatalf("List: %d volumes, %v; want %d", len(list), err, n)
	}
	h.check(ids...)
}

func testGroupSnapshot(t *testing.T, h *harness) {
	var specs []pool.SnapshotSpec
	var devs []string
	var ids []string
	for i := range 3 {
		v := Record(volID(i+1), 64*MiB)
		h.create(v)
		devs = append(devs, h.activate(v.ID))
		writeBlock(t, devs[i], 0, byte('a'+i))
		s := Record(snapID(i+1), v.SizeBytes)
		s.Source = v.ID
		specs = append(specs, pool.SnapshotSpec{Origin: v.ID, Record: s})
		ids = append(ids, v.ID, s.ID)
	}
	got, err := h.p.SnapshotGroup(h.ctx(), specs)
	if !h.b.GroupSnapshots {
		wantErr(t, err, pool.ErrUnsupported, "SnapshotGroup")
		h.check(ids[0], ids[2], ids[4])
		return
	}
	if err != nil || len(got) != len(specs) {
		t.Fatalf("SnapshotGroup = %d snapshots, %v", len(got), err)
	}
	for i, s := range specs {
		sameRecord(t, got[i], s.Record)
		writeBlock(t, devs[i], 0, 'z')
		wantBlock(t, h.activate(s.Record.ID), 0, byte('a'+i), "group snapshot member")
	}
	h.check(ids...)
}
