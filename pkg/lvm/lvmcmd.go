package lvm

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// lvm runs `lvm <sub> [--config ExtraConfig] args...`.
func (p *Pool) lvm(ctx context.Context, sub string, args ...string) ([]byte, error) {
	full := []string{sub}
	if p.ExtraConfig != "" {
		full = append(full, "--config", p.ExtraConfig)
	}
	return p.Runner.Run(ctx, "lvm", append(full, args...)...)
}

// selectName is the lvm selection of the LVs (or VGs, with field "vg_name") called name.
// Names are validated before they get here, so the quoted value needs no escaping.
func selectName(field, name string) string { return field + `="` + name + `"` }

// reportArgs are the flags of every lvs/vgs report.
var reportArgs = []string{"--reportformat", "json", "--units", "b", "--nosuffix"}

// lvs reports the LVs of the VG matching the lvm selection sel ("" for all).
func (p *Pool) lvs(ctx context.Context, sel string) ([]lvRow, error) {
	args := append(slices.Clone(reportArgs), "-o", lvFields)
	if sel != "" {
		args = append(args, "--select", sel)
	}
	out, err := p.lvm(ctx, "lvs", append(args, p.VG)...)
	if err != nil {
		return nil, err
	}
	return parseLVRows(out)
}

// createFailed explains a failed lvcreate of name: ErrExists if an LV of that name exists in
// the VG (with the LV when it is ours), otherwise the classified error.
func (p *Pool) createFailed(ctx context.Context, name string, err error) (LV, error) {
	if lv, exists := p.existing(ctx, name); exists != nil {
		return lv, exists
	}
	return LV{}, classify(err)
}

// existing returns an ErrExists error if an LV called name exists anywhere in the VG, with
// the LV itself when it is a thin LV of the pool; nil if it does not exist or cannot be told.
func (p *Pool) existing(ctx context.Context, name string) (LV, error) {
	if ctx.Err() != nil {
		return LV{}, nil
	}
	rows, err := p.lvs(ctx, selectName("lv_name", name))
	if err != nil {
		return LV{}, nil
	}
	for _, r := range rows {
		if r.Name != name {
			continue
		}
		exists := fmt.Errorf("%s/%s: %w", p.VG, name, ErrExists)
		if !r.isThinIn(p.ThinPool) {
			return LV{}, exists
		}
		lv, cerr := r.toLV()
		if cerr != nil {
			return LV{}, exists
		}
		return lv, exists
	}
	return LV{}, nil
}

// failed explains a failed command on the existing LV name: ErrNotFound if it is gone,
// otherwise the classified error.
func (p *Pool) failed(ctx context.Context, name string, err error) error {
	if ctx.Err() == nil {
		if _, gerr := p.Get(ctx, name); errors.Is(gerr, ErrNotFound) {
			return gerr
		}
	}
	return classify(err)
}
