//go:build vm

package dmthin

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

// TestLifecycle: a pool formatted over two blank loop devices; every operation; data written
// before a snapshot read back from it and from a grown clone; reopened after Close (everything
// still active) and after Shutdown (a reboot); thin_check and thin_ls after each Shutdown.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, "life", 64, 2048)
	p := e.open(t)
	if _, err := dmthin.Open(ctx(t), e.opts); !errors.Is(err, dmthin.ErrPoolBusy) {
		t.Errorf("a second Open of an open pool: %v, want ErrPoolBusy", err)
	}
	u, err := p.Usage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh pool %s: %+v", p.UUID(), u)
	if u.DataBytes != 2047*mib || u.DataUsedBytes != 0 || u.MetadataBytes == 0 || u.Health != "" {
		t.Errorf("fresh pool usage %+v", u)
	}

	// Create, idempotently.
	vol := mustCreate(t, p, "vol-a", 256)
	if vol.Path != "" || !reflect.DeepEqual(vol.Record, record("vol-a", 256)) {
		t.Errorf("created %+v", vol)
	}
	again, err := p.Create(ctx(t), record("vol-a", 256))
	if !errors.Is(err, pool.ErrExists) || again.ID != "vol-a" {
		t.Errorf("second Create: %+v, %v; want ErrExists with the volume", again, err)
	}

	// Activate and write.
	path := mustActivate(t, p, "vol-a")
	if path2 := mustActivate(t, p, "vol-a"); path2 != path {
		t.Errorf("second Activate: %s, first %s", path2, path)
	}
	if got := blocktest.Size(t, path); got != 256*mib {
		t.Errorf("device of %d bytes, want %d", got, 256*mib)
	}
	before := blocktest.Pattern(1, 4*mib)
	blocktest.Write(t, path, mib, before)

	// Read-only snapshot of the active origin.
	snap, err := p.Snapshot(ctx(t), "vol-a", record("snap-a", 256), true)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Source != "" || snap.SizeBytes != 256*mib {
		t.Errorf("snapshot %+v", snap)
	}
	noSuspended(t, e.opts.Name)
	after := blocktest.Pattern(2, 4*mib)
	blocktest.Write(t, path, mib, after)
	snapPath := mustActivate(t, p, "snap-a")
	blocktest.Expect(t, snapPath, mib, before, "snapshot")
	blocktest.Expect(t, path, mib, after, "origin after the snapshot")
	if fd, err := unix.Open(snapPath, unix.O_WRONLY, 0); err == nil {
		_, werr := unix.Pwrite(fd, make([]byte, 4096), 0)
		unix.Close(fd)
		if werr == nil {
			t.Error("wrote to a read-only snapshot")
		}
	}

	// A clone of the snapshot, larger than it.
	clone, err := p.Snapshot(ctx(t), "snap-a", record("clone-a", 512), false)
	if err != nil || clone.SizeBytes != 512*mib {
		t.Fatalf("clone: %+v, %v", clone, err)
	}
	clonePath := mustActivate(t, p, "clone-a")
	if got := blocktest.Size(t, clonePath); got != 512*mib {
		t.Errorf("grown clone of %d bytes", got)
	}
	blocktest.Expect(t, clonePath, mib, before, "clone")
	tail := blocktest.Pattern(3, mib)
	blocktest.Write(t, clonePath, 400*mib, tail) // beyond the origin's size

	// Errors.
	for what, err := range map[string]error{
		"a smaller clone":           errOf(p.Snapshot(ctx(t), "vol-a", record("small", 128), false)),
		"a snapshot of nothing":     errOf(p.Snapshot(ctx(t), "vol-none", record("s2", 256), true)),
		"Get of nothing":            errOf(p.Get(ctx(t), "vol-none")),
		"Delete of nothing":         p.Delete(ctx(t), "vol-none"),
		"Resize of nothing":         errOf(p.Resize(ctx(t), "vol-none", gib)),
		"an ID with a slash":        errOf(p.Create(ctx(t), record("a/b", 1))),
		"a size not whole sectors":  errOf(p.Create(ctx(t), pool.Record{ID: "odd", SizeBytes: 1000})),
		"a snapshot onto an origin": errOf(p.Snapshot(ctx(t), "vol-a", record("vol-a", 256), true)),
	} {
		t.Logf("%-26s → %v", what, err)
		if !errors.Is(err, pool.ErrInvalid) && !errors.Is(err, pool.ErrNotFound) {
			t.Errorf("%s: %v, want ErrInvalid or ErrNotFound", what, err)
		}
	}

	// Resize the active origin.
	if v, err := p.Resize(ctx(t), "vol-a", 384*mib); err != nil || v.SizeBytes != 384*mib {
		t.Fatalf("Resize: %+v, %v", v, err)
	}
	if got := blocktest.Size(t, path); got != 384*mib {
		t.Errorf("device of %d bytes after Resize, want %d", got, 384*mib)
	}
	if v, err := p.Resize(ctx(t), "vol-a", 128*mib); err != nil || v.SizeBytes != 384*mib {
		t.Errorf("Resize to less: %+v, %v; want no change", v, err)
	}
	blocktest.Expect(t, path, mib, after, "origin after Resize")

	// Hosts.
	hosts := []pool.Host{{NQN: "nqn.2014-08.org.nvmexpress:uuid:host-1", NodeID: "node-1"}, {NQN: "nqn.h2", ReadOnly: true}}
	if v, err := p.SetHosts(ctx(t), "vol-a", hosts, []string{"tcp"}); err != nil || !reflect.DeepEqual(v.Hosts, hosts) {
		t.Fatalf("SetHosts: %+v, %v", v, err)
	}

	// Delete: refused while open, then done; the snapshot's clone is unaffected.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx(t), "vol-a"); !errors.Is(err, pool.ErrInUse) {
		t.Errorf("Delete of an open volume: %v, want ErrInUse", err)
	}
	f.Close()
	if _, err := p.Get(ctx(t), "vol-a"); err != nil {
		t.Errorf("the volume a refused Delete left: %v", err)
	}
	if err := p.Delete(ctx(t), "vol-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node %s after Delete: %v", path, err)
	}
	if err := p.Delete(ctx(t), "snap-a"); err != nil {
		t.Fatal(err)
	}
	blocktest.Expect(t, clonePath, mib, before, "clone after its origins were deleted")

	list, err := p.List(ctx(t))
	if err != nil || len(list) != 1 || list[0].ID != "clone-a" || list[0].Path != clonePath {
		t.Fatalf("List: %+v, %v", list, err)
	}
	u, _ = p.Usage(ctx(t))
	t.Logf("usage: %+v", u)
	if u.DataUsedBytes == 0 {
		t.Errorf("the pool holds data but says %+v", u)
	}

	// Reopen with everything active (an agent restart).
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = e.open(t)
	if got, _ := p.List(ctx(t)); !reflect.DeepEqual(got, list) {
		t.Errorf("after reopen: %+v, want %+v", got, list)
	}
	noSuspended(t, e.opts.Name)
	blocktest.Expect(t, clonePath, 400*mib, tail, "clone after reopen")

	// Shutdown (a reboot): thin_check, and everything back after Open.
	e.shutdown(t, p)
	p = e.open(t)
	got, _ := p.List(ctx(t))
	if len(got) != 1 || got[0].Path != "" || !reflect.DeepEqual(got[0].Record, list[0].Record) {
		t.Errorf("after a reboot: %+v", got)
	}
	clonePath = mustActivate(t, p, "clone-a")
	blocktest.Expect(t, clonePath, mib, before, "clone after a reboot")
	blocktest.Expect(t, clonePath, 400*mib, tail, "clone after a reboot")
	e.shutdown(t, p)
}

func errOf(_ pool.Volume, err error) error { return err }

// TestMovedDisks: a pool's two devices opened under another name (a new server) hold
// everything; a metadata device paired with another pool's data device is refused.
func TestMovedDisks(t *testing.T) {
	a := newEnv(t, "mova", 16, 256)
	b := newEnv(t, "movb", 16, 256)
	pa := a.open(t)
	mustCreate(t, pa, "vol-1", 64)
	blocktest.Write(t, mustActivate(t, pa, "vol-1"), 0, blocktest.Pattern(9, mib))
	a.shutdown(t, pa)
	pb := b.open(t)
	b.shutdown(t, pb)

	for _, mix := range []dmthin.Options{
		{MetadataDevice: a.opts.MetadataDevice, DataDevice: b.opts.DataDevice, Name: "dmt-mix", NodeDir: a.opts.NodeDir},
		{MetadataDevice: b.opts.MetadataDevice, DataDevice: a.opts.DataDevice, Name: "dmt-mix", NodeDir: a.opts.NodeDir},
		{MetadataDevice: a.opts.DataDevice, DataDevice: a.opts.MetadataDevice, Name: "dmt-mix", NodeDir: a.opts.NodeDir},
	} {
		_, err := dmthin.Open(ctx(t), mix)
		t.Logf("metadata %s, data %s → %v", mix.MetadataDevice, mix.DataDevice, err)
		if !errors.Is(err, dmthin.ErrForeignDevice) {
			t.Errorf("a mismatched pair opened: %v", err)
		}
	}

	moved := a
	moved.opts.Name = "dmt-moved"
	p := moved.open(t)
	v, err := p.Get(ctx(t), "vol-1")
	if err != nil || !reflect.DeepEqual(v.Record, record("vol-1", 64)) {
		t.Fatalf("after the move: %+v, %v", v, err)
	}
	blocktest.Expect(t, mustActivate(t, p, "vol-1"), 0, blocktest.Pattern(9, mib), "volume after the move")
	moved.shutdown(t, p)
}
