package lvm

import (
	"context"
	"reflect"
	"slices"
	"testing"
)

func TestVGExists(t *testing.T) {
	for report, want := range map[string]bool{"vgs.json": true, "vgs-empty.json": false} {
		p, f, _ := newPool()
		p.ExtraConfig = DeviceFilter("/dev/loop0")
		f.On("lvm", "vgs").Return(testdata(t, report))
		got, err := p.VGExists(context.Background())
		if err != nil || got != want {
			t.Errorf("%s: VGExists = %v, %v; want %v", report, got, err, want)
		}
		wantArgs := []string{"vgs", "--config", p.ExtraConfig, "--reportformat", "json", "--units", "b", "--nosuffix",
			"-o", "vg_name", "--select", `vg_name="nvmeof"`}
		if calls := f.CallsTo("lvm", "vgs"); len(calls) != 1 || !slices.Equal(calls[0].Args, wantArgs) {
			t.Errorf("%s: vgs ran as %v, want %q", report, calls, wantArgs)
		}
	}
}

func TestListVGListsEveryKindOfLV(t *testing.T) {
	p, f, _ := newPool()
	f.On("lvm", "lvs").Return(testdata(t, "list.json"))
	got, err := p.ListVG(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []VGLV{
		{Name: "clone-1", Segtype: "thin", Pool: "pool"},
		{Name: "pool", Segtype: "thin-pool"},
		{Name: "pvc-1", Segtype: "thin", Pool: "pool"},
		{Name: "snap-1", Segtype: "thin", Pool: "pool"},
		{Name: "thick", Segtype: "linear"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListVG =\n%+v\nwant\n%+v", got, want)
	}
	if calls := f.CallsTo("lvm", "lvs"); len(calls) != 1 || !slices.Equal(calls[0].Args, append(slices.Clone(lvsArgs), "nvmeof")) {
		t.Errorf("lvs ran as %v", calls)
	}
}

func TestListVGOfAnEmptyVG(t *testing.T) {
	p, f, _ := newPool()
	f.On("lvm", "lvs").Return(testdata(t, "get-missing.json"))
	got, err := p.ListVG(context.Background())
	if err != nil || len(got) != 0 {
		t.Errorf("ListVG = %+v, %v; want nothing", got, err)
	}
}
