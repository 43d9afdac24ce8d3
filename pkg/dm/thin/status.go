package thin

import (
	"fmt"
	"strconv"
	"strings"
)

// PoolMode is the state of a pool, as its status line says.
type PoolMode string

// Pool modes. Only PoolWrite, PoolReadOnly and PoolOutOfDataSpace come with numbers.
const (
	// PoolWrite: working.
	PoolWrite PoolMode = "rw"
	// PoolReadOnly: the metadata cannot change: the pool was loaded read_only, ran out of
	// metadata space, or met a metadata error (then NeedsCheck is usually set). Messages
	// fail (ErrPoolReadOnly); I/O to provisioned blocks still works.
	PoolReadOnly PoolMode = "ro"
	// PoolOutOfDataSpace: the data device is full; writes that need a new block queue or
	// fail (ErrorIfNoSpace) until the pool grows.
	PoolOutOfDataSpace PoolMode = "out_of_data_space"
	// PoolFail: the pool failed; all I/O fails. The status line is just "Fail".
	PoolFail PoolMode = "Fail"
	// PoolError: the kernel could not read the metadata to report the status ("Error").
	PoolError PoolMode = "Error"
)

// DiscardMode is how the pool handles discards.
type DiscardMode string

// Discard modes.
const (
	DiscardPassdown   DiscardMode = "discard_passdown"
	NoDiscardPassdown DiscardMode = "no_discard_passdown"
	IgnoreDiscard     DiscardMode = "ignore_discard"
)

// PoolStatus is the status line of a thin-pool target:
//
//	<transaction id> <used metadata blocks>/<total metadata blocks>
//	<used data blocks>/<total data blocks> <held metadata root>
//	ro|rw|out_of_data_space ignore_discard|[no_]discard_passdown
//	[error|queue]_if_no_space needs_check|- <metadata low watermark>
//
// or "Fail" or "Error" alone. Metadata blocks are 4 KiB; data blocks are the pool's block
// size.
type PoolStatus struct {
	// Mode is the pool's state. For PoolFail and PoolError, nothing else is set.
	Mode                                    PoolMode
	TransactionID                           uint64
	UsedMetadataBlocks, TotalMetadataBlocks uint64
	UsedDataBlocks, TotalDataBlocks         uint64
	// HeldMetadataRoot is the metadata block of the snapshot reserve_metadata_snap holds
	// for userspace tools (thin_dump -m), 0 if none.
	HeldMetadataRoot uint64
	Discards         DiscardMode
	// ErrorIfNoSpace: writes fail at once when the data device is full (else they queue).
	ErrorIfNoSpace bool
	// NeedsCheck: the kernel found a metadata problem; the pool stays read-only until
	// thin_check / thin_repair has run on the inactive pool's metadata.
	NeedsCheck bool
	// MetadataLowWatermark is the number of free metadata blocks below which the pool
	// raises an event. Kernels before 4.19 do not report it (0).
	MetadataLowWatermark uint64
}

// ParsePoolStatus parses the status line of a thin-pool target. Fields a newer kernel may add
// at the end are ignored.
func ParsePoolStatus(line string) (PoolStatus, error) {
	f := strings.Fields(line)
	if len(f) == 1 && (f[0] == string(PoolFail) || f[0] == string(PoolError)) {
		return PoolStatus{Mode: PoolMode(f[0])}, nil
	}
	if len(f) < 8 {
		return PoolStatus{}, fmt.Errorf("thin-pool status %q: %d fields, want at least 8", line, len(f))
	}
	bad := func(what string, err error) (PoolStatus, error) {
		return PoolStatus{}, fmt.Errorf("thin-pool status %q: %s: %w", line, what, err)
	}
	var s PoolStatus
	var err error
	if s.TransactionID, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return bad("transaction id", err)
	}
	if s.UsedMetadataBlocks, s.TotalMetadataBlocks, err = parseRatio(f[1]); err != nil {
		return bad("metadata blocks", err)
	}
	if s.UsedDataBlocks, s.TotalDataBlocks, err = parseRatio(f[2]); err != nil {
		return bad("data blocks", err)
	}
	if f[3] != "-" {
		if s.HeldMetadataRoot, err = strconv.ParseUint(f[3], 10, 64); err != nil {
			return bad("held metadata root", err)
		}
	}
	switch m := PoolMode(f[4]); m {
	case PoolWrite, PoolReadOnly, PoolOutOfDataSpace:
		s.Mode = m
	default:
		return bad("mode", fmt.Errorf("unknown %q", f[4]))
	}
	switch d := DiscardMode(f[5]); d {
	case DiscardPassdown, NoDiscardPassdown, IgnoreDiscard:
		s.Discards = d
	default:
		return bad("discards", fmt.Errorf("unknown %q", f[5]))
	}
	switch f[6] {
	case "error_if_no_space":
		s.ErrorIfNoSpace = true
	case "queue_if_no_space":
	default:
		return bad("no-space policy", fmt.Errorf("unknown %q", f[6]))
	}
	switch f[7] {
	case "needs_check":
		s.NeedsCheck = true
	case "-":
	default:
		return bad("needs_check", fmt.Errorf("unknown %q", f[7]))
	}
	if len(f) > 8 {
		if s.MetadataLowWatermark, err = strconv.ParseUint(f[8], 10, 64); err != nil {
			return bad("metadata low watermark", err)
		}
	}
	return s, nil
}

func parseRatio(s string) (used, total uint64, err error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not used/total", s)
	}
	if used, err = strconv.ParseUint(a, 10, 64); err != nil {
		return 0, 0, err
	}
	if total, err = strconv.ParseUint(b, 10, 64); err != nil {
		return 0, 0, err
	}
	return used, total, nil
}

// ThinStatus is the status line of a thin target:
//
//	<nr mapped sectors> <highest mapped sector>|-
//
// or "Fail", "Error" or "-" alone.
type ThinStatus struct {
	// Fail: the pool failed ("Fail"). Error: the kernel could not read the mapping ("Error",
	// or "-" for a target with no thin device). The numbers are set only if neither is.
	Fail, Error bool
	// MappedSectors is the space the device has provisioned (whole pool blocks).
	MappedSectors uint64
	// HighestMappedSector is the last sector of the highest provisioned block, -1 if none.
	HighestMappedSector int64
}

// ParseThinStatus parses the status line of a thin target.
func ParseThinStatus(line string) (ThinStatus, error) {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "Fail":
		return ThinStatus{Fail: true, HighestMappedSector: -1}, nil
	case len(f) == 1 && (f[0] == "Error" || f[0] == "-"):
		return ThinStatus{Error: true, HighestMappedSector: -1}, nil
	case len(f) != 2:
		return ThinStatus{}, fmt.Errorf("thin status %q: %d fields, want 2", line, len(f))
	}
	mapped, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return ThinStatus{}, fmt.Errorf("thin status %q: mapped sectors: %w", line, err)
	}
	s := ThinStatus{MappedSectors: mapped, HighestMappedSector: -1}
	if f[1] != "-" {
		if s.HighestMappedSector, err = strconv.ParseInt(f[1], 10, 64); err != nil || s.HighestMappedSector < 0 {
			return ThinStatus{}, fmt.Errorf("thin status %q: highest mapped sector %q", line, f[1])
		}
	}
	return s, nil
}
