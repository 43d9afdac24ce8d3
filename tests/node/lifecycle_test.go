//go:build vm

package node

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestFilesystemVolumeKeepsItsDataAcrossRestaging walks a filesystem volume through the
// lifecycle a pod sees, twice: stage (format) → publish → write → unpublish → unstage, then
// restage (no format) → publish somewhere else → the data is there. Every step is repeated
// once to check idempotency.
func TestFilesystemVolumeKeepsItsDataAcrossRestaging(t *testing.T) {
	for _, fsType := range []string{"ext4", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			e := newEnv(t)
			v := e.newVolume(512, tcpA, tcpB) // xfs wants at least 300 MiB
			c := fsCap(fsType)
			ctx := vmenv.Context(t, 3*time.Minute)
			data := randomBytes(t, 4<<20)

			start := time.Now()
			for range 2 {
				must(t, "stage", e.stage(ctx, v, c))
			}
			t.Logf("stage with mkfs.%s: %s", fsType, time.Since(start).Round(time.Millisecond))
			target1 := filepath.Join(e.dir, "pod1", "mount")
			for range 2 {
				must(t, "publish", e.publish(ctx, v, c, target1))
			}
			var st unix.Statfs_t
			must(t, "statfs", unix.Statfs(target1, &st))
			if fsMagic[fsType] != int64(st.Type) {
				t.Errorf("target is file system type %#x, want %s", st.Type, fsType)
			}
			writeSynced(t, filepath.Join(target1, "data"), data)
			stats, err := e.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: v.ID, VolumePath: target1})
			must(t, "stats", err)
			if u := stats.GetUsage(); len(u) != 2 || u[0].GetTotal() < 400<<20 || u[0].GetUsed() < 4<<20 || u[1].GetTotal() == 0 {
				t.Errorf("stats %v", u)
			}
			for range 2 {
				must(t, "unpublish", e.unpublish(ctx, v, target1))
			}
			for range 2 {
				must(t, "unstage", e.unstage(ctx, v))
			}
			e.assertGone(v)

			start = time.Now()
			must(t, "restage", e.stage(ctx, v, c))
			t.Logf("restage of an existing %s: %s", fsType, time.Since(start).Round(time.Millisecond))
			target2 := filepath.Join(e.dir, "pod2", "mount")
			must(t, "publish elsewhere", e.publish(ctx, v, c, target2))
			got, err := os.ReadFile(filepath.Join(target2, "data"))
			must(t, "read back", err)
			if !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes starting %s, wrote %d starting %s", len(got), short(got), len(data), short(data))
			}
			must(t, "unpublish", e.unpublish(ctx, v, target2))
			must(t, "unstage", e.unstage(ctx, v))
			e.assertGone(v)
		})
	}
}

// fsMagic are the statfs f_type values of the supported file systems.
var fsMagic = map[string]int64{"ext4": unix.EXT4_SUPER_MAGIC, "xfs": unix.XFS_SUPER_MAGIC}

func writeSynced(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	must(t, "create", err)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	must(t, "write", err)
}

// TestBlockVolumeOverRDMAKeepsItsData stages a raw block volume over NVMe/RDMA (Soft-RoCE) on
// two portals, publishes it as a device file, writes to it, and reads the data back through
// a second staging.
func TestBlockVolumeOverRDMAKeepsItsData(t *testing.T) {
	e := newEnv(t)
	v := e.newVolume(64, rdmaA, rdmaB)
	c := blockCap()
	ctx := vmenv.Context(t, 3*time.Minute)
	data := randomBytes(t, 1<<20)
	const offset = 8 << 20

	for range 2 {
		must(t, "stage", e.stage(ctx, v, c))
	}
	target1 := filepath.Join(e.dir, "publish", "pod1")
	for range 2 {
		must(t, "publish", e.publish(ctx, v, c, target1))
	}
	fi, err := os.Stat(target1)
	must(t, "stat target", err)
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		t.Fatalf("target is %v, want a block device", fi.Mode())
	}
	f, err := os.OpenFile(target1, os.O_RDWR, 0)
	must(t, "open device", err)
	_, err = f.WriteAt(data, offset)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	must(t, "write device", err)
	stats, err := e.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: v.ID, VolumePath: target1})
	must(t, "stats", err)
	if u := stats.GetUsage(); len(u) != 1 || u[0].GetTotal() != 64<<20 {
		t.Errorf("stats %v, want 64 MiB total", u)
	}
	must(t, "unpublish", e.unpublish(ctx, v, target1))
	if _, err := os.Stat(target1); !os.IsNotExist(err) {
		t.Errorf("target file left: %v", err)
	}
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)

	must(t, "restage", e.stage(ctx, v, c))
	target2 := filepath.Join(e.dir, "publish", "pod2")
	must(t, "publish", e.publish(ctx, v, c, target2))
	f, err = os.Open(target2)
	must(t, "open device", err)
	got := make([]byte, len(data))
	_, err = f.ReadAt(got, offset)
	f.Close()
	must(t, "read device", err)
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %s..., wrote %s...", short(got), short(data))
	}
	must(t, "unpublish", e.unpublish(ctx, v, target2))
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
}
