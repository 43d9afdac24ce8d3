//go:build vm

package pool

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/lvmthin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/pooltest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func lvmBackend() pooltest.Backend {
	return pooltest.Backend{
		Name: "lvm",
		New: func(t testing.TB) string {
			// A VG per test, named from the test so that parallel packages never collide.
			vg := fmt.Sprintf("pt%x", sha256.Sum256([]byte(t.Name())))[:14]
			loop := vmenv.ThinPool(t, vg, "2G")
			raw, err := json.Marshal(lvmthin.Options{VolumeGroup: vg, ThinPool: "pool", Config: lvm.DeviceFilter(loop)})
			if err != nil {
				t.Fatal(err)
			}
			return string(raw)
		},
		Open: func(ctx context.Context, config string) (pool.Pool, error) {
			var o lvmthin.Options
			if err := json.Unmarshal([]byte(config), &o); err != nil {
				return nil, err
			}
			return lvmthin.Open(ctx, o)
		},
		Check: func(ctx context.Context, t testing.TB, config string, ids []string) {
			var o lvmthin.Options
			if err := json.Unmarshal([]byte(config), &o); err != nil {
				t.Fatal(err)
			}
			lp := &lvm.Pool{VG: o.VolumeGroup, ThinPool: o.ThinPool, Runner: command.Exec{}, ExtraConfig: o.Config}
			lvs, err := lp.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, lv := range lvs {
				names = append(names, lv.Name)
				if _, pending := lvm.TagValue(lv.Tags, "nvmeof.pending"); pending {
					t.Errorf("%s is still tagged pending", lv.Name)
				}
			}
			want := slices.Sorted(slices.Values(ids))
			if !slices.Equal(names, want) {
				t.Fatalf("thin LVs in the pool: %v, want exactly %v", names, want)
			}
		},
		CrashPoints: lvmthin.CrashPoints,
	}
}
