package lvm

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
)

// CreatePool makes sure the volume group vg (on devices) and its thin pool thinPool exist and
// that the pool is active: it is Pool.Setup for a Pool without ExtraConfig.
func CreatePool(ctx context.Context, runner command.Runner, vg, thinPool string, devices []string, dataPercent int) error {
	p := &Pool{VG: vg, ThinPool: thinPool, Runner: runner}
	return p.Setup(ctx, devices, dataPercent)
}

// Setup makes sure the pool exists and is active, idempotently:
//   - without the VG, it runs vgcreate on devices (which makes them physical volumes; a device
//     carrying a file system or other signature is refused, never wiped);
//   - without the thin pool, it creates one over dataPercent% of the VG's free extents (LVM
//     picks the metadata size and keeps a spare metadata area);
//   - an inactive thin pool (after a reboot without LVM's autoactivation) is activated.
//
// An existing VG is used as it is: devices are not compared with its physical volumes. An LV
// named ThinPool that is not a thin pool is an error. Too little space is ErrNoSpace.
func (p *Pool) Setup(ctx context.Context, devices []string, dataPercent int) error {
	if err := p.checkPool(); err != nil {
		return err
	}
	if dataPercent < 1 || dataPercent > 100 {
		return fmt.Errorf("thin pool size: %d%% of the free space is not in 1..100", dataPercent)
	}
	exists, err := p.VGExists(ctx)
	if err != nil {
		return err
	}
	if !exists {
		if len(devices) == 0 {
			return fmt.Errorf("volume group %s does not exist and no devices were given", p.VG)
		}
		if _, err := p.lvm(ctx, "vgcreate", append([]string{p.VG}, devices...)...); err != nil {
			return classify(err)
		}
	}
	rows, err := p.lvs(ctx, selectName("lv_name", p.ThinPool))
	if err != nil {
		return err
	}
	i := slices.IndexFunc(rows, func(r lvRow) bool { return r.Name == p.ThinPool })
	if i < 0 {
		_, err := p.lvm(ctx, "lvcreate", "--type", "thin-pool", "--extents", strconv.Itoa(dataPercent)+"%FREE",
			"--name", p.ThinPool, p.VG)
		return classify(err)
	}
	if rows[i].Segtype != "thin-pool" {
		return fmt.Errorf("%s/%s exists but is a %s LV, not a thin pool", p.VG, p.ThinPool, rows[i].Segtype)
	}
	if attrAt(rows[i].Attr, attrState) != 'a' {
		if _, err := p.lvm(ctx, "lvchange", "--activate", "y", p.VG+"/"+p.ThinPool); err != nil {
			return classify(err)
		}
	}
	return nil
}
