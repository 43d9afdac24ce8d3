package lvm

import (
	"context"
	"fmt"
	"math"
)

// Usage is the pool's capacity as lvs reports it.
type Usage struct {
	// DataBytes is the size of the pool's data device; DataUsedBytes how much of it is
	// provisioned (from data_percent, so precise to 0.01% of DataBytes).
	DataBytes, DataUsedBytes int64
	// MetadataBytes and MetadataUsedBytes are the same for the pool's metadata device.
	MetadataBytes, MetadataUsedBytes int64
	// VirtualBytes is the sum of the sizes of the pool's thin LVs: what has been promised.
	VirtualBytes int64
	// Health is "" for a healthy pool, else "out of data space", "metadata read only" or
	// "failed" (lv_attr's health bit).
	Health string
}

// FreeBytes is the pool's unprovisioned data space.
func (u Usage) FreeBytes() int64 { return max(u.DataBytes-u.DataUsedBytes, 0) }

// Usage reports the pool's capacity with one lvs call. The pool must be active for the used
// figures to be known; they read 0 otherwise. A missing thin pool is ErrNotFound.
func (p *Pool) Usage(ctx context.Context) (Usage, error) {
	if err := p.checkPool(); err != nil {
		return Usage{}, err
	}
	rows, err := p.lvs(ctx, "")
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	found := false
	for _, r := range rows {
		switch {
		case r.Name == p.ThinPool && r.Segtype == "thin-pool":
			found = true
			if u, err = poolUsage(r, u.VirtualBytes); err != nil {
				return Usage{}, err
			}
		case r.isThinIn(p.ThinPool):
			size, err := parseBytes(r.Size)
			if err != nil {
				return Usage{}, fmt.Errorf("lv %s: lv_size: %w", r.Name, err)
			}
			u.VirtualBytes += size
		}
	}
	if !found {
		return Usage{}, fmt.Errorf("thin pool %s/%s: %w", p.VG, p.ThinPool, ErrNotFound)
	}
	return u, nil
}

// poolUsage reads the thin-pool row into a Usage, keeping virtual.
func poolUsage(r lvRow, virtual int64) (Usage, error) {
	u := Usage{VirtualBytes: virtual}
	var err error
	var dataPct, metaPct float64
	if u.DataBytes, err = parseBytes(r.Size); err != nil {
		return Usage{}, fmt.Errorf("thin pool lv_size: %w", err)
	}
	if u.MetadataBytes, err = parseBytes(r.MetadataSize); err != nil {
		return Usage{}, fmt.Errorf("thin pool lv_metadata_size: %w", err)
	}
	if dataPct, err = parsePercent(r.DataPercent); err != nil {
		return Usage{}, fmt.Errorf("thin pool data_percent: %w", err)
	}
	if metaPct, err = parsePercent(r.MetadataPercent); err != nil {
		return Usage{}, fmt.Errorf("thin pool metadata_percent: %w", err)
	}
	u.DataUsedBytes = fraction(u.DataBytes, dataPct)
	u.MetadataUsedBytes = fraction(u.MetadataBytes, metaPct)
	switch attrAt(r.Attr, attrHealth) {
	case 'D':
		u.Health = "out of data space"
	case 'M':
		u.Health = "metadata read only"
	case 'F':
		u.Health = "failed"
	}
	return u, nil
}

// fraction is pct percent of n, rounded, and never more than n.
func fraction(n int64, pct float64) int64 {
	return min(int64(math.Round(float64(n)*pct/100)), n)
}
