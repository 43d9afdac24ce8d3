package thin

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
)

// Target type names.
const (
	PoolTargetType = "thin-pool"
	ThinTargetType = "thin"
)

// Limits the kernel enforces.
const (
	// MaxDevID is the largest thin device id (ids are 24 bits).
	MaxDevID = 1<<24 - 1
	// MinBlockSectors and MaxBlockSectors bound the pool's data block size (64 KiB to
	// 1 GiB); it must also be a multiple of MinBlockSectors.
	MinBlockSectors = 128
	MaxBlockSectors = 2097152
)

// PoolFeatures are the optional arguments of a thin-pool table.
type PoolFeatures struct {
	// SkipBlockZeroing: newly provisioned blocks are not zeroed first (reads of unwritten
	// parts of a block may return old data of deleted devices).
	SkipBlockZeroing bool
	// IgnoreDiscard: discards are refused by the pool and its thin devices.
	IgnoreDiscard bool
	// NoDiscardPassdown: discards free blocks in the pool but are not passed to the data
	// device.
	NoDiscardPassdown bool
	// ReadOnly: the metadata is not changed (no provisioning, no messages).
	ReadOnly bool
	// ErrorIfNoSpace: when the data device is full, writes fail at once instead of being
	// queued (for no_space_timeout, 60 s by default).
	ErrorIfNoSpace bool
}

// PoolTable is the table line of a thin-pool target:
//
//	<metadata dev> <data dev> <data block size> <low water mark> [<#features> <feature>*]
type PoolTable struct {
	// MetadataDev and DataDev name the two devices, as "major:minor" (dm.FormatDev) or a path.
	MetadataDev, DataDev string
	// BlockSectors is the data block size, in 512-byte sectors.
	BlockSectors uint64
	// LowWaterMark is a number of free data blocks: the pool raises a dm event (EventNr
	// grows) when free blocks fall to it.
	LowWaterMark uint64
	PoolFeatures
}

// Target returns the pool's table for a data device of sectors (the pool uses whole blocks of
// it). The kernel writes the same parameters back in Table, with a trailing space.
func (t PoolTable) Target(sectors uint64) (dm.Target, error) {
	if err := checkDevArg("metadata", t.MetadataDev); err != nil {
		return dm.Target{}, err
	}
	if err := checkDevArg("data", t.DataDev); err != nil {
		return dm.Target{}, err
	}
	if t.MetadataDev == t.DataDev {
		return dm.Target{}, invalid("metadata and data are the same device %q", t.DataDev)
	}
	if t.BlockSectors < MinBlockSectors || t.BlockSectors > MaxBlockSectors || t.BlockSectors%MinBlockSectors != 0 {
		return dm.Target{}, invalid("data block size of %d sectors is not a multiple of %d from %d to %d",
			t.BlockSectors, MinBlockSectors, MinBlockSectors, MaxBlockSectors)
	}
	if sectors < t.BlockSectors {
		return dm.Target{}, invalid("pool of %d sectors holds no data block of %d", sectors, t.BlockSectors)
	}
	f := t.args()
	params := fmt.Sprintf("%s %s %d %d %d", t.MetadataDev, t.DataDev, t.BlockSectors, t.LowWaterMark, len(f))
	if len(f) > 0 {
		params += " " + strings.Join(f, " ")
	}
	return dm.Target{Start: 0, Length: sectors, Type: PoolTargetType, Params: params}, nil
}

// args lists the features in the order the kernel writes them back.
func (f PoolFeatures) args() []string {
	var a []string
	for _, x := range []struct {
		on   bool
		name string
	}{
		{f.SkipBlockZeroing, "skip_block_zeroing"},
		{f.IgnoreDiscard, "ignore_discard"},
		{f.NoDiscardPassdown, "no_discard_passdown"},
		{f.ReadOnly, "read_only"},
		{f.ErrorIfNoSpace, "error_if_no_space"},
	} {
		if x.on {
			a = append(a, x.name)
		}
	}
	return a
}

// ParsePoolTable parses the parameters of a thin-pool target, as Table returns them.
func ParsePoolTable(params string) (PoolTable, error) {
	f := strings.Fields(params)
	if len(f) < 4 {
		return PoolTable{}, fmt.Errorf("thin-pool table %q: %d fields, want at least 4", params, len(f))
	}
	t := PoolTable{MetadataDev: f[0], DataDev: f[1]}
	var err error
	if t.BlockSectors, err = strconv.ParseUint(f[2], 10, 64); err != nil {
		return PoolTable{}, fmt.Errorf("thin-pool table %q: block size: %w", params, err)
	}
	if t.LowWaterMark, err = strconv.ParseUint(f[3], 10, 64); err != nil {
		return PoolTable{}, fmt.Errorf("thin-pool table %q: low water mark: %w", params, err)
	}
	if len(f) == 4 {
		return t, nil
	}
	n, err := strconv.Atoi(f[4])
	if err != nil || n != len(f)-5 {
		return PoolTable{}, fmt.Errorf("thin-pool table %q: feature count %q does not match %d features", params, f[4], len(f)-5)
	}
	for _, a := range f[5:] {
		switch a {
		case "skip_block_zeroing":
			t.SkipBlockZeroing = true
		case "ignore_discard":
			t.IgnoreDiscard = true
		case "no_discard_passdown":
			t.NoDiscardPassdown = true
		case "read_only":
			t.ReadOnly = true
		case "error_if_no_space":
			t.ErrorIfNoSpace = true
		default:
			return PoolTable{}, fmt.Errorf("thin-pool table %q: unknown feature %q", params, a)
		}
	}
	return t, nil
}

// ThinTable is the table line of a thin target:
//
//	<pool dev> <dev id> [<external origin dev>]
type ThinTable struct {
	// PoolDev names the pool's dm device, as "major:minor" (dm.FormatDev) or a path.
	PoolDev string
	// ID is the thin device's id in the pool.
	ID uint32
	// ExternalOrigin, if set, is a read-only device that provides the data of blocks the
	// thin device has not written.
	ExternalOrigin string
}

// Target returns the thin device's table for a size of sectors.
func (t ThinTable) Target(sectors uint64) (dm.Target, error) {
	if err := checkDevArg("pool", t.PoolDev); err != nil {
		return dm.Target{}, err
	}
	if err := checkID(t.ID); err != nil {
		return dm.Target{}, err
	}
	params := fmt.Sprintf("%s %d", t.PoolDev, t.ID)
	if t.ExternalOrigin != "" {
		if err := checkDevArg("external origin", t.ExternalOrigin); err != nil {
			return dm.Target{}, err
		}
		params += " " + t.ExternalOrigin
	}
	if sectors == 0 {
		return dm.Target{}, invalid("thin device %d of no size", t.ID)
	}
	return dm.Target{Start: 0, Length: sectors, Type: ThinTargetType, Params: params}, nil
}

// ParseThinTable parses the parameters of a thin target, as Table returns them.
func ParseThinTable(params string) (ThinTable, error) {
	f := strings.Fields(params)
	if len(f) != 2 && len(f) != 3 {
		return ThinTable{}, fmt.Errorf("thin table %q: %d fields, want 2 or 3", params, len(f))
	}
	id, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || id > MaxDevID {
		return ThinTable{}, fmt.Errorf("thin table %q: device id %q", params, f[1])
	}
	t := ThinTable{PoolDev: f[0], ID: uint32(id)}
	if len(f) == 3 {
		t.ExternalOrigin = f[2]
	}
	return t, nil
}

// checkDevArg refuses a device argument the kernel would split or misread.
func checkDevArg(what, dev string) error {
	if dev == "" || strings.ContainsAny(dev, " \t\n\x00") {
		return invalid("%s device %q is empty or contains white space", what, dev)
	}
	return nil
}

func checkID(id uint32) error {
	if id > MaxDevID {
		return invalid("thin device id %d is more than %d", id, MaxDevID)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("thin: %s: %w", fmt.Sprintf(format, args...), dm.ErrInvalid)
}
