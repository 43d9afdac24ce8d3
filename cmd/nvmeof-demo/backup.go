package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// backupResult is what the backup step measured.
type backupResult struct {
	ran bool
	// groupCall is how long CreateVolumeGroupSnapshot took; groupStall the longest write the
	// database did meanwhile (its writes were held for at most that).
	groupCall, groupStall time.Duration
	volume                int64 // prod-db's size
	full, incr            int64 // bytes the full and the incremental backup moved
	fullTook, incrTook    time.Duration
	deltaTook             time.Duration // GetMetadataDelta, to the last range
	changed               int64         // what the day wrote to prod-db
}

// dbWriter is the production database while the backups run: it appends 4 KiB records to
// its WAL (prod-wal) and writes 4 KiB pages of its data file (prod-db), each write synced
// (O_DSYNC) before the next, and records the longest write it saw while measuring.
type dbWriter struct {
	wal, data *os.File
	measuring atomic.Bool
	longest   atomic.Int64
	stop      chan struct{}
	done      chan error
}

func startDBWriter(walDir, dataDir string) (*dbWriter, error) {
	wal, err := os.OpenFile(filepath.Join(walDir, "wal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_DSYNC, 0o644)
	if err != nil {
		return nil, err
	}
	data, err := os.OpenFile(filepath.Join(dataDir, "db.pages"), os.O_CREATE|os.O_WRONLY|unix.O_DSYNC, 0o644)
	if err != nil {
		_ = wal.Close()
		return nil, err
	}
	w := &dbWriter{wal: wal, data: data, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.run() }()
	return w, nil
}

func (w *dbWriter) run() error {
	rec := make([]byte, 4096)
	for i := int64(0); ; i++ {
		select {
		case <-w.stop:
			return nil
		default:
		}
		_, _ = rand.Read(rec)
		start := time.Now()
		if _, err := w.wal.Write(rec); err != nil {
			return fmt.Errorf("WAL append: %w", err)
		}
		if _, err := w.data.WriteAt(rec, (i%1024)*4096); err != nil {
			return fmt.Errorf("data page: %w", err)
		}
		if w.measuring.Load() {
			d := int64(time.Since(start))
			for old := w.longest.Load(); d > old && !w.longest.CompareAndSwap(old, d); old = w.longest.Load() {
			}
		}
	}
}

// measure runs fn and returns the longest write the database did meanwhile.
func (w *dbWriter) measure(fn func() error) (time.Duration, error) {
	w.longest.Store(0)
	w.measuring.Store(true)
	err := fn()
	w.measuring.Store(false)
	return time.Duration(w.longest.Load()), err
}

func (w *dbWriter) halt() error {
	close(w.stop)
	err := <-w.done
	return errors.Join(err, w.wal.Close(), w.data.Close())
}

// backup is the nightly backup of the production database: its data (prod-db) and WAL
// (prod-wal) volumes group-snapshotted at one instant while it writes, a full backup of
// prod-db from the allocated blocks of the first night's snapshot, a day of changes, and an
// incremental backup from the blocks that changed between the two nights' snapshots (CSI
// SnapshotMetadata), rebuilt and compared with the second night's snapshot byte for byte.
func (d *demo) backup(ctx context.Context) error {
	r, k := d.r, d.k
	r.section("5/7 Nightly backup: the database's data and WAL volumes snapshotted at one instant, then only what changed")
	walSize := int64(1 << 30)
	var wal *pv
	var walPath string
	var err error
	if _, err := r.step(fmt.Sprintf("CreateVolume prod-wal (%s), publish, stage, mount: the database's WAL", human(walSize)), func() error {
		if wal, err = k.provision(ctx, "prod-wal", walSize, false, nil); err != nil {
			return err
		}
		if err := k.attach(ctx, wal); err != nil {
			return err
		}
		walPath, err = k.mount(ctx, wal, "prod-db-0")
		return err
	}); err != nil {
		return err
	}
	db, err := startDBWriter(walPath, d.prodPath)
	if err != nil {
		return err
	}
	defer func() {
		if db != nil {
			_ = db.halt()
		}
	}()
	r.note("the database writes on: 4 KiB WAL appends and data pages, each synced")

	res := &d.res.backup
	res.volume = int64(d.o.volumeSize)
	var night1 []*csi.Snapshot
	if _, err := r.step("CreateVolumeGroupSnapshot nightly-1 of prod-db and prod-wal (no freeze: one write hold)", func() error {
		res.groupStall, err = db.measure(func() error {
			start := time.Now()
			night1, err = k.groupSnapshot(ctx, "nightly-1", d.prod, wal)
			res.groupCall = time.Since(start)
			return err
		})
		return err
	}); err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			r.note("refused, as it must be on the %s backend: %v", d.o.backend, err)
			r.note("(run with --backend=dmthin, the default, for group snapshots and changed-block backups)")
			return db.halt()
		}
		return err
	}
	res.ran = true
	r.note("the database's longest write during the group snapshot: %s (the call took %s)", ms(res.groupStall), ms(res.groupCall))

	dir := d.e.path("backup")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	image := filepath.Join(dir, "prod-db.img")
	var ranges []byteRange
	if res.fullTook, err = r.step("full backup of nightly-1's prod-db: GetMetadataAllocated, copy those blocks", func() error {
		if ranges, err = k.allocated(ctx, memberOf(night1, d.prod.id)); err != nil {
			return err
		}
		res.full, err = d.copyRanges(ctx, "backup-nightly-1", memberOf(night1, d.prod.id), ranges, image, true)
		return err
	}); err != nil {
		return err
	}
	r.note("moved %s of the %s volume (%d extents: what the file system wrote)", human(res.full), human(res.volume), len(ranges))

	res.changed = max(int64(d.o.datasetSize)/10, 4<<20)
	if _, err := r.step(fmt.Sprintf("a day of changes: %s of new data in prod-db, synced", human(res.changed)), func() error {
		return writeChanges(d.prodPath, res.changed)
	}); err != nil {
		return err
	}
	var night2 []*csi.Snapshot
	if _, err := r.step("CreateVolumeGroupSnapshot nightly-2", func() error {
		night2, err = k.groupSnapshot(ctx, "nightly-2", d.prod, wal)
		return err
	}); err != nil {
		return err
	}
	if _, err := r.step("incremental backup: GetMetadataDelta nightly-1 → nightly-2, copy those blocks onto the image", func() error {
		start := time.Now()
		if ranges, err = k.delta(ctx, memberOf(night1, d.prod.id), memberOf(night2, d.prod.id)); err != nil {
			return err
		}
		res.deltaTook = time.Since(start)
		res.incr, err = d.copyRanges(ctx, "backup-nightly-2", memberOf(night2, d.prod.id), ranges, image, false)
		res.incrTook = time.Since(start)
		return err
	}); err != nil {
		return err
	}
	r.note("moved %s (%.1f%% of the volume, %d extents); the delta took %s to compute", human(res.incr),
		100*float64(res.incr)/float64(res.volume), len(ranges), ms(res.deltaTook))
	if _, err := r.step("the image rebuilt from full + incremental is nightly-2's prod-db, byte for byte", func() error {
		return d.sameAsSnapshot(ctx, image, "verify-nightly-2", memberOf(night2, d.prod.id))
	}); err != nil {
		return err
	}
	err = db.halt()
	db = nil
	return err
}

// memberOf returns the ID of the member of a group snapshot taken of volume id.
func memberOf(members []*csi.Snapshot, id string) string {
	for _, s := range members {
		if s.GetSourceVolumeId() == id {
			return s.GetSnapshotId()
		}
	}
	return ""
}

type byteRange struct{ off, n int64 }

// copyRanges restores snapshot as a raw block volume in a backup job's pod and copies ranges of
// it into the image file (created, as large as the snapshot, when create is set). It returns
// the bytes copied.
func (d *demo) copyRanges(ctx context.Context, claim, snapshot string, ranges []byteRange, image string, create bool) (int64, error) {
	dev, err := d.restoreBlock(ctx, claim, snapshot)
	if err != nil {
		return 0, err
	}
	src, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	flags := os.O_WRONLY
	if create {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	dst, err := os.OpenFile(image, flags, 0o640)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	if create {
		if err := dst.Truncate(int64(d.o.volumeSize)); err != nil {
			return 0, err
		}
	}
	buf := make([]byte, 1<<20)
	var moved int64
	for _, rg := range ranges {
		for off := rg.off; off < rg.off+rg.n; {
			if err := ctx.Err(); err != nil {
				return moved, err
			}
			n := min(int64(len(buf)), rg.off+rg.n-off)
			if _, err := src.ReadAt(buf[:n], off); err != nil {
				return moved, fmt.Errorf("read %s at %d: %w", dev, off, err)
			}
			if _, err := dst.WriteAt(buf[:n], off); err != nil {
				return moved, err
			}
			moved += n
			off += n
		}
	}
	return moved, dst.Sync()
}

// restoreBlock provisions a raw block volume from a snapshot and returns its device in the
// backup job's pod.
func (d *demo) restoreBlock(ctx context.Context, claim, snapshot string) (string, error) {
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapshot}}}
	v, err := d.k.provision(ctx, claim, int64(d.o.volumeSize), true, src)
	if err != nil {
		return "", err
	}
	if err := d.k.attach(ctx, v); err != nil {
		return "", err
	}
	return d.k.mount(ctx, v, claim+"-job")
}

// sameAsSnapshot compares the image with a snapshot restored as a raw block volume, byte for
// byte, over every block either holds: the snapshot's allocated ranges and the image's data
// (its extents, found with SEEK_DATA). Everywhere else both read as zeros: the image has holes
// there and the snapshot maps no block (a thin device reads unmapped blocks as zeros).
func (d *demo) sameAsSnapshot(ctx context.Context, image, claim, snapshot string) error {
	mapped, err := d.k.allocated(ctx, snapshot)
	if err != nil {
		return err
	}
	data, err := dataExtents(image, int64(d.o.volumeSize))
	if err != nil {
		return err
	}
	ranges := union(mapped, data)
	dev, err := d.restoreBlock(ctx, claim, snapshot)
	if err != nil {
		return err
	}
	files := make([]*os.File, 2)
	for i, path := range []string{image, dev} {
		if files[i], err = os.Open(path); err != nil {
			return err
		}
		defer files[i].Close()
	}
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	var compared int64
	for _, rg := range ranges {
		for off := rg.off; off < rg.off+rg.n; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(a)), rg.off+rg.n-off)
			if _, err := files[0].ReadAt(a[:n], off); err != nil {
				return fmt.Errorf("read the image at %d: %w", off, err)
			}
			if _, err := files[1].ReadAt(b[:n], off); err != nil {
				return fmt.Errorf("read %s at %d: %w", dev, off, err)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				return fmt.Errorf("the rebuilt image differs from the snapshot in the MiB at byte %d", off)
			}
			compared += n
			off += n
		}
	}
	d.r.note("compared %s: every block the snapshot maps (%d extents) and every block the image holds; the rest reads as zeros in both", human(compared), len(mapped))
	return nil
}

// dataExtents lists the data (non-hole) ranges of a sparse file below size.
func dataExtents(path string, size int64) ([]byteRange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []byteRange
	for off := int64(0); off < size; {
		start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return nil, fmt.Errorf("SEEK_DATA %s: %w", path, err)
		}
		end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE %s: %w", path, err)
		}
		end = min(end, size)
		if end > start {
			out = append(out, byteRange{start, end - start})
		}
		off = end
	}
	return out, nil
}

// union merges lists of ranges into one ascending list of disjoint ranges.
func union(a, b []byteRange) []byteRange {
	all := append(slices.Clone(a), b...)
	slices.SortFunc(all, func(x, y byteRange) int { return cmp.Compare(x.off, y.off) })
	var out []byteRange
	for _, r := range all {
		if n := len(out); n > 0 && r.off <= out[n-1].off+out[n-1].n {
			out[n-1].n = max(out[n-1].n, r.off+r.n-out[n-1].off)
			continue
		}
		out = append(out, r)
	}
	return out
}

// writeChanges writes n bytes of new data into a file of dir and syncs it.
func writeChanges(dir string, n int64) error {
	f, err := os.Create(filepath.Join(dir, "day-2.tx"))
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(buf)) {
		_, _ = rand.Read(buf)
		if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
