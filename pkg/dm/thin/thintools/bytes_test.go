package thintools

import (
	"math"
	"testing"
)

func TestExtentBytesCutsAtTheLimitWithoutOverflow(t *testing.T) {
	const bs = 128 // 64 KiB
	const b = 64 << 10
	for _, c := range []struct {
		e        Extent
		limit    int64
		off, len int64
		ok       bool
	}{
		{Extent{0, 1}, 1 << 30, 0, b, true},
		{Extent{3, 2}, 1 << 30, 3 * b, 2 * b, true},
		{Extent{3, 2}, 4 * b, 3 * b, b, true},
		{Extent{3, 2}, 4*b + 512, 3 * b, b + 512, true},
		{Extent{4, 2}, 4 * b, 0, 0, false},
		{Extent{5, 1}, 4 * b, 0, 0, false},
		{Extent{0, math.MaxUint64}, 1 << 30, 0, 1 << 30, true},
		{Extent{math.MaxUint64 - 1, 1}, math.MaxInt64, 0, 0, false},
		{Extent{0, 1}, 0, 0, 0, false},
	} {
		off, n, ok := c.e.Bytes(bs, c.limit)
		if off != c.off || n != c.len || ok != c.ok {
			t.Errorf("%+v.Bytes(%d, %d) = %d, %d, %v; want %d, %d, %v", c.e, bs, c.limit, off, n, ok, c.off, c.len, c.ok)
		}
	}
}
