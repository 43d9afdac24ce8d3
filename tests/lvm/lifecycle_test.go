//go:build vm

package lvm

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const mib = 1 << 20

// TestLifecycle walks a volume through what the agent does with it: create, write, snapshot,
// clone, diverge, extend, tag, remove; checking the data at each step with the real kernel.
func TestLifecycle(t *testing.T) {
	p := newPool(t, "nvlife", 4096)
	u0, err := p.Usage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if u0.DataBytes == 0 || u0.MetadataBytes == 0 || u0.VirtualBytes != 0 || u0.Health != "" {
		t.Fatalf("fresh pool usage = %+v", u0)
	}

	// Create: the size is rounded up to the 4 MiB extent; tags carry arbitrary values.
	uuidTag := lvm.EncodeTag("nvmeof.csi.io/uuid", "6f1c2a4e-0d2b-4d5e-9a51-3f0e8c7b1d22")
	oddTag := lvm.EncodeTag("nvmeof.csi.io/odd key", "a=b, #c é\x00")
	start := time.Now()
	vol, err := p.Create(ctx(t), "pvc-1", 100*mib+1, []string{uuidTag, oddTag})
	step(t, "Create", start)
	if err != nil {
		t.Fatal(err)
	}
	if vol.SizeBytes != 104*mib || !vol.Active || vol.ReadOnly || vol.Path != "/dev/nvlife/pvc-1" {
		t.Errorf("Create = %+v", vol)
	}
	mustExist(t, vol.Path)
	if got := blocktest.Size(t, vol.Path); got != vol.SizeBytes {
		t.Errorf("kernel size %d, lvs size %d", got, vol.SizeBytes)
	}
	if v, ok := lvm.TagValue(vol.Tags, "nvmeof.csi.io/odd key"); !ok || v != "a=b, #c é\x00" {
		t.Errorf("odd tag came back as %q, %v (tags %q)", v, ok, vol.Tags)
	}

	// Create again: ErrExists, with the existing LV for an idempotency check.
	if again, err := p.Create(ctx(t), "pvc-1", 100*mib, nil); !errors.Is(err, lvm.ErrExists) || again.SizeBytes != vol.SizeBytes {
		t.Errorf("second Create = %+v, %v; want the LV and ErrExists", again, err)
	}

	dataA := blocktest.Pattern(1, 8*mib)
	blocktest.Write(t, vol.Path, 0, dataA)
	if u, err := p.Usage(ctx(t)); err != nil || u.DataUsedBytes < u0.DataUsedBytes+7*mib || u.VirtualBytes != vol.SizeBytes {
		t.Errorf("usage after writing 8 MiB = %+v, %v (before: %+v)", u, err, u0)
	}

	// Snapshot (read-only), then a clone of the snapshot (writable).
	start = time.Now()
	snap, err := p.Snapshot(ctx(t), "pvc-1", "snap-1", true, []string{lvm.EncodeTag("source", "pvc-1")})
	step(t, "Snapshot", start)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.ReadOnly || !snap.Active || snap.SkipActivation || snap.Origin != "pvc-1" || snap.SizeBytes != vol.SizeBytes {
		t.Errorf("Snapshot = %+v", snap)
	}
	mustExist(t, snap.Path)
	// The kernel lets a read-only device be opened for writing; the writes themselves fail.
	if ro := strings.TrimSpace(vmenv.Run(t, "blockdev", "--getro", snap.Path)); ro != "1" {
		t.Errorf("blockdev --getro %s = %s, want 1", snap.Path, ro)
	}
	if _, err := (command.Exec{}).Run(ctx(t), "dd", "if=/dev/zero", "of="+snap.Path, "bs=1M", "count=1",
		"oflag=direct", "conv=notrunc", "status=none"); err == nil {
		t.Errorf("wrote to a read-only snapshot")
	}
	clone, err := p.Snapshot(ctx(t), "snap-1", "clone-1", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if clone.ReadOnly || !clone.Active || clone.Origin != "snap-1" {
		t.Errorf("clone = %+v", clone)
	}
	mustExist(t, clone.Path)
	blocktest.Expect(t, clone.Path, 0, dataA, "clone before writes")

	// The clone diverges; origin and snapshot do not move. Then the origin diverges.
	dataB := blocktest.Pattern(2, 4*mib)
	blocktest.Write(t, clone.Path, 0, dataB)
	blocktest.Expect(t, clone.Path, 0, dataB, "clone after its write")
	blocktest.Expect(t, vol.Path, 0, dataA, "origin after the clone's write")
	dataC := blocktest.Pattern(3, 4*mib)
	blocktest.Write(t, vol.Path, 0, dataC)
	blocktest.Expect(t, snap.Path, 0, dataA, "snapshot after the origin's write")
	blocktest.Expect(t, clone.Path, 0, dataB, "clone after the origin's write")

	// Extend grows, the kernel sees it, and smaller requests are no-ops.
	start = time.Now()
	big, err := p.Extend(ctx(t), "pvc-1", 200*mib)
	step(t, "Extend", start)
	if err != nil || big.SizeBytes != 200*mib {
		t.Fatalf("Extend = %+v, %v", big, err)
	}
	if got := blocktest.Size(t, vol.Path); got != 200*mib {
		t.Errorf("kernel size after Extend = %d", got)
	}
	if same, err := p.Extend(ctx(t), "pvc-1", 150*mib); err != nil || same.SizeBytes != 200*mib {
		t.Errorf("smaller Extend = %+v, %v", same, err)
	}
	blocktest.Expect(t, vol.Path, 0, dataC[:4*mib], "origin after Extend")

	// Tags.
	host := lvm.EncodeTag("host", "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427")
	if err := p.AddTags(ctx(t), "pvc-1", host, host); err != nil {
		t.Fatal(err)
	}
	if err := p.DelTags(ctx(t), "pvc-1", uuidTag, "never-there"); err != nil {
		t.Fatal(err)
	}
	got, err := p.Get(ctx(t), "pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got.Tags, uuidTag) || !slices.Contains(got.Tags, host) || len(got.Tags) != 2 {
		t.Errorf("tags after AddTags/DelTags = %q", got.Tags)
	}

	// Usage adds up the virtual sizes.
	u, err := p.Usage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := 200*mib + 2*vol.SizeBytes; u.VirtualBytes != want {
		t.Errorf("VirtualBytes = %d, want %d", u.VirtualBytes, want)
	}

	// Errors the agent relies on.
	if _, err := p.Get(ctx(t), "nope"); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("Get(missing) = %v", err)
	}
	if err := p.Remove(ctx(t), "nope"); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("Remove(missing) = %v", err)
	}
	if _, err := p.Snapshot(ctx(t), "nope", "snap-2", true, nil); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("Snapshot(missing origin) = %v", err)
	}
	if _, err := p.Extend(ctx(t), "nope", mib); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("Extend(missing) = %v", err)
	}
	if err := p.AddTags(ctx(t), "nope", "a=b"); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("AddTags(missing) = %v", err)
	}
	if err := p.Activate(ctx(t), "nope"); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("Activate(missing) = %v", err)
	}
	if err := p.Remove(ctx(t), "pool"); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("Remove(the thin pool) = %v", err)
	}
	held, err := os.Open(clone.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(ctx(t), "clone-1"); !errors.Is(err, lvm.ErrInUse) {
		t.Errorf("Remove(open) = %v", err)
	}
	if err := p.Deactivate(ctx(t), "clone-1"); !errors.Is(err, lvm.ErrInUse) {
		t.Errorf("Deactivate(open) = %v", err)
	}
	held.Close()

	// Remove the origin first: its snapshot and clone survive it.
	start = time.Now()
	if err := p.Remove(ctx(t), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	step(t, "Remove", start)
	if _, err := os.Stat(vol.Path); !os.IsNotExist(err) {
		t.Errorf("%s after Remove: %v", vol.Path, err)
	}
	blocktest.Expect(t, snap.Path, 0, dataA, "snapshot after its origin was removed")
	for _, name := range []string{"clone-1", "snap-1"} {
		if err := p.Remove(ctx(t), name); err != nil {
			t.Fatal(err)
		}
	}
	if lvs, err := p.List(ctx(t)); err != nil || len(lvs) != 0 {
		t.Errorf("List after removing everything = %+v, %v", lvs, err)
	}
	if u, err := p.Usage(ctx(t)); err != nil || u.VirtualBytes != 0 {
		t.Errorf("Usage after removing everything = %+v, %v", u, err)
	}
}
