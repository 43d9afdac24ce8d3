package dmthin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// ours lists the pool's active dm devices, by UUID (the pool's devices are known by their
// UUIDs, whatever their names), and checks that no other device took one of the names the
// pool needs.
func (p *Pool) ours() (map[string]dm.Device, error) {
	devs, err := p.ctl.List("")
	if err != nil {
		return nil, fmt.Errorf("dmthin: %w", err)
	}
	out := map[string]dm.Device{}
	for _, d := range devs {
		if strings.HasPrefix(d.UUID, p.uuidPrefix()) {
			out[d.UUID] = d
			continue
		}
		switch d.Name {
		case p.poolName(), p.metaName(), p.dataName():
			return nil, fmt.Errorf("%w: device-mapper device %s (uuid %q) is not this pool's: is another pool named %s?",
				ErrForeignDevice, d.Name, d.UUID, p.opts.Name)
		}
	}
	return out, nil
}

// buildStack makes the pool's dm devices, or checks and re-attaches to the ones active:
// <Name>-pool_tmeta and <Name>-pool_tdata (linear sub-devices of the metadata and data
// devices), then <Name>-pool (the thin-pool over them). It then checks the pool's
// transaction id against the records.
func (p *Pool) buildStack(ctx context.Context) error {
	ours, err := p.ours()
	if err != nil {
		return err
	}
	meta, err := p.ensureLinear(ours, p.metaName(), "tmeta", p.meta, p.hdr.ThinOff, p.hdr.thinSectors(p.meta.size))
	if err != nil {
		return err
	}
	data, err := p.ensureLinear(ours, p.dataName(), "tdata", p.data, p.hdr.DataOff, p.hdr.dataSectors(p.data.size))
	if err != nil {
		return err
	}
	want := poolTable(meta.Dev, data.Dev, p.hdr.BlockSectors, p.opts.ErrorIfNoSpace)
	name := p.poolName()
	if d, ok := ours[p.uuidPrefix()+"pool"]; ok {
		name = d.Name
		table, err := p.ctl.Table(name)
		if err != nil {
			return fmt.Errorf("dmthin: %w", err)
		}
		if len(table) != 1 || table[0].Type != thin.PoolTargetType {
			return fmt.Errorf("%w: active pool device %s has table %+v", ErrForeignDevice, name, table)
		}
		got, err := thin.ParsePoolTable(table[0].Params)
		if err != nil {
			return fmt.Errorf("dmthin: %w", err)
		}
		if got.MetadataDev != want.MetadataDev || got.DataDev != want.DataDev || got.BlockSectors != want.BlockSectors || got.SkipBlockZeroing {
			return fmt.Errorf("%w: active pool device %s maps %q, want %q", ErrForeignDevice, name, table[0].Params, mustTarget(want, 1).Params)
		}
		if got.PoolFeatures != want.PoolFeatures {
			p.log.Info("The active pool keeps its features until it is rebuilt", "device", name, "active", got.PoolFeatures, "wanted", want.PoolFeatures)
		}
		info, err := p.ensureResumed(name)
		if err != nil {
			return err
		}
		p.poolDev = info.Dev
	} else {
		t, err := want.Target(p.hdr.dataSectors(p.data.size))
		if err != nil {
			return fmt.Errorf("dmthin: %w", err)
		}
		info, err := p.ctl.CreateAndLoad(name, p.uuidPrefix()+"pool", []dm.Target{t}, false)
		if err != nil {
			return fmt.Errorf("dmthin: build the pool device %s: %w", name, err)
		}
		p.poolDev = info.Dev
	}
	p.tp = thin.Pool{Control: p.ctl, Name: name}
	return p.checkTxID(ctx)
}

// poolTable is the pool's thin-pool table over its two sub-devices. Block zeroing stays on:
// a block is zeroed before its first use, so no volume reads another's old data.
func poolTable(meta, data uint64, blockSectors uint32, errorIfNoSpace bool) thin.PoolTable {
	return thin.PoolTable{MetadataDev: dm.FormatDev(meta), DataDev: dm.FormatDev(data), BlockSectors: uint64(blockSectors),
		PoolFeatures: thin.PoolFeatures{ErrorIfNoSpace: errorIfNoSpace}}
}

func mustTarget(t thin.PoolTable, sectors uint64) dm.Target {
	tg, _ := t.Target(max(sectors, t.BlockSectors))
	return tg
}

// ensureLinear makes (or checks the active) linear device over d from off of sectors.
func (p *Pool) ensureLinear(ours map[string]dm.Device, name, role string, d *device, off int64, sectors uint64) (dm.DeviceInfo, error) {
	params := dm.FormatDev(d.dev) + " " + strconv.FormatInt(off/sector, 10)
	if a, ok := ours[p.uuidPrefix()+role]; ok {
		table, err := p.ctl.Table(a.Name)
		if err != nil {
			return dm.DeviceInfo{}, fmt.Errorf("dmthin: %w", err)
		}
		if len(table) != 1 || table[0].Type != "linear" || table[0].Params != params {
			return dm.DeviceInfo{}, fmt.Errorf("%w: active device %s maps %+v, not %s from sector %d (%s): is the pool active over other devices?",
				ErrForeignDevice, a.Name, table, d.path, off/sector, params)
		}
		if table[0].Length != sectors {
			p.log.Info("An active sub-device keeps its length until the pool is rebuilt", "device", a.Name,
				"sectors", table[0].Length, "deviceAllows", sectors)
		}
		return p.ensureResumed(a.Name)
	}
	t := dm.Target{Start: 0, Length: sectors, Type: "linear", Params: params}
	info, err := p.ctl.CreateAndLoad(name, p.uuidPrefix()+role, []dm.Target{t}, false)
	if err != nil {
		return dm.DeviceInfo{}, fmt.Errorf("dmthin: build %s: %w", name, err)
	}
	return info, nil
}

// ensureResumed resumes a device a dead process left suspended, dropping any table it had
// loaded and not swapped in.
func (p *Pool) ensureResumed(name string) (dm.DeviceInfo, error) {
	info, err := p.ctl.Info(name)
	if err != nil {
		return info, fmt.Errorf("dmthin: %w", err)
	}
	if info.InactiveTable {
		if err := p.ctl.ClearInactive(name); err != nil {
			return info, fmt.Errorf("dmthin: %w", err)
		}
	}
	if info.Suspended {
		p.log.Info("Resuming a device left suspended", "device", name)
		if info, err = p.ctl.Resume(name); err != nil {
			return info, fmt.Errorf("dmthin: %w", err)
		}
	}
	return info, nil
}

// checkTxID compares the pool's transaction id with the records': thin metadata older than
// the records (restored from an old copy, or not this pool's) is refused.
func (p *Pool) checkTxID(context.Context) error {
	s, err := p.tp.Status(true)
	if err != nil {
		return fmt.Errorf("dmthin: pool status: %w", err)
	}
	switch {
	case s.Mode == thin.PoolFail || s.Mode == thin.PoolError:
		return fmt.Errorf("dmthin: the pool on %s has failed (status %q): check its metadata with thin_check", p.meta.path, s.Mode)
	case s.NeedsCheck:
		p.log.Error(nil, "The pool's metadata needs a check (thin_check); the pool is read-only until then", "device", p.tp.Name)
	}
	var recorded uint64
	p.st.view(func(st *state) { recorded = st.txid })
	if s.TransactionID < recorded {
		return fmt.Errorf("%w: the thin metadata of pool %s on %s is at transaction %d, but its records say %d was committed: "+
			"the thin metadata was rolled back or replaced; refusing to start (see the package documentation)",
			ErrStale, p.hdr.UUID, p.meta.path, s.TransactionID, recorded)
	}
	p.txid = s.TransactionID
	return nil
}

// adoptThins takes over the thin devices a previous process left active: devices whose thin
// id has a record are kept (resumed if suspended, their node made); devices that were being
// activated (no live table), or whose thin id has no record, are removed.
func (p *Pool) adoptThins(ctx context.Context) error {
	ours, err := p.ours()
	if err != nil {
		return err
	}
	var errs []error
	for uuid, d := range ours {
		id, ok := p.thinIDOfUUID(uuid)
		if !ok {
			continue
		}
		if err := p.adoptThin(ctx, d, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Pool) adoptThin(_ context.Context, d dm.Device, thinID uint32) error {
	var rec *volRec
	p.st.view(func(st *state) {
		if id, ok := st.thins[thinID]; ok {
			rec = st.vols[id]
		}
	})
	info, err := p.ensureResumed(d.Name)
	if err != nil {
		return err
	}
	table, err := p.ctl.Table(d.Name)
	if err != nil {
		return fmt.Errorf("dmthin: %w", err)
	}
	good := false
	if len(table) == 1 && table[0].Type == thin.ThinTargetType && info.LiveTable {
		if t, err := thin.ParseThinTable(table[0].Params); err == nil && t.PoolDev == dm.FormatDev(p.poolDev) && t.ID == thinID {
			good = true
		}
	}
	if rec == nil || !good {
		// No record (a create that will be rolled back, or a half-made activation) or a
		// table that is not what the pool makes: remove it.
		p.log.Info("Removing a device of the pool with no record", "device", d.Name, "thin", thinID, "table", table)
		if err := p.ctl.Remove(d.Name); err != nil {
			return fmt.Errorf("dmthin: remove %s (thin id %d, no record): %w", d.Name, thinID, kernelErr(err))
		}
		return nil
	}
	a := activeDev{name: d.Name, dev: info.Dev, sectors: table[0].Length, readOnly: info.ReadOnly}
	if _, err := dm.EnsureNode(p.nodeDir(), rec.ID, info.Dev); err != nil {
		return fmt.Errorf("dmthin: %w", err)
	}
	p.mu.Lock()
	p.active[rec.ID] = a
	p.mu.Unlock()
	return nil
}

// cleanNodes removes the nodes in the pool's node directory of devices that are not active.
func (p *Pool) cleanNodes() {
	entries, err := os.ReadDir(p.nodeDir())
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range entries {
		if _, ok := p.active[e.Name()]; !ok && validID(e.Name()) == nil {
			if err := dm.RemoveNode(p.nodeDir(), e.Name()); err != nil {
				p.log.Error(err, "Cannot remove a stale device node", "node", e.Name())
			}
		}
	}
}

// Shutdown deactivates the pool: every thin device, the pool and its sub-devices are
// removed, with their nodes, and the Pool is closed. Nothing is lost: Open builds it all
// again (as after a reboot). A thin device that is open (exported, mounted) stops it:
// pool.ErrInUse, and the Pool stays open. For moving the disks to another server, and tests.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	p.closed = true
	p.mu.Unlock()
	reopen := func(err error) error {
		p.mu.Lock()
		p.closed = false
		p.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go func() {
		p.ops.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return reopen(fmt.Errorf("dmthin: shutdown: operations still running: %w", ctx.Err()))
	}
	ours, err := p.ours()
	if err != nil {
		return reopen(err)
	}
	var busy []string
	for uuid, d := range ours {
		if _, ok := p.thinIDOfUUID(uuid); !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return reopen(err)
		}
		if err := p.deactivate(d.Name); err != nil {
			if errors.Is(err, pool.ErrInUse) {
				busy = append(busy, d.Name)
				continue
			}
			return reopen(err)
		}
	}
	if len(busy) > 0 {
		return reopen(fmt.Errorf("%w: %s", pool.ErrInUse, strings.Join(busy, ", ")))
	}
	p.mu.Lock()
	for id := range p.active {
		delete(p.active, id)
		_ = dm.RemoveNode(p.nodeDir(), id)
	}
	p.mu.Unlock()
	_ = os.Remove(p.nodeDir())
	for _, role := range []string{"pool", "tmeta", "tdata"} {
		if d, ok := ours[p.uuidPrefix()+role]; ok {
			if err := p.deactivate(d.Name); err != nil {
				return reopen(err)
			}
		}
	}
	return p.closeFiles()
}

// deactivate removes a dm device (resuming it first if it is suspended, so that whoever
// holds it open can let go).
func (p *Pool) deactivate(name string) error {
	info, err := p.ctl.Info(name)
	if errors.Is(err, dm.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dmthin: %w", err)
	}
	if info.Suspended {
		p.resume(name)
	}
	if err := p.ctl.Remove(name); err != nil && !errors.Is(err, dm.ErrNotFound) {
		return fmt.Errorf("dmthin: remove %s: %w", name, kernelErr(err))
	}
	return nil
}
