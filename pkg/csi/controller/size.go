package controller

import (
	"math"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Volume sizes.
const (
	// ExtentBytes is the granularity of volume sizes: LVM's default extent size. Sizes are
	// rounded up to it.
	ExtentBytes = 4 << 20
	// DefaultVolumeBytes is the size of a volume created without a capacity range.
	DefaultVolumeBytes = 1 << 30
)

func roundUp(n int64) int64   { return (n + ExtentBytes - 1) / ExtentBytes * ExtentBytes }
func roundDown(n int64) int64 { return n / ExtentBytes * ExtentBytes }

// volumeSize picks the size of a new volume: at least the required bytes and the source's
// size (floor), rounded up to whole extents; DefaultVolumeBytes when nothing is asked (less if
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
	if floor > math.MaxInt64-ExtentBytes {
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
		return 0, rpcerr.OutOfRangef("no size in whole %d-byte extents fits between %d and limit %d bytes", ExtentBytes, floor, limit)
	}
	return size, nil
}
