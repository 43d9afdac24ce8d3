package dmthin

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

func TestPoolNames(t *testing.T) {
	for _, name := range []string{"", "-x", "a/b", strings.Repeat("n", maxPoolNameLen+1)} {
		if err := validPoolName(name); !errors.Is(err, pool.ErrInvalid) {
			t.Errorf("pool name %q: %v", name, err)
		}
	}
	if err := validPoolName("nvmeof-storage1"); err != nil {
		t.Error(err)
	}
}

func TestDeviceNamesAndUUIDs(t *testing.T) {
	p := &Pool{opts: Options{Name: "nvmeof-storage1", NodeDir: "/dev/nvmeof"}, hdr: header{UUID: testUUID}}
	if got := p.thinName("vol-1"); got != "nvmeof-storage1-vol-1" {
		t.Errorf("thin device name %q", got)
	}
	if got := p.nodePath("vol-1"); got != "/dev/nvmeof/nvmeof-storage1/vol-1" {
		t.Errorf("node %q", got)
	}
	u := p.thinUUID(thin.MaxDevID)
	if len(u) > 128 || !strings.HasPrefix(u, "NVMEOF-0102030405060708090a0b0c0d0e0f10-thin-") {
		t.Errorf("thin uuid %q", u)
	}
	if id, ok := p.thinIDOfUUID(u); !ok || id != thin.MaxDevID {
		t.Errorf("uuid %q parses to %d, %v", u, id, ok)
	}
	for _, bad := range []string{p.uuidPrefix() + "pool", p.uuidPrefix() + "thin-0", p.uuidPrefix() + "thin-x",
		"NVMEOF-ffff-thin-3", p.uuidPrefix() + "thin-16777216"} {
		if _, ok := p.thinIDOfUUID(bad); ok {
			t.Errorf("uuid %q taken for a thin device's", bad)
		}
	}
	if maxPoolNameLen+1+maxIDLen > 127 {
		t.Error("the longest names do not fit in a device-mapper name")
	}
}

func TestTablesRoundTrip(t *testing.T) {
	dev := unix.Mkdev(253, 7)
	tg, err := thinTarget(dev, 4242, 2*1024*1024)
	if err != nil {
		t.Fatal(err)
	}
	got, err := thin.ParseThinTable(tg.Params)
	if err != nil || got.PoolDev != "253:7" || got.ID != 4242 || tg.Length != 2*1024*1024 || tg.Type != thin.ThinTargetType {
		t.Fatalf("thin table %+v parses to %+v, %v", tg, got, err)
	}
	if _, err := thinTarget(dev, 1, 0); err == nil {
		t.Error("a thin table of no size")
	}
	for _, eins := range []bool{false, true} {
		pt := poolTable(unix.Mkdev(253, 1), unix.Mkdev(253, 2), 256, eins)
		target, err := pt.Target(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		back, err := thin.ParsePoolTable(target.Params)
		if err != nil || back != pt {
			t.Fatalf("pool table %q parses to %+v, %v; want %+v", target.Params, back, err, pt)
		}
		if back.SkipBlockZeroing || strings.Contains(target.Params, "skip_block_zeroing") {
			t.Fatalf("pool table %q skips block zeroing", target.Params)
		}
		if back.ErrorIfNoSpace != eins {
			t.Errorf("pool table %q: error_if_no_space %v, want %v", target.Params, back.ErrorIfNoSpace, eins)
		}
	}
}
