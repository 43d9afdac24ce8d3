package lvm

import (
	"context"
	"slices"
	"strings"
)

// VGExists reports whether the volume group exists (as far as lvm can see it: ExtraConfig's
// device filter applies). It is a question to vgs; a missing VG is false, not an error.
func (p *Pool) VGExists(ctx context.Context) (bool, error) {
	if err := p.checkPool(); err != nil {
		return false, err
	}
	args := append(slices.Clone(reportArgs), "-o", "vg_name", "--select", selectName("vg_name", p.VG))
	out, err := p.lvm(ctx, "vgs", args...)
	if err != nil {
		return false, err
	}
	r, err := parseReport(out)
	if err != nil {
		return false, err
	}
	for _, part := range r.Report {
		if slices.ContainsFunc(part.VG, func(v vgRow) bool { return v.Name == p.VG }) {
			return true, nil
		}
	}
	return false, nil
}

// VGLV is an LV of the pool's volume group, of any kind, as lvs lists it.
type VGLV struct {
	Name string
	// Segtype is LVM's segment type: "thin-pool", "thin", "linear", ...
	Segtype string
	// Pool is the thin pool of a thin LV, "" for other kinds.
	Pool string
}

// ListVG lists every LV of the volume group that lvs shows, sorted by name: the thin pool,
// its thin LVs and any other LV, but not LVM's hidden internal LVs (such as the pool's data
// and metadata). List only sees the pool's thin LVs; ListVG is for checking what else the
// volume group holds. A missing volume group is an error from lvs.
func (p *Pool) ListVG(ctx context.Context) ([]VGLV, error) {
	if err := p.checkPool(); err != nil {
		return nil, err
	}
	rows, err := p.lvs(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]VGLV, 0, len(rows))
	for _, r := range rows {
		out = append(out, VGLV{Name: r.Name, Segtype: r.Segtype, Pool: r.Pool})
	}
	slices.SortFunc(out, func(a, b VGLV) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
