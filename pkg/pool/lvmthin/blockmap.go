package lvmthin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin/thintools"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

var _ pool.BlockMapper = (*Pool)(nil)

// metaSnapLocks serializes the reads of each thin pool's metadata snapshot (the kernel holds
// one per pool), by "<vg>/<pool>": a channel of one slot, so that a wait can end with its
// context.
var metaSnapLocks sync.Map // "<vg>/<pool>" → chan struct{}

// MapBlocks implements pool.BlockMapper from the thin pool's metadata: it reserves the pool's
// metadata snapshot (a message to the thin-pool device, <vg>-<pool>-tpool, which LVM's
// metadata does not record: nothing LVM knows changes), looks up the LVs' thin device ids
// (lvs -o thin_id), runs thin_dump or thin_delta on the pool's hidden metadata LV
// (<vg>-<pool>_tmeta, found from the thin-pool's table) and always releases the snapshot.
// Reads of one pool's metadata take turns (waiting bounded by ctx); each run of a tool is
// bounded by thintools.DefaultTimeout. Ranges are cut at id's size.
//
// The agent owns the pool: a metadata snapshot already held when the call begins was left by
// a process that died holding it, and is released and taken again.
func (p *Pool) MapBlocks(ctx context.Context, id, base string, emit func(blockSize int64, r pool.Range) error) error {
	names := []string{id}
	if base != "" {
		names = append(names, base)
	}
	for _, n := range names {
		if err := lvm.ValidateName(n); err != nil {
			return fmt.Errorf("%w: %w", pool.ErrNotFound, err)
		}
	}
	l, _ := metaSnapLocks.LoadOrStore(p.lvm.VG+"/"+p.lvm.ThinPool, make(chan struct{}, 1))
	turn := l.(chan struct{})
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-turn }()

	ctl, err := dm.Open()
	if err != nil {
		return fmt.Errorf("lvmthin: %w", err)
	}
	defer func() { _ = ctl.Close() }()
	tp, err := p.thinPoolDevice(ctl)
	if err != nil {
		return err
	}
	log := klog.FromContext(ctx)
	takeOver := func(root uint64) bool {
		log.Info("Releasing a metadata snapshot a previous process left held", "pool", tp.Name, "root", root)
		return true
	}
	return tp.HoldMetadataSnap(takeOver, func(metaDev uint64) error {
		lvs, err := p.thinIDs(ctx, names)
		if err != nil {
			return err
		}
		node, err := metadataNode(ctl, metaDev)
		if err != nil {
			return err
		}
		v := lvs[id]
		out := func(blockSectors uint64, e thintools.Extent) error {
			off, n, ok := e.Bytes(blockSectors, v.size)
			if !ok {
				return nil
			}
			return emit(int64(blockSectors)*512, pool.Range{Offset: off, Length: n})
		}
		tools := thintools.Tools{Live: true}
		if base == "" {
			return tools.Mapped(ctx, node, v.thinID, out)
		}
		return tools.Changed(ctx, node, lvs[base].thinID, v.thinID, out)
	})
}

// thinPoolDevice is the pool's thin-pool dm device: <vg>-<pool>-tpool while thin LVs use the
// pool, <vg>-<pool> itself otherwise.
func (p *Pool) thinPoolDevice(ctl *dm.Control) (thin.Pool, error) {
	name := dmName(p.lvm.VG, p.lvm.ThinPool)
	for _, n := range []string{name + "-tpool", name} {
		table, err := ctl.Table(n)
		if errors.Is(err, dm.ErrNotFound) {
			continue
		}
		if err != nil {
			return thin.Pool{}, fmt.Errorf("lvmthin: %w", err)
		}
		if len(table) == 1 && table[0].Type == thin.PoolTargetType {
			return thin.Pool{Control: ctl, Name: n}, nil
		}
	}
	return thin.Pool{}, fmt.Errorf("%w: thin pool %s/%s is not active (no %s-tpool device)", pool.ErrUnsupported, p.lvm.VG, p.lvm.ThinPool, name)
}

// metadataNode returns a block device node of the pool's metadata device: /dev/mapper/<its
// dm name>, made if udev did not.
func metadataNode(ctl *dm.Control, dev uint64) (string, error) {
	devs, err := ctl.List("")
	if err != nil {
		return "", fmt.Errorf("lvmthin: %w", err)
	}
	for _, d := range devs {
		if d.Dev == dev {
			path, err := dm.EnsureNode(dm.NodeDir, d.Name, dev)
			if err != nil {
				return "", fmt.Errorf("lvmthin: %w", err)
			}
			return path, nil
		}
	}
	return "", fmt.Errorf("lvmthin: the thin pool's metadata device %s is not a device-mapper device", dm.FormatDev(dev))
}

// dmName is the device-mapper name of vg/lv: "<vg>-<lv>" with the dashes inside each doubled.
func dmName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// thinLV is what MapBlocks needs of an LV.
type thinLV struct {
	thinID uint32
	size   int64
}

// thinIDs reports the thin device id and size of each of the thin LVs names of the pool; one
// that is not there is pool.ErrNotFound.
func (p *Pool) thinIDs(ctx context.Context, names []string) (map[string]thinLV, error) {
	sel := make([]string, len(names))
	for i, n := range names {
		sel[i] = `lv_name="` + n + `"`
	}
	args := []string{"lvs"}
	if p.lvm.ExtraConfig != "" {
		args = append(args, "--config", p.lvm.ExtraConfig)
	}
	args = append(args, "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_name,thin_id,lv_size,pool_lv,segtype", "--select", strings.Join(sel, " || "), p.lvm.VG)
	out, err := p.lvm.Runner.Run(ctx, "lvm", args...)
	if err != nil {
		return nil, fmt.Errorf("lvmthin: thin ids: %w", err)
	}
	return parseThinIDs(out, p.lvm.ThinPool, names)
}

// parseThinIDs reads an lvs json report of lv_name, thin_id, lv_size, pool_lv and segtype.
func parseThinIDs(out []byte, thinPool string, names []string) (map[string]thinLV, error) {
	var r struct {
		Report []struct {
			LV []struct {
				Name    string `json:"lv_name"`
				ThinID  string `json:"thin_id"`
				Size    string `json:"lv_size"`
				Pool    string `json:"pool_lv"`
				Segtype string `json:"segtype"`
			} `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("lvmthin: parsing the lvs report: %w", err)
	}
	got := map[string]thinLV{}
	for _, part := range r.Report {
		for _, lv := range part.LV {
			if lv.Segtype != "thin" || lv.Pool != thinPool {
				continue
			}
			id, err := strconv.ParseUint(lv.ThinID, 10, 32)
			if err != nil || id > thin.MaxDevID {
				return nil, fmt.Errorf("lvmthin: %s: thin_id %q", lv.Name, lv.ThinID)
			}
			size, err := strconv.ParseInt(lv.Size, 10, 64)
			if err != nil || size <= 0 {
				return nil, fmt.Errorf("lvmthin: %s: lv_size %q", lv.Name, lv.Size)
			}
			got[lv.Name] = thinLV{thinID: uint32(id), size: size}
		}
	}
	for _, n := range names {
		if _, ok := got[n]; !ok {
			return nil, fmt.Errorf("%w: %s", pool.ErrNotFound, n)
		}
	}
	return got, nil
}
