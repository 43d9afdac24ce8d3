package thin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// ErrMetadataSnapHeld: the pool's metadata snapshot is held by someone else (one at a time).
var ErrMetadataSnapHeld = rpcerr.Sentinel(rpcerr.ErrUnavailable, "the pool's metadata snapshot is held by another reader")

// HoldMetadataSnap reserves the pool's metadata snapshot (reserve_metadata_snap: the kernel
// commits the metadata, then keeps a read-only copy of it for userspace tools), runs fn with
// the dev_t of the pool's metadata device (from the pool's table; tools read the copy there
// with --metadata-snap), then releases it: always, whatever fn returns, even if it panics.
//
// The kernel holds one metadata snapshot per pool: callers serialize their own calls. One
// already held (dm.ErrBusy on reserve) is someone else's, or was left by a process that died
// holding it: if takeOver says so (it is told the held root), it is released and reserved
// again; else ErrMetadataSnapHeld.
func (p Pool) HoldMetadataSnap(takeOver func(heldRoot uint64) bool, fn func(metadataDev uint64) error) (err error) {
	dev, err := p.metadataDev()
	if err != nil {
		return err
	}
	if err := p.ReserveMetadataSnap(); err != nil {
		if !errors.Is(err, dm.ErrBusy) {
			return fmt.Errorf("thin: reserve the metadata snapshot of %s: %w", p.Name, err)
		}
		s, serr := p.Status(true)
		if serr != nil || s.HeldMetadataRoot == 0 || takeOver == nil || !takeOver(s.HeldMetadataRoot) {
			return fmt.Errorf("%w: %s (root %d): %w", ErrMetadataSnapHeld, p.Name, s.HeldMetadataRoot, err)
		}
		if err := p.ReleaseMetadataSnap(); err != nil {
			return fmt.Errorf("thin: release the stale metadata snapshot of %s: %w", p.Name, err)
		}
		if err := p.ReserveMetadataSnap(); err != nil {
			return fmt.Errorf("thin: reserve the metadata snapshot of %s: %w", p.Name, err)
		}
	}
	defer func() {
		if rerr := p.ReleaseMetadataSnap(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("thin: release the metadata snapshot of %s: %w", p.Name, rerr))
		}
	}()
	return fn(dev)
}

// metadataDev is the dev_t of the metadata device in the pool's table.
func (p Pool) metadataDev() (uint64, error) {
	table, err := p.Control.Table(p.Name)
	if err != nil {
		return 0, err
	}
	if len(table) != 1 || table[0].Type != PoolTargetType {
		return 0, fmt.Errorf("thin: %s is not a thin pool (%d targets)", p.Name, len(table))
	}
	t, err := ParsePoolTable(table[0].Params)
	if err != nil {
		return 0, err
	}
	return parseDev(t.MetadataDev)
}

// parseDev parses "major:minor" (the kernel writes tables' devices so).
func parseDev(s string) (uint64, error) {
	a, b, ok := strings.Cut(s, ":")
	maj, err1 := strconv.ParseUint(a, 10, 32)
	minor, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("thin: device %q is not major:minor", s)
	}
	return unix.Mkdev(uint32(maj), uint32(minor)), nil
}
