//go:build vm

package lvm

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestReactivation is what the agent does after a reboot: the VG comes back inactive (no
// autoactivation here), CreatePool activates the pool again and Activate brings each LV back,
// snapshots included, with their data.
func TestReactivation(t *testing.T) {
	p := newPool(t, "nvboot", 1024)
	vol, err := p.Create(ctx(t), "vol", 16*mib, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := blocktest.Pattern(4, 4*mib)
	blocktest.Write(t, vol.Path, 0, data)
	snap, err := p.Snapshot(ctx(t), "vol", "snap", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A snapshot made by another tool keeps LVM's activation-skip flag.
	vmenv.Run(t, "lvcreate", "--snapshot", "--name", "foreign", "nvboot/vol")

	vmenv.Run(t, "vgchange", "--activate", "n", "nvboot")
	for _, path := range []string{vol.Path, snap.Path} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s still there after vgchange -an: %v", path, err)
		}
	}
	if u, err := p.Usage(ctx(t)); err != nil || u.DataUsedBytes != 0 {
		t.Errorf("Usage of an inactive pool = %+v, %v", u, err)
	}

	if err := lvm.CreatePool(ctx(t), command.Exec{}, "nvboot", "pool", nil, 90); err != nil {
		t.Fatalf("CreatePool on an existing, inactive pool: %v", err)
	}
	if u, err := p.Usage(ctx(t)); err != nil || u.DataUsedBytes == 0 {
		t.Errorf("Usage after CreatePool = %+v, %v; want the pool active again", u, err)
	}
	lvs, err := p.List(ctx(t))
	if err != nil || len(lvs) != 3 {
		t.Fatalf("List = %+v, %v", lvs, err)
	}
	for _, lv := range lvs {
		if lv.Active {
			t.Errorf("%s active before Activate", lv.Name)
		}
		if want := lv.Name == "foreign"; lv.SkipActivation != want {
			t.Errorf("%s: SkipActivation = %v, want %v", lv.Name, lv.SkipActivation, want)
		}
		if err := p.Activate(ctx(t), lv.Name); err != nil {
			t.Fatalf("Activate(%s): %v", lv.Name, err)
		}
		mustExist(t, lv.Path)
		blocktest.Expect(t, lv.Path, 0, data, lv.Name+" after reactivation")
		if err := p.Activate(ctx(t), lv.Name); err != nil {
			t.Errorf("second Activate(%s): %v", lv.Name, err)
		}
	}
}

// TestFullPool: a thin pool that ran out of data space reports it, and new thin LVs and
// snapshots fail with ErrNoSpace rather than an opaque error.
func TestFullPool(t *testing.T) {
	p := newPool(t, "nvfull", 64) // a pool of about 48 MiB
	// Fail writes at once instead of queueing them for 60 s when the pool is full.
	vmenv.Run(t, "lvchange", "--errorwhenfull", "y", "nvfull/pool")
	vol, err := p.Create(ctx(t), "vol", 128*mib, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := command.Exec{}.Run(ctx(t), "dd", "if=/dev/zero", "of="+vol.Path, "bs=1M", "oflag=direct", "status=none")
	var cerr *command.Error
	if !errors.As(err, &cerr) || !strings.Contains(cerr.Stderr, "No space left") {
		t.Fatalf("filling the pool: %v %s", err, out)
	}
	u, err := p.Usage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if u.Health != "out of data space" || u.DataUsedBytes != u.DataBytes || u.FreeBytes() != 0 {
		t.Errorf("Usage of a full pool = %+v", u)
	}
	if _, err := p.Create(ctx(t), "more", 4*mib, nil); !errors.Is(err, lvm.ErrNoSpace) {
		t.Errorf("Create in a full pool = %v, want ErrNoSpace", err)
	}
	if _, err := p.Snapshot(ctx(t), "vol", "snap", true, nil); !errors.Is(err, lvm.ErrNoSpace) {
		t.Errorf("Snapshot in a full pool = %v, want ErrNoSpace", err)
	}
	if err := p.Remove(ctx(t), "vol"); err != nil {
		t.Errorf("Remove in a full pool: %v", err)
	}
}

// TestNameLimits: the longest names ValidateName and the Pool accept are ones lvm really
// creates and activates; one character more is refused before lvm runs.
func TestNameLimits(t *testing.T) {
	p := newPool(t, "nvname", 256)
	longest := strings.Repeat("n", 125-len("nvname/"))
	dashes := "a" + strings.Repeat("-", (127-len("nvname-")-2)/2) + "b" // dm name of 127 characters
	for _, name := range []string{longest, dashes, "a+b.c_d-e"} {
		lv, err := p.Create(ctx(t), name, 4*mib, nil)
		if err != nil {
			t.Errorf("Create(%q, %d characters): %v", name, len(name), err)
			continue
		}
		mustExist(t, lv.Path)
		if err := p.Remove(ctx(t), name); err != nil {
			t.Error(err)
		}
	}
	for _, name := range []string{longest + "n", "a-" + dashes[1:]} {
		if _, err := p.Create(ctx(t), name, 4*mib, nil); !errors.Is(err, lvm.ErrInvalidName) {
			t.Errorf("Create(%q, %d characters) = %v, want ErrInvalidName", name, len(name), err)
		}
	}
}
