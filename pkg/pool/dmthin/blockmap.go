package dmthin

import (
	"context"
	"fmt"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin/thintools"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

var _ pool.BlockMapper = (*Pool)(nil)

// metaSnapLocks serializes the reads of each pool's metadata snapshot (the kernel holds one
// per pool), by pool UUID: a channel of one slot, so that a wait can end with its context.
var metaSnapLocks sync.Map // pool UUID → chan struct{}

// metaNodeName is the node of the thin metadata sub-device in NodeDir/<Name> while the tools
// read it: "pool_tmeta" is not a valid ID (see validID), so it is never a volume's node.
const metaNodeName = "pool_tmeta"

// MapBlocks implements pool.BlockMapper from the thin metadata, read with thin_dump (id's
// mapped blocks) or thin_delta (the blocks id and base map differently) on the pool's metadata
// snapshot, which it reserves for the call and always releases. Reads of one pool's metadata
// take turns (waiting bounded by ctx); each run of a tool is bounded by
// thintools.DefaultTimeout, so a slow emit (a slow reader at the end of a stream) holds the
// metadata snapshot that long at most. Ranges are cut at id's size.
//
// The IDs are looked up once the metadata snapshot is held, so they name the thin devices the
// snapshot has: a device deleted before is ErrNotFound, one deleted after is read as it was.
// A metadata snapshot already held when the call begins can only be a dead process's (the
// pool is open in one process, and its calls take turns): it is released and taken again.
func (p *Pool) MapBlocks(ctx context.Context, id, base string, emit func(blockSize int64, r pool.Range) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	p.ops.Add(1)
	p.mu.Unlock()
	defer p.ops.Done()

	l, _ := metaSnapLocks.LoadOrStore(p.hdr.UUID.String(), make(chan struct{}, 1))
	turn := l.(chan struct{})
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-turn }()

	takeOver := func(root uint64) bool {
		p.log.Info("Releasing a metadata snapshot a previous process left held", "pool", p.tp.Name, "root", root)
		return true
	}
	return p.tp.HoldMetadataSnap(takeOver, func(metaDev uint64) error {
		v, ok := p.lookup(id)
		if !ok {
			return fmt.Errorf("%w: %s", pool.ErrNotFound, id)
		}
		var b *volRec
		if base != "" {
			if b, ok = p.lookup(base); !ok {
				return fmt.Errorf("%w: %s", pool.ErrNotFound, base)
			}
		}
		node, err := dm.EnsureNode(p.nodeDir(), metaNodeName, metaDev)
		if err != nil {
			return fmt.Errorf("dmthin: %w", err)
		}
		defer func() { _ = dm.RemoveNode(p.nodeDir(), metaNodeName) }() // remade by the next call
		out := func(blockSectors uint64, e thintools.Extent) error {
			off, n, ok := e.Bytes(blockSectors, v.SizeBytes)
			if !ok {
				return nil
			}
			return emit(int64(blockSectors)*sector, pool.Range{Offset: off, Length: n})
		}
		tools := thintools.Tools{Live: true}
		if b == nil {
			err = tools.Mapped(ctx, node, v.Thin, out)
		} else {
			err = tools.Changed(ctx, node, b.Thin, v.Thin, out)
		}
		return err
	})
}
