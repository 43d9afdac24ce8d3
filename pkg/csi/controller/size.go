package controller

import (
	"math"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Volume sizes.
const (
	// SizeUnitBytes is the granularity of the sizes the controller asks for: sizes are
	// rounded up to whole MiB. A storage node rounds further up to its backend's granularity
	// (lvm: whole 4 MiB extents; dmthin: none), within limit_bytes.
	SizeUnitBytes = 1 << 20
	// DefaultVolumeBytes is the size of a volume created without a capacity range.
	DefaultVolumeBytes = 1 << 30
)

func roundUp(n int64) int64   { return (n + SizeUnitBytes - 1) / SizeUnitBytes * SizeUnitBytes }
func roundDown(n int64) int64 { return n / SizeUnitBytes * SizeUnitBytes }

// volumeSize picks the size of a new volume: at least the required bytes and the source's
// size (floor), rounded up to whole MiB; DefaultVolumeBytes when nothing is asked (less if
// the limit says so); never above the limit (OutOfRange).
func volumeSize(r *csi.CapacityRange, floor int64) (int64, error) {
	required, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	if required < 0 || limit < 0 {
		return 0, rpcerr.Invalidf("capacity range must not be negative (required %d, limit %d)", required, limit)
	}
	if limit > 0 && required > limit {
		return 0, rpcerr.Invalidf("required_bytes %d exceeds limit_bytes %d", required, limit)
	}
	floor = max(floor, required)
	if floor > math.MaxInt64-SizeUnitBytes {
		return 0, rpcerr.OutOfRangef("%d bytes is too large", floor)
	}
	size := roundUp(floor)
	if floor == 0 {
		size = DefaultVolumeBytes
		if limit > 0 && limit < size {
			size = roundDown(limit)
		}
	}
	if size == 0 || (limit > 0 && size > limit) {
		return 0, rpcerr.OutOfRangef("no size in whole %d-byte units fits between %d and limit %d bytes", SizeUnitBytes, floor, limit)
	}
	return size, nil
}
