package thin

import (
	"errors"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
)

func TestPoolTableTarget(t *testing.T) {
	tests := []struct {
		name  string
		table PoolTable
		want  string
	}{
		{"no features", PoolTable{MetadataDev: "7:0", DataDev: "7:1", BlockSectors: 128}, "7:0 7:1 128 0 0"},
		{"skip zeroing, as LVM-less pools usually are", PoolTable{MetadataDev: "7:0", DataDev: "7:1", BlockSectors: 128, LowWaterMark: 10,
			PoolFeatures: PoolFeatures{SkipBlockZeroing: true}}, "7:0 7:1 128 10 1 skip_block_zeroing"},
		{"every feature, in the kernel's order", PoolTable{MetadataDev: "/dev/loop0", DataDev: "/dev/loop1", BlockSectors: 2097152,
			PoolFeatures: PoolFeatures{ErrorIfNoSpace: true, ReadOnly: true, NoDiscardPassdown: true, IgnoreDiscard: true, SkipBlockZeroing: true}},
			"/dev/loop0 /dev/loop1 2097152 0 5 skip_block_zeroing ignore_discard no_discard_passdown read_only error_if_no_space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.table.Target(1 << 21)
			if err != nil {
				t.Fatal(err)
			}
			want := dm.Target{Start: 0, Length: 1 << 21, Type: "thin-pool", Params: tt.want}
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
			// The kernel writes the line back with a trailing space; it parses to the same.
			back, err := ParsePoolTable(got.Params + " ")
			if err != nil {
				t.Fatal(err)
			}
			if back != tt.table {
				t.Errorf("parsed back %+v, want %+v", back, tt.table)
			}
		})
	}
}

func TestPoolTableRefusesWhatTheKernelWould(t *testing.T) {
	ok := PoolTable{MetadataDev: "7:0", DataDev: "7:1", BlockSectors: 128}
	tests := []struct {
		name    string
		mutate  func(*PoolTable)
		sectors uint64
	}{
		{"block size below 64 KiB", func(p *PoolTable) { p.BlockSectors = 64 }, 1 << 20},
		{"block size not a multiple of 64 KiB", func(p *PoolTable) { p.BlockSectors = 192 + 1 }, 1 << 20},
		{"block size above 1 GiB", func(p *PoolTable) { p.BlockSectors = 2 * MaxBlockSectors }, 1 << 30},
		{"same metadata and data device", func(p *PoolTable) { p.DataDev = p.MetadataDev }, 1 << 20},
		{"no metadata device", func(p *PoolTable) { p.MetadataDev = "" }, 1 << 20},
		{"white space in a device", func(p *PoolTable) { p.DataDev = "7:1 0" }, 1 << 20},
		{"smaller than one block", func(p *PoolTable) {}, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.mutate(&p)
			if _, err := p.Target(tt.sectors); !errors.Is(err, dm.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestParsePoolTableForms(t *testing.T) {
	tests := []struct {
		params string
		want   PoolTable
		ok     bool
	}{
		{"253:0 253:1 128 0 ", PoolTable{MetadataDev: "253:0", DataDev: "253:1", BlockSectors: 128}, true},
		{"253:0 253:1 128 0 0 ", PoolTable{MetadataDev: "253:0", DataDev: "253:1", BlockSectors: 128}, true},
		{"253:0 253:1 256 7 2 skip_block_zeroing error_if_no_space ", PoolTable{MetadataDev: "253:0", DataDev: "253:1", BlockSectors: 256, LowWaterMark: 7,
			PoolFeatures: PoolFeatures{SkipBlockZeroing: true, ErrorIfNoSpace: true}}, true},
		{"253:0 253:1 128", PoolTable{}, false},
		{"253:0 253:1 x 0", PoolTable{}, false},
		{"253:0 253:1 128 0 2 skip_block_zeroing", PoolTable{}, false},
		{"253:0 253:1 128 0 1 fast_mode", PoolTable{}, false},
	}
	for _, tt := range tests {
		got, err := ParsePoolTable(tt.params)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePoolTable(%q) = %+v, %v; want %+v, ok=%v", tt.params, got, err, tt.want, tt.ok)
		}
	}
}

func TestThinTableTarget(t *testing.T) {
	tests := []struct {
		table ThinTable
		want  string
	}{
		{ThinTable{PoolDev: "253:2", ID: 0}, "253:2 0"},
		{ThinTable{PoolDev: "253:2", ID: MaxDevID}, "253:2 16777215"},
		{ThinTable{PoolDev: "253:2", ID: 5, ExternalOrigin: "7:3"}, "253:2 5 7:3"},
	}
	for _, tt := range tests {
		got, err := tt.table.Target(2048)
		if err != nil {
			t.Fatal(err)
		}
		if want := (dm.Target{Length: 2048, Type: "thin", Params: tt.want}); got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
		if back, err := ParseThinTable(got.Params); err != nil || back != tt.table {
			t.Errorf("parsed back %+v, %v", back, err)
		}
	}
	for _, bad := range []ThinTable{{PoolDev: "253:2", ID: MaxDevID + 1}, {ID: 1}, {PoolDev: "253:2", ID: 1, ExternalOrigin: "a b"}} {
		if _, err := bad.Target(2048); !errors.Is(err, dm.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := (ThinTable{PoolDev: "253:2"}).Target(0); !errors.Is(err, dm.ErrInvalid) {
		t.Errorf("no size: got %v, want ErrInvalid", err)
	}
}

func TestParseThinTableRefusesMalformed(t *testing.T) {
	for _, params := range []string{"", "253:2", "253:2 x", "253:2 16777216", "253:2 1 7:3 extra", "253:2 -1"} {
		if got, err := ParseThinTable(params); err == nil {
			t.Errorf("ParseThinTable(%q) = %+v, want an error", params, got)
		}
	}
}
