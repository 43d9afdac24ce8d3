package nvme

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestReleaseTimeoutsBoundsTheControllersOfThePrefix(t *testing.T) {
	root := loadTree(t, "multipath")
	writes := map[string]string{}
	in := &Initiator{SysfsRoot: root, writeAttr: func(path, value string) error {
		rel, _ := filepath.Rel(root, path)
		writes[rel] = value
		return nil
	}}
	changed, err := in.ReleaseTimeouts("nqn.2024-01.io.example:vol1", 5)
	if err != nil || !slices.Equal(changed, []string{"nvme0", "nvme1"}) {
		t.Fatalf("ReleaseTimeouts = %v, %v; want the two controllers of vol1", changed, err)
	}
	for _, c := range []string{"nvme0", "nvme1"} {
		if writes["class/nvme/"+c+"/ctrl_loss_tmo"] != "5" || writes["class/nvme/"+c+"/fast_io_fail_tmo"] != "0" {
			t.Errorf("%s: writes %v; want ctrl_loss_tmo 5 and fast_io_fail_tmo 0", c, writes)
		}
	}
	if _, ok := writes["class/nvme/nvme2/ctrl_loss_tmo"]; ok {
		t.Error("a controller of another subsystem was changed")
	}
	if _, err := in.ReleaseTimeouts("x", -1); err == nil {
		t.Error("a negative ctrl_loss_tmo was accepted")
	}
}
