package lvm

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command/commandtest"
)

func TestSetup(t *testing.T) {
	const (
		noVG     = "vgs-empty.json"
		vg       = "vgs.json"
		noPool   = "get-missing.json"
		active   = "list.json"
		inactive = "inactive.json"
	)
	vgcreate := []string{"vgcreate", "nvmeof", "/dev/loop0", "/dev/loop1"}
	lvcreate := []string{"lvcreate", "--type", "thin-pool", "--extents", "90%FREE", "--name", "pool", "nvmeof"}
	lvchange := []string{"lvchange", "--activate", "y", "nvmeof/pool"}
	tests := []struct {
		desc      string
		vgs, lvs  string
		wantCalls [][]string
	}{
		{"fresh", noVG, noPool, [][]string{vgcreate, lvcreate}},
		{"VG without pool", vg, noPool, [][]string{lvcreate}},
		{"all there", vg, active, nil},
		{"pool inactive after a reboot", vg, inactive, [][]string{lvchange}},
	}
	for _, tt := range tests {
		f := commandtest.New()
		f.On("lvm", "vgs").Return(testdata(t, tt.vgs))
		f.On("lvm", "lvs").Return(testdata(t, tt.lvs))
		f.On("lvm", "vgcreate").Return("")
		f.On("lvm", "lvcreate").Return("")
		f.On("lvm", "lvchange").Return("")
		if err := CreatePool(context.Background(), f, "nvmeof", "pool", []string{"/dev/loop0", "/dev/loop1"}, 90); err != nil {
			t.Fatalf("%s: %v", tt.desc, err)
		}
		var got [][]string
		for _, c := range f.Calls() {
			if c.Args[0] != "vgs" && c.Args[0] != "lvs" {
				got = append(got, c.Args)
			}
		}
		if !slices.EqualFunc(got, tt.wantCalls, slices.Equal) {
			t.Errorf("%s: ran %q, want %q", tt.desc, got, tt.wantCalls)
		}
		vgs := f.CallsTo("lvm", "vgs")
		wantVGs := []string{"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name", "--select", `vg_name="nvmeof"`}
		if len(vgs) != 1 || !slices.Equal(vgs[0].Args, wantVGs) {
			t.Errorf("%s: vgs ran as %v", tt.desc, vgs)
		}
	}
}

func TestSetupFailures(t *testing.T) {
	notAPool := `{"report":[{"lv":[{"lv_name":"pool","vg_name":"nvmeof","segtype":"linear","lv_attr":"-wi-a-----"}]}]}`
	tests := []struct {
		desc    string
		devices []string
		percent int
		vgs     string
		lvs     string
		lvcFail string
		want    error
	}{
		{"no VG and no devices", nil, 90, "vgs-empty.json", testdata(t, "get-missing.json"), "", nil},
		{"bad percent", []string{"/dev/loop0"}, 0, "vgs-empty.json", "", "", nil},
		{"percent too big", []string{"/dev/loop0"}, 101, "vgs-empty.json", "", "", nil},
		{"not a thin pool", []string{"/dev/loop0"}, 90, "vgs.json", notAPool, "", nil},
		{"no space", []string{"/dev/loop0"}, 90, "vgs-empty.json", testdata(t, "get-missing.json"),
			testdata(t, "stderr/lvcreate-thick-nospace.txt"), ErrNoSpace},
	}
	for _, tt := range tests {
		f := commandtest.New()
		f.On("lvm", "vgs").Return(testdata(t, tt.vgs))
		f.On("lvm", "lvs").Return(tt.lvs)
		f.On("lvm", "vgcreate").Return("")
		if tt.lvcFail != "" {
			f.On("lvm", "lvcreate").Fail(5, tt.lvcFail)
		}
		err := CreatePool(context.Background(), f, "nvmeof", "pool", tt.devices, tt.percent)
		if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.desc, err, tt.want)
		}
		if u := f.Unmatched(); len(u) != 0 {
			t.Errorf("%s: unexpected commands %v", tt.desc, u)
		}
	}
}
