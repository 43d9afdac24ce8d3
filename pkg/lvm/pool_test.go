package lvm

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command/commandtest"
)

const (
	hostTag = "nvmeof.csi.io/host=nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	uuidTag = "nvmeof.csi.io/uuid=6f1c2a4e-0d2b-4d5e-9a51-3f0e8c7b1d22"
)

var pvc1 = LV{
	Name: "pvc-1", UUID: "XNrXql-ffXu-RuxK-vvoF-239r-mAGd-6Ok34K", SizeBytes: 104857600,
	Tags: []string{hostTag, uuidTag}, Active: true, Path: "/dev/nvmeof/pvc-1", DataPercent: 20,
}

func equalLV(a, b LV) bool { return reflect.DeepEqual(a, b) }

func TestCreate(t *testing.T) {
	tests := []struct {
		size     int64
		wantSize string
	}{
		{104857600, "104857600b"},
		{1, "512b"},
		{104857601, "104858112b"},
	}
	for _, tt := range tests {
		p, f, d := newPool()
		f.On("lvm", "lvcreate").Return("")
		onSelect(f, "pvc-1", "get.json", t)
		lv, err := p.Create(context.Background(), "pvc-1", tt.size, []string{uuidTag, hostTag})
		if err != nil {
			t.Fatalf("Create(%d): %v", tt.size, err)
		}
		if !equalLV(lv, pvc1) {
			t.Errorf("Create(%d) = %+v, want %+v", tt.size, lv, pvc1)
		}
		calls := f.Calls()
		wantCreate := []string{"lvcreate", "--type", "thin", "--virtualsize", tt.wantSize, "--thinpool", "pool",
			"--name", "pvc-1", "--activate", "y", "--addtag", uuidTag, "--addtag", hostTag, "nvmeof"}
		wantGet := append(slices.Clone(lvsArgs), "--select", `lv_name="pvc-1"`, "nvmeof")
		if len(calls) != 2 || calls[0].Name != "lvm" || !slices.Equal(calls[0].Args, wantCreate) || !slices.Equal(calls[1].Args, wantGet) {
			t.Errorf("Create(%d) ran\n%v\nwant\nlvm %v\nlvm %v", tt.size, calls, wantCreate, wantGet)
		}
		if w := d.waited(); !slices.Equal(w, []string{"/dev/nvmeof/pvc-1"}) {
			t.Errorf("waited for %v", w)
		}
	}
}

func TestCreateRefusesBadInputWithoutRunningLVM(t *testing.T) {
	tests := []struct {
		name string
		size int64
		tags []string
		want error
	}{
		{"bad name", 1 << 20, nil, ErrInvalidName},
		{"snapshot1", 1 << 20, nil, ErrInvalidName},
		{"pool", 1 << 20, nil, ErrExists},
		{"v", 0, nil, ErrInvalidSize},
		{"v", -5, nil, ErrInvalidSize},
		{"v", 1<<63 - 1, nil, ErrInvalidSize},
		{"v", 1 << 20, []string{"a b"}, ErrInvalidTag},
		{"v", 1 << 20, []string{""}, ErrInvalidTag},
	}
	for _, tt := range tests {
		p, f, _ := newPool()
		if _, err := p.Create(context.Background(), tt.name, tt.size, tt.tags); !errors.Is(err, tt.want) {
			t.Errorf("Create(%q, %d, %q) = %v, want %v", tt.name, tt.size, tt.tags, err, tt.want)
		}
		if c := f.Calls(); len(c) != 0 {
			t.Errorf("Create(%q) ran %v", tt.name, c)
		}
	}
}

func TestCreateFailures(t *testing.T) {
	tests := []struct {
		desc     string
		stderr   string
		report   string // answer to the lvs that follows the failure
		want     error
		wantLV   bool
		selectOn string
	}{
		{"exists in the pool", "stderr/lvcreate-exists.txt", "get.json", ErrExists, true, "pvc-1"},
		{"exists outside the pool", "stderr/lvcreate-exists.txt", "list.json", ErrExists, false, "thick"},
		{"pool full", "stderr/lvcreate-poolfull.txt", "get-missing.json", ErrNoSpace, false, "pvc-1"},
		{"other failure", "stderr/dmname-long.txt", "get-missing.json", nil, false, "pvc-1"},
	}
	for _, tt := range tests {
		p, f, d := newPool()
		f.On("lvm", "lvcreate").Fail(5, testdata(t, tt.stderr))
		onSelect(f, tt.selectOn, tt.report, t)
		lv, err := p.Create(context.Background(), tt.selectOn, 1<<20, nil)
		if err == nil {
			t.Fatalf("%s: no error", tt.desc)
		}
		for _, s := range []error{ErrExists, ErrNoSpace, ErrNotFound} {
			if errors.Is(err, s) != (s == tt.want) {
				t.Errorf("%s: err = %v, want %v", tt.desc, err, tt.want)
			}
		}
		if tt.want == nil {
			var cerr *command.Error
			if !errors.As(err, &cerr) {
				t.Errorf("%s: %v does not carry the *command.Error", tt.desc, err)
			}
		}
		if (lv.Name != "") != tt.wantLV {
			t.Errorf("%s: LV = %+v, want one: %v", tt.desc, lv, tt.wantLV)
		}
		if len(d.waited()) != 0 {
			t.Errorf("%s: waited for a device", tt.desc)
		}
	}
}

func TestCreateDeviceMissing(t *testing.T) {
	p, f, d := newPool()
	d.err = errors.New("device did not appear")
	f.On("lvm", "lvcreate").Return("")
	if _, err := p.Create(context.Background(), "pvc-1", 1<<20, nil); !errors.Is(err, d.err) {
		t.Errorf("err = %v", err)
	}
}

func TestCancelledCreateIsNotDiagnosed(t *testing.T) {
	p, f, _ := newPool()
	ctx, cancel := context.WithCancel(context.Background())
	f.On("lvm", "lvcreate").Do(func(context.Context, commandtest.Call) ([]byte, error) {
		cancel()
		return nil, &command.Error{Cmd: "lvm", ExitCode: -1, Err: context.Canceled}
	})
	if _, err := p.Create(ctx, "pvc-1", 1<<20, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	if n := len(f.Calls()); n != 1 {
		t.Errorf("ran %d commands after the cancel", n-1)
	}
}

func TestExtraConfigGoesToEveryCommand(t *testing.T) {
	p, f, _ := newPool()
	p.ExtraConfig = "activation{udev_sync=0}"
	f.On("lvm").Return(testdata(t, "get.json"))
	if _, err := p.Create(context.Background(), "pvc-1", 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Calls() {
		if len(c.Args) < 3 || c.Args[1] != "--config" || c.Args[2] != p.ExtraConfig {
			t.Errorf("%v: no --config right after the subcommand", c)
		}
	}
}

func TestSnapshot(t *testing.T) {
	for _, readOnly := range []bool{true, false} {
		p, f, d := newPool()
		f.On("lvm", "lvcreate").Return("")
		onSelect(f, "snap-1", "list.json", t)
		lv, err := p.Snapshot(context.Background(), "pvc-1", "snap-1", readOnly, []string{"k=v"})
		if err != nil {
			t.Fatal(err)
		}
		if lv.Name != "snap-1" || lv.Origin != "pvc-1" || !lv.ReadOnly {
			t.Errorf("Snapshot = %+v", lv)
		}
		want := []string{"lvcreate", "--snapshot", "--name", "snap-1", "--setactivationskip", "n", "--activate", "y"}
		if readOnly {
			want = append(want, "--permission", "r")
		}
		want = append(want, "--addtag", "k=v", "nvmeof/pvc-1")
		if c := f.CallsTo("lvm", "lvcreate"); len(c) != 1 || !slices.Equal(c[0].Args, want) {
			t.Errorf("readOnly=%v ran %v, want %v", readOnly, c, want)
		}
		if w := d.waited(); !slices.Equal(w, []string{"/dev/nvmeof/snap-1"}) {
			t.Errorf("waited for %v", w)
		}
	}
}

func TestSnapshotFailures(t *testing.T) {
	tests := []struct {
		desc   string
		stderr string
		name   string // report for lvs of the new name
		origin string // report for lvs of the origin
		want   error
	}{
		{"name taken", "stderr/lvcreate-exists.txt", "list.json", "get.json", ErrExists},
		{"origin missing", "stderr/snapshot-missing.txt", "get-missing.json", "get-missing.json", ErrNotFound},
		{"pool full", "stderr/snapshot-poolfull.txt", "get-missing.json", "get.json", ErrNoSpace},
	}
	for _, tt := range tests {
		p, f, _ := newPool()
		f.On("lvm", "lvcreate").Fail(5, testdata(t, tt.stderr))
		onSelect(f, "snap-1", tt.name, t)
		onSelect(f, "pvc-1", tt.origin, t)
		_, err := p.Snapshot(context.Background(), "pvc-1", "snap-1", true, nil)
		for _, s := range []error{ErrExists, ErrNoSpace, ErrNotFound} {
			if errors.Is(err, s) != (s == tt.want) {
				t.Errorf("%s: err = %v, want %v", tt.desc, err, tt.want)
			}
		}
	}
	p, f, _ := newPool()
	if _, err := p.Snapshot(context.Background(), "pool", "s", true, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("snapshot of the thin pool: %v, want ErrNotFound", err)
	}
	if _, err := p.Snapshot(context.Background(), "-x", "s", true, nil); !errors.Is(err, ErrInvalidName) {
		t.Errorf("snapshot of an invalid name: %v, want ErrInvalidName", err)
	}
	if c := f.Calls(); len(c) != 0 {
		t.Errorf("ran %v", c)
	}
}

func TestGetAndList(t *testing.T) {
	p, f, _ := newPool()
	onSelect(f, "pvc-1", "get.json", t)
	onSelect(f, "thick", "list.json", t) // a linear LV of the VG: not ours
	onSelect(f, "nope", "get-missing.json", t)
	f.On("lvm", "lvs").Return(testdata(t, "list.json"))

	lv, err := p.Get(context.Background(), "pvc-1")
	if err != nil || !equalLV(lv, pvc1) {
		t.Errorf("Get(pvc-1) = %+v, %v", lv, err)
	}
	for _, name := range []string{"thick", "nope", "pool"} {
		if _, err := p.Get(context.Background(), name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", name, err)
		}
	}

	lvs, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []LV{
		{Name: "clone-1", UUID: "Mfi4jW-HRy9-rNuR-rrot-1iOt-tusF-EFBYN9", SizeBytes: 104857600, Origin: "snap-1",
			SkipActivation: true, Path: "/dev/nvmeof/clone-1"},
		pvc1,
		{Name: "snap-1", UUID: "CfCriD-dhOA-QbXA-cR2m-SuK4-q2eL-icDOUN", SizeBytes: 104857600, Origin: "pvc-1",
			Active: true, ReadOnly: true, Path: "/dev/nvmeof/snap-1", DataPercent: 20},
	}
	if len(lvs) != len(want) {
		t.Fatalf("List = %+v", lvs)
	}
	for i := range want {
		if !equalLV(lvs[i], want[i]) {
			t.Errorf("List[%d] = %+v\nwant %+v", i, lvs[i], want[i])
		}
	}
	if c := f.CallsTo("lvm", "lvs"); !slices.Equal(c[len(c)-1].Args, append(slices.Clone(lvsArgs), "nvmeof")) {
		t.Errorf("List ran %v", c[len(c)-1])
	}
}

func TestReportErrors(t *testing.T) {
	for _, out := range []string{
		"not json",
		`{"report":[{"lv":[{"lv_name":"pvc-1","segtype":"thin","pool_lv":"pool","lv_size":"12x"}]}]}`,
		`{"report":[{"lv":[{"lv_name":"pvc-1","segtype":"thin","pool_lv":"pool","lv_size":"1","data_percent":"-1"}]}]}`,
	} {
		p, f, _ := newPool()
		f.On("lvm", "lvs").Return(out)
		if _, err := p.List(context.Background()); err == nil {
			t.Errorf("List accepted %s", out)
		}
	}
	p, f, _ := newPool()
	f.On("lvm", "lvs").Fail(5, "  Volume group \"nvmeof\" not found\n  Cannot process volume group nvmeof\n")
	_, err := p.List(context.Background())
	var cerr *command.Error
	if !errors.As(err, &cerr) || errors.Is(err, ErrNotFound) {
		t.Errorf("List with no VG = %v; want the command error, not ErrNotFound", err)
	}
}

func TestRemove(t *testing.T) {
	p, f, _ := newPool()
	onSelect(f, "pvc-1", "get.json", t)
	f.On("lvm", "lvremove").Return("")
	if err := p.Remove(context.Background(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	if c := f.CallsTo("lvm", "lvremove"); len(c) != 1 || !slices.Equal(c[0].Args, []string{"lvremove", "--force", "nvmeof/pvc-1"}) {
		t.Errorf("ran %v", c)
	}
}

func TestRemoveFailures(t *testing.T) {
	open := `{"report":[{"lv":[{"lv_name":"pvc-1","vg_name":"nvmeof","segtype":"thin","pool_lv":"pool","lv_size":"4194304","lv_attr":"Vwi-aotz--"}]}]}`
	tests := []struct {
		desc    string
		name    string
		report  string
		stderr  string // lvremove's failure, "" for success
		want    error
		removes int
	}{
		{"missing", "pvc-1", testdata(t, "get-missing.json"), "", ErrNotFound, 0},
		{"not in the pool", "thick", testdata(t, "list.json"), "", ErrNotFound, 0},
		{"open", "pvc-1", open, "", ErrInUse, 0},
		{"opened meanwhile", "pvc-1", testdata(t, "get.json"), testdata(t, "stderr/lvremove-inuse.txt"), ErrInUse, 1},
		{"the pool itself", "pool", "", "", ErrNotFound, 0},
		{"invalid", "a/b", "", "", ErrInvalidName, 0},
	}
	for _, tt := range tests {
		p, f, _ := newPool()
		f.On("lvm", "lvs").Return(tt.report)
		if tt.stderr != "" {
			f.On("lvm", "lvremove").Fail(5, tt.stderr)
		}
		if err := p.Remove(context.Background(), tt.name); !errors.Is(err, tt.want) {
			t.Errorf("%s: Remove = %v, want %v", tt.desc, err, tt.want)
		}
		if n := len(f.CallsTo("lvm", "lvremove")); n != tt.removes {
			t.Errorf("%s: ran lvremove %d times", tt.desc, n)
		}
	}
}

func TestRemoveVanishedMeanwhile(t *testing.T) {
	p, f, _ := newPool()
	onSelect(f, "pvc-1", "get.json", t).Once()
	onSelect(f, "pvc-1", "get-missing.json", t)
	f.On("lvm", "lvremove").Fail(5, testdata(t, "stderr/lvremove-missing.txt"))
	if err := p.Remove(context.Background(), "pvc-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove = %v, want ErrNotFound", err)
	}
}

func TestExtend(t *testing.T) {
	tests := []struct {
		size     int64
		wantCall []string
	}{
		{50 << 20, nil},
		{104857600, nil},
		{104857601, []string{"lvextend", "--size", "104858112b", "nvmeof/pvc-1"}},
		{200 << 20, []string{"lvextend", "--size", "209715200b", "nvmeof/pvc-1"}},
	}
	for _, tt := range tests {
		p, f, _ := newPool()
		onSelect(f, "pvc-1", "get.json", t)
		f.On("lvm", "lvextend").Return("")
		lv, err := p.Extend(context.Background(), "pvc-1", tt.size)
		if err != nil || lv.Name != "pvc-1" {
			t.Fatalf("Extend(%d) = %+v, %v", tt.size, lv, err)
		}
		c := f.CallsTo("lvm", "lvextend")
		if tt.wantCall == nil && len(c) != 0 || tt.wantCall != nil && (len(c) != 1 || !slices.Equal(c[0].Args, tt.wantCall)) {
			t.Errorf("Extend(%d) ran %v, want %v", tt.size, c, tt.wantCall)
		}
	}
}

func TestExtendFailures(t *testing.T) {
	p, f, _ := newPool()
	onSelect(f, "nope", "get-missing.json", t)
	if _, err := p.Extend(context.Background(), "nope", 1<<30); !errors.Is(err, ErrNotFound) {
		t.Errorf("Extend(missing) = %v", err)
	}
	if _, err := p.Extend(context.Background(), "nope", 0); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("Extend(0) = %v", err)
	}
	p, f, _ = newPool()
	onSelect(f, "pvc-1", "get.json", t)
	f.On("lvm", "lvextend").Fail(5, testdata(t, "stderr/lvextend-shrink.txt"))
	if _, err := p.Extend(context.Background(), "pvc-1", 1<<30); !errors.Is(err, ErrShrink) {
		t.Errorf("Extend racing a shrink = %v, want ErrShrink", err)
	}
}

func TestTags(t *testing.T) {
	p, f, _ := newPool()
	f.On("lvm", "lvchange").Return("")
	if err := p.AddTags(context.Background(), "pvc-1", "a=1", "b=2"); err != nil {
		t.Fatal(err)
	}
	if err := p.DelTags(context.Background(), "pvc-1", "a=1"); err != nil {
		t.Fatal(err)
	}
	if err := p.AddTags(context.Background(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	c := f.CallsTo("lvm", "lvchange")
	if len(c) != 2 ||
		!slices.Equal(c[0].Args, []string{"lvchange", "--addtag", "a=1", "--addtag", "b=2", "nvmeof/pvc-1"}) ||
		!slices.Equal(c[1].Args, []string{"lvchange", "--deltag", "a=1", "nvmeof/pvc-1"}) {
		t.Errorf("ran %v", c)
	}
	if err := p.AddTags(context.Background(), "pvc-1", "bad tag"); !errors.Is(err, ErrInvalidTag) {
		t.Errorf("AddTags(bad tag) = %v", err)
	}

	p, f, _ = newPool()
	f.On("lvm", "lvchange").Fail(5, testdata(t, "stderr/lvchange-missing.txt"))
	onSelect(f, "nope", "get-missing.json", t)
	if err := p.DelTags(context.Background(), "nope", "a=1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DelTags(missing) = %v", err)
	}
}

func TestActivateAndDeactivate(t *testing.T) {
	p, f, d := newPool()
	f.On("lvm", "lvchange").Return("")
	if err := p.Activate(context.Background(), "clone-1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Deactivate(context.Background(), "clone-1"); err != nil {
		t.Fatal(err)
	}
	c := f.CallsTo("lvm", "lvchange")
	if len(c) != 2 ||
		!slices.Equal(c[0].Args, []string{"lvchange", "--activate", "y", "--ignoreactivationskip", "nvmeof/clone-1"}) ||
		!slices.Equal(c[1].Args, []string{"lvchange", "--activate", "n", "nvmeof/clone-1"}) {
		t.Errorf("ran %v", c)
	}
	if w := d.waited(); !slices.Equal(w, []string{"/dev/nvmeof/clone-1"}) {
		t.Errorf("waited for %v", w)
	}

	p, f, _ = newPool()
	f.On("lvm", "lvchange").Fail(5, testdata(t, "stderr/lvchange-an-inuse.txt"))
	onSelect(f, "pvc-1", "get.json", t)
	if err := p.Deactivate(context.Background(), "pvc-1"); !errors.Is(err, ErrInUse) {
		t.Errorf("Deactivate(open) = %v", err)
	}
	p, f, _ = newPool()
	f.On("lvm", "lvchange").Fail(5, testdata(t, "stderr/lvchange-missing.txt"))
	onSelect(f, "nope", "get-missing.json", t)
	if err := p.Activate(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Activate(missing) = %v", err)
	}
}

func TestPoolFieldsAreValidated(t *testing.T) {
	for _, p := range []*Pool{
		{VG: "", ThinPool: "pool", Runner: commandtest.New()},
		{VG: "vg", ThinPool: "bad/pool", Runner: commandtest.New()},
		{VG: "vg", ThinPool: "pool"},
	} {
		if _, err := p.List(context.Background()); err == nil {
			t.Errorf("List on %+v succeeded", p)
		}
	}
}
