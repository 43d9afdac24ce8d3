package lvm

import (
	"context"
	"errors"
	"testing"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		report string
		want   Usage
	}{
		{"list.json", Usage{
			DataBytes: 1061158912, DataUsedBytes: 21010946, // 1.98%
			MetadataBytes: 4194304, MetadataUsedBytes: 466826, // 11.13%
			VirtualBytes: 3 * 104857600, // clone-1, pvc-1, snap-1; not the linear LV
		}},
		{"full.json", Usage{
			DataBytes: 1061158912, DataUsedBytes: 1061158912,
			MetadataBytes: 4194304, MetadataUsedBytes: 728970, // 17.38%
			VirtualBytes: 2147483648, Health: "out of data space",
		}},
		{"inactive.json", Usage{ // an inactive pool: no usage figures
			DataBytes: 1061158912, MetadataBytes: 4194304, VirtualBytes: 3 * 104857600,
		}},
	}
	for _, tt := range tests {
		p, f, _ := newPool()
		f.On("lvm", "lvs").Return(testdata(t, tt.report))
		u, err := p.Usage(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", tt.report, err)
		}
		if u != tt.want {
			t.Errorf("%s: Usage = %+v\nwant %+v", tt.report, u, tt.want)
		}
	}
}

func TestUsageWithoutThePool(t *testing.T) {
	p, f, _ := newPool()
	p.ThinPool = "other"
	f.On("lvm", "lvs").Return(testdata(t, "list.json"))
	if _, err := p.Usage(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Usage = %v, want ErrNotFound", err)
	}
}

func TestUsageFreeBytes(t *testing.T) {
	if got := (Usage{DataBytes: 10, DataUsedBytes: 3}).FreeBytes(); got != 7 {
		t.Errorf("FreeBytes = %d", got)
	}
	if got := (Usage{DataBytes: 10, DataUsedBytes: 11}).FreeBytes(); got != 0 {
		t.Errorf("FreeBytes = %d", got)
	}
}

func TestPoolHealth(t *testing.T) {
	for attr, want := range map[string]string{
		"twi-aotz--": "", "twi-aotzD-": "out of data space", "twi-aotzM-": "metadata read only",
		"twi-aotzF-": "failed", "twi": "",
	} {
		u, err := poolUsage(lvRow{Attr: attr}, 0)
		if err != nil || u.Health != want {
			t.Errorf("attr %q: Health = %q, %v; want %q", attr, u.Health, err, want)
		}
	}
}
