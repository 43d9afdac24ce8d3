package dmthin

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/crashpoint"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// Delete removes a thin device and its record: its dm device removed if active (open:
// pool.ErrInUse, and nothing changes), intent, delete, a new transaction id, settle.
func (p *Pool) Delete(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	_, err := run(ctx, p, []string{id}, func(ctx context.Context) (struct{}, error) {
		var v *volRec
		var pending *intent
		p.st.view(func(st *state) {
			v = st.vols[id]
			pending, _ = st.pendingFor(id)
		})
		if v == nil {
			return struct{}{}, fmt.Errorf("%w: %s", pool.ErrNotFound, id)
		}
		if pending != nil {
			if pending.Op != opDelete {
				return struct{}{}, fmt.Errorf("dmthin: delete %s: an interrupted %s is pending for it", id, pending.Op)
			}
			return struct{}{}, p.finishDelete(ctx, pending) // a delete recovery could not finish
		}
		return struct{}{}, p.delete(ctx, v)
	})
	return err
}

func (p *Pool) delete(ctx context.Context, v *volRec) error {
	p.mu.Lock()
	a, active := p.active[v.ID]
	p.mu.Unlock()
	if active {
		if err := p.ctl.Remove(a.name); err != nil && !errors.Is(err, dm.ErrNotFound) {
			return fmt.Errorf("dmthin: delete %s: deactivate %s: %w", v.ID, a.name, kernelErr(err))
		}
		p.dropActive(v.ID)
	}
	crashpoint.Hit("delete/after-deactivate")
	it, err := p.intend(ctx, intent{Op: opDelete, ID: v.ID, Thin: v.Thin})
	if err != nil {
		return err
	}
	crashpoint.Hit("delete/after-intent")
	err = p.tp.Delete(v.Thin)
	if errors.Is(err, dm.ErrBusy) {
		// Another dm device maps the thin id (made behind the pool's back): remove it.
		if err = p.removeThinDevices(v.Thin); err == nil {
			err = p.tp.Delete(v.Thin)
		}
	}
	gone := err == nil || errors.Is(err, thin.ErrIDNotFound)
	if !gone {
		// The kernel refused: the thin device is still there, and so stays the record.
		if serr := p.settle(ctx, it, false); serr != nil {
			return serr
		}
		return fmt.Errorf("dmthin: delete %s (thin id %d): %w", v.ID, v.Thin, p.messageErr(err))
	}
	crashpoint.Hit("delete/after-message")
	if err == nil {
		if err := p.bumpTxID(); err != nil {
			// The device is gone whatever the transaction id says: settle it as done.
			p.log.Error(err, "Cannot move the transaction id on after a delete", "id", v.ID)
		}
	}
	crashpoint.Hit("delete/after-txid")
	if err := p.settle(ctx, it, true); err != nil {
		return err
	}
	crashpoint.Hit("delete/after-settle")
	return nil
}

// Resize grows a thin device: intent, the new table loaded and swapped in if the device is
// active, settle. A size that is not larger changes nothing.
func (p *Pool) Resize(ctx context.Context, id string, sizeBytes int64) (pool.Volume, error) {
	if err := validID(id); err != nil {
		return pool.Volume{}, err
	}
	if err := validSize(sizeBytes); err != nil {
		return pool.Volume{}, err
	}
	return run(ctx, p, []string{id}, func(ctx context.Context) (pool.Volume, error) {
		v, err := p.target(id)
		if err != nil {
			return pool.Volume{}, err
		}
		if sizeBytes <= v.SizeBytes {
			return p.volume(v), nil
		}
		it, err := p.intend(ctx, intent{Op: opExpand, ID: id, Thin: v.Thin, SizeBytes: sizeBytes, OldSizeBytes: v.SizeBytes})
		if err != nil {
			return pool.Volume{}, err
		}
		crashpoint.Hit("expand/after-intent")
		p.mu.Lock()
		a, active := p.active[id]
		p.mu.Unlock()
		if active {
			if err := p.reload(ctx, id, a, v.Thin, uint64(sizeBytes)/sector, "expand"); err != nil {
				if serr := p.settle(ctx, it, false); serr != nil {
					p.log.Error(serr, "Cannot settle a failed expansion", "id", id)
				}
				return pool.Volume{}, err
			}
		} else {
			crashpoint.Hit("expand/after-load")
			crashpoint.Hit("expand/after-resume")
		}
		if err := p.settle(ctx, it, true); err != nil {
			return pool.Volume{}, err
		}
		crashpoint.Hit("expand/after-settle")
		v, _ = p.lookup(id)
		return p.volume(v), nil
	})
}

// reload gives an active thin device a new size: the table loaded, the device suspended
// (without flush, bounded by ctx) and resumed, which swaps the table in. If it fails, the
// device is left running with its old table. op names the crash points ("" for none).
func (p *Pool) reload(ctx context.Context, id string, a activeDev, thinID uint32, sectors uint64, op string) error {
	t, err := thinTarget(p.poolDev, thinID, sectors)
	if err != nil {
		return fmt.Errorf("%w: %w", pool.ErrInvalid, err)
	}
	if err := p.ctl.Load(a.name, []dm.Target{t}, a.readOnly); err != nil {
		return fmt.Errorf("dmthin: resize %s: load: %w", id, kernelErr(err))
	}
	if op != "" {
		crashpoint.Hit(op + "/after-load")
	}
	if err := p.suspendBounded(ctx, a.name); err != nil {
		if cerr := p.ctl.ClearInactive(a.name); cerr != nil {
			p.log.Error(cerr, "Cannot drop a loaded table", "device", a.name)
		}
		return fmt.Errorf("dmthin: resize %s: %w", id, err)
	}
	info, err := p.ctl.Resume(a.name)
	if err != nil {
		p.resume(a.name) // a failed swap leaves the device suspended with its old table
		return fmt.Errorf("dmthin: resize %s: resume: %w", id, kernelErr(err))
	}
	if op != "" {
		crashpoint.Hit(op + "/after-resume")
	}
	a.sectors, a.dev = sectors, info.Dev
	p.mu.Lock()
	if _, ok := p.active[id]; ok {
		p.active[id] = a
	}
	p.mu.Unlock()
	return nil
}

// thinTarget is the table of thin device id of the pool device poolDev, of sectors.
func thinTarget(poolDev uint64, id uint32, sectors uint64) (dm.Target, error) {
	return thin.ThinTable{PoolDev: dm.FormatDev(poolDev), ID: id}.Target(sectors)
}

// SetHosts replaces the record's hosts and transports: one journal entry.
func (p *Pool) SetHosts(ctx context.Context, id string, hosts []pool.Host, transports []string) (pool.Volume, error) {
	if err := validID(id); err != nil {
		return pool.Volume{}, err
	}
	return run(ctx, p, []string{id}, func(ctx context.Context) (pool.Volume, error) {
		v, err := p.target(id)
		if err != nil {
			return pool.Volume{}, err
		}
		nv := v.with(func(v *volRec) {
			v.Hosts = diskHosts(hosts)
			v.Transports = slices.Clone(transports)
		})
		if err := validRecord(nv.record()); err != nil {
			return pool.Volume{}, err
		}
		if _, err := p.st.append(ctx, func(uint64) *change { return &change{Put: nv} }); err != nil {
			return pool.Volume{}, fmt.Errorf("dmthin: set hosts of %s: %w", id, err)
		}
		return p.volume(nv), nil
	})
}

// Activate makes the thin device a live dm device, <Name>-<ID>, with its node at
// NodeDir/<Name>/<ID> (snapshots read-only). An active device keeps its dm device; its node
// is made again if missing. The device's UUID names the pool and the thin id, so the kernel
// itself refuses a second dm device of the same thin id.
func (p *Pool) Activate(ctx context.Context, id string) (pool.Volume, error) {
	if err := validID(id); err != nil {
		return pool.Volume{}, err
	}
	return run(ctx, p, []string{id}, func(context.Context) (pool.Volume, error) {
		v, err := p.target(id)
		if err != nil {
			return pool.Volume{}, err
		}
		p.mu.Lock()
		a, active := p.active[id]
		p.mu.Unlock()
		if !active {
			t, err := thinTarget(p.poolDev, v.Thin, v.sectors())
			if err != nil {
				return pool.Volume{}, fmt.Errorf("%w: %w", pool.ErrInvalid, err)
			}
			info, err := p.ctl.CreateAndLoad(p.thinName(id), p.thinUUID(v.Thin), []dm.Target{t}, v.ReadOnly)
			if err != nil {
				if errors.Is(err, dm.ErrExists) {
					return pool.Volume{}, fmt.Errorf("dmthin: activate %s: a device named %s or mapping thin id %d exists: %w",
						id, p.thinName(id), v.Thin, err)
				}
				return pool.Volume{}, fmt.Errorf("dmthin: activate %s (thin id %d): %w", id, v.Thin, kernelErr(err))
			}
			a = activeDev{name: p.thinName(id), dev: info.Dev, sectors: v.sectors(), readOnly: v.ReadOnly}
			p.mu.Lock()
			p.active[id] = a
			p.mu.Unlock()
		}
		if _, err := dm.EnsureNode(p.nodeDir(), id, a.dev); err != nil {
			return pool.Volume{}, fmt.Errorf("dmthin: activate %s: %w", id, err)
		}
		return p.volume(v), nil
	})
}
