package dmthin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
)

// recoverIntents ends every operation the journal says was started and not settled, in the
// order they were started: creations are rolled back (they were never acknowledged), deletes
// finished, expansions completed. Then the records learn the pool's transaction id. An
// intent that cannot be ended now (its device is open, the pool is read-only) stays pending:
// it is logged, its IDs refuse other operations, and the next Open (or, for a delete, the
// next Delete) tries again; the pool still opens, so that its volumes are served.
func (p *Pool) recoverIntents(ctx context.Context) error {
	var pending []*intent
	p.st.view(func(st *state) {
		pending = slices.SortedFunc(maps.Values(st.intents), func(a, b *intent) int { return cmp.Compare(a.Seq, b.Seq) })
	})
	for _, it := range pending {
		p.log.Info("Recovering an interrupted operation", "op", it.Op, "intent", it.Seq, "id", it.ID, "new", len(it.New))
		if err := p.resolve(ctx, it); err != nil {
			p.log.Error(err, "Cannot end an interrupted operation now; it stays pending", "op", it.Op, "intent", it.Seq)
			if errors.Is(err, errStoreFailed) {
				return err
			}
		}
	}
	var recorded uint64
	p.st.view(func(st *state) { recorded = st.txid })
	if p.txid != recorded {
		txid := p.txid
		if _, err := p.st.append(ctx, func(uint64) *change { return &change{TxID: &txid} }); err != nil {
			return fmt.Errorf("dmthin: %w", err)
		}
	}
	return nil
}

// resolve ends a pending intent whose outcome in the kernel is unknown (after a crash, or
// when the operation could not go on).
func (p *Pool) resolve(ctx context.Context, it *intent) error {
	switch it.Op {
	case opDelete:
		return p.finishDelete(ctx, it)
	case opExpand:
		return p.finishExpand(ctx, it)
	}
	ids := make([]uint32, len(it.New))
	for i, v := range it.New {
		ids[i] = v.Thin
	}
	return p.rollback(ctx, it, ids)
}

// rollback undoes an intent that creates thin devices: every one of ids that may exist is
// deactivated and deleted (an id the pool does not have is fine), and the intent is settled
// as not done.
func (p *Pool) rollback(ctx context.Context, it *intent, ids []uint32) error {
	changed := false
	for _, id := range ids {
		if err := p.removeThinDevices(id); err != nil {
			return err
		}
		err := p.tp.Delete(id)
		switch {
		case err == nil:
			changed = true
		case errors.Is(err, thin.ErrIDNotFound):
		default:
			return fmt.Errorf("dmthin: roll back %s intent %d: delete thin id %d: %w", it.Op, it.Seq, id, kernelErr(err))
		}
	}
	if changed {
		if err := p.bumpTxID(); err != nil {
			return err
		}
	}
	return p.settle(ctx, it, false)
}

// finishDelete completes a delete: the device deactivated, the thin id deleted (already
// gone is fine), the record dropped.
func (p *Pool) finishDelete(ctx context.Context, it *intent) error {
	if err := p.removeThinDevices(it.Thin); err != nil {
		return err
	}
	p.dropActive(it.ID)
	err := p.tp.Delete(it.Thin)
	if err != nil && !errors.Is(err, thin.ErrIDNotFound) {
		return fmt.Errorf("dmthin: delete %s (thin id %d): %w", it.ID, it.Thin, kernelErr(err))
	}
	if err == nil {
		if err := p.bumpTxID(); err != nil {
			return err
		}
	}
	return p.settle(ctx, it, true)
}

// finishExpand completes an expansion: an active device gets the new size, then the record.
func (p *Pool) finishExpand(ctx context.Context, it *intent) error {
	p.mu.Lock()
	a, ok := p.active[it.ID]
	p.mu.Unlock()
	if ok && a.sectors < uint64(it.SizeBytes)/sector {
		if err := p.reload(ctx, it.ID, a, it.Thin, uint64(it.SizeBytes)/sector, "expand"); err != nil {
			return err
		}
	}
	return p.settle(ctx, it, true)
}

// removeThinDevices deactivates every dm device of the pool that maps thin id (normally
// none or one) and forgets it. An open device: pool.ErrInUse.
func (p *Pool) removeThinDevices(id uint32) error {
	devs, err := p.ctl.List("")
	if err != nil {
		return fmt.Errorf("dmthin: %w", err)
	}
	for _, d := range devs {
		if d.UUID != p.thinUUID(id) {
			continue
		}
		if err := p.deactivate(d.Name); err != nil {
			return err
		}
		p.mu.Lock()
		for vid, a := range p.active {
			if a.name == d.Name {
				delete(p.active, vid)
				_ = dm.RemoveNode(p.nodeDir(), vid)
			}
		}
		p.mu.Unlock()
	}
	return nil
}

// dropActive forgets that id is active and removes its node.
func (p *Pool) dropActive(id string) {
	p.mu.Lock()
	delete(p.active, id)
	p.mu.Unlock()
	if err := dm.RemoveNode(p.nodeDir(), id); err != nil {
		p.log.Error(err, "Cannot remove a device node", "id", id)
	}
}
