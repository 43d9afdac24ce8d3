package dmthin

import (
	"context"
	"errors"
	"fmt"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/crashpoint"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// maxIDAttempts bounds how many thin ids one creation tries when the pool already has the
// ids it picks (thin devices made behind the pool's back).
const maxIDAttempts = 4

// Create makes an empty thin device with rec as its record: intent, create_thin, a new
// transaction id, settle. The device is not activated (see Activate).
func (p *Pool) Create(ctx context.Context, rec pool.Record) (pool.Volume, error) {
	if err := validRecord(rec); err != nil {
		return pool.Volume{}, err
	}
	rec = rec.Clone()
	return run(ctx, p, []string{rec.ID}, func(ctx context.Context) (pool.Volume, error) {
		if v, err := p.existing(rec.ID); err != nil {
			return v, err
		}
		for attempt := 1; ; attempt++ {
			v, retry, err := p.createOnce(ctx, rec)
			if !retry || attempt == maxIDAttempts {
				return v, err
			}
		}
	})
}

// existing returns ErrExists with the volume when id is taken, and an error when an earlier
// operation on id is still pending.
func (p *Pool) existing(id string) (pool.Volume, error) {
	var v *volRec
	var it *intent
	p.st.view(func(st *state) {
		v = st.vols[id]
		it, _ = st.pendingFor(id)
	})
	switch {
	case v != nil:
		return p.volume(v), fmt.Errorf("%w: %s", pool.ErrExists, id)
	case it != nil:
		return pool.Volume{}, rpcerr.Unavailablef("dmthin: %s: an interrupted %s is pending for it (the next Open ends it)", id, it.Op)
	}
	return pool.Volume{}, nil
}

func (p *Pool) createOnce(ctx context.Context, rec pool.Record) (_ pool.Volume, retry bool, _ error) {
	if err := p.writable(); err != nil {
		return pool.Volume{}, false, err
	}
	ids, err := p.st.allocThin(1, maxRecordLen)
	if err != nil {
		return pool.Volume{}, false, fmt.Errorf("dmthin: create %s: %w", rec.ID, err)
	}
	defer p.st.release(ids)
	v := newVolRec(rec, ids[0], false)
	it, err := p.intend(ctx, intent{Op: opCreate, New: []*volRec{v}})
	if err != nil {
		return pool.Volume{}, false, err
	}
	crashpoint.Hit("create/after-intent")
	if err := p.tp.CreateThin(v.Thin); err != nil {
		// The kernel refused: nothing was made.
		retry = p.foreignID(err, v.Thin)
		if serr := p.settle(ctx, it, false); serr != nil {
			return pool.Volume{}, false, serr
		}
		return pool.Volume{}, retry, fmt.Errorf("dmthin: create %s: %w", rec.ID, p.messageErr(err))
	}
	crashpoint.Hit("create/after-message")
	if err := p.bumpTxID(); err != nil {
		p.abandon(ctx, it)
		return pool.Volume{}, false, err
	}
	crashpoint.Hit("create/after-txid")
	if err := p.settle(ctx, it, true); err != nil {
		return pool.Volume{}, false, err
	}
	crashpoint.Hit("create/after-settle")
	return p.volume(v), false, nil
}

// foreignID handles a create that found its thin id taken in the pool, though no record has
// it (a thin device made behind the pool's back): the id is never used again by this
// process, and the creation is retried with another. It reports whether err was that.
func (p *Pool) foreignID(err error, id uint32) bool {
	if !errors.Is(err, thin.ErrIDExists) {
		return false
	}
	p.log.Error(err, "The pool has a thin device no record knows; leaving it alone", "thin", id)
	p.st.quarantine(id)
	return true
}

// messageErr classifies a refused pool message.
func (p *Pool) messageErr(err error) error {
	if errors.Is(err, thin.ErrPoolReadOnly) {
		if s, serr := p.tp.Status(true); serr == nil && s.TotalMetadataBlocks > 0 && s.UsedMetadataBlocks >= s.TotalMetadataBlocks-1 {
			return fmt.Errorf("%w: out of metadata space: %w", pool.ErrNoSpace, err)
		}
	}
	return kernelErr(err)
}

// abandon ends an intent the operation cannot finish: rolled back, finished or left for the
// next Open, as recovery would.
func (p *Pool) abandon(ctx context.Context, it *intent) {
	ctx, cancel := detached(ctx)
	defer cancel()
	if err := p.resolve(ctx, it); err != nil {
		p.log.Error(err, "Cannot end an operation; the next Open will", "op", it.Op, "intent", it.Seq)
	}
}

// snapReq is one snapshot to make: rec, of origin.
type snapReq struct {
	origin *volRec
	rec    pool.Record
}

// Snapshot makes rec.ID a snapshot (readOnly) or a clone of origin with create_snap: intent,
// the origin suspended if it is active and writable, create_snap, resume, a new transaction
// id, settle.
func (p *Pool) Snapshot(ctx context.Context, origin string, rec pool.Record, readOnly bool) (pool.Volume, error) {
	if err := validRecord(rec); err != nil {
		return pool.Volume{}, err
	}
	if err := validID(origin); err != nil {
		return pool.Volume{}, err
	}
	if origin == rec.ID {
		return pool.Volume{}, fmt.Errorf("%w: %s is its own origin", pool.ErrInvalid, origin)
	}
	rec = rec.Clone()
	op := opClone
	if readOnly {
		op = opSnapshot
	}
	return run(ctx, p, []string{rec.ID, origin}, func(ctx context.Context) (pool.Volume, error) {
		if v, err := p.existing(rec.ID); err != nil {
			return v, err
		}
		o, err := p.origin(origin, rec)
		if err != nil {
			return pool.Volume{}, err
		}
		vols, err := p.snapshots(ctx, op, []snapReq{{o, rec}}, readOnly, nil)
		if err != nil {
			return pool.Volume{}, err
		}
		return vols[0], nil
	})
}

// origin returns the record of the origin of rec, checking that rec is not smaller.
func (p *Pool) origin(id string, rec pool.Record) (*volRec, error) {
	o, err := p.target(id)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	if rec.SizeBytes < o.SizeBytes {
		return nil, fmt.Errorf("%w: %s of %d bytes is smaller than its origin %s (%d bytes)",
			pool.ErrInvalid, rec.ID, rec.SizeBytes, id, o.SizeBytes)
	}
	return o, nil
}

// SnapshotGroup makes read-only snapshots of several origins at one instant: one intent, one
// write hold over every active origin (bounded by HoldTimeout), every create_snap, resume, a
// new transaction id, settle. If any step fails, every snapshot made is deleted again.
func (p *Pool) SnapshotGroup(ctx context.Context, specs []pool.SnapshotSpec) ([]pool.Volume, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: empty snapshot group", pool.ErrInvalid)
	}
	var ids []string
	news := map[string]bool{}
	for _, s := range specs {
		if err := validRecord(s.Record); err != nil {
			return nil, err
		}
		if err := validID(s.Origin); err != nil {
			return nil, err
		}
		if news[s.Record.ID] {
			return nil, fmt.Errorf("%w: %s twice in one group", pool.ErrInvalid, s.Record.ID)
		}
		news[s.Record.ID] = true
		ids = append(ids, s.Record.ID, s.Origin)
	}
	for _, s := range specs {
		if news[s.Origin] {
			return nil, fmt.Errorf("%w: %s is both a snapshot and an origin in one group", pool.ErrInvalid, s.Origin)
		}
	}
	return run(ctx, p, ids, func(ctx context.Context) ([]pool.Volume, error) {
		return p.snapshotGroup(ctx, specs, nil)
	})
}

// snapshotGroup makes the group's snapshots (under held, if not nil); its IDs are locked. If
// any of them exists, it returns those with ErrExists and makes none.
func (p *Pool) snapshotGroup(ctx context.Context, specs []pool.SnapshotSpec, held *hold) ([]pool.Volume, error) {
	var reqs []snapReq
	var exist []pool.Volume
	for _, s := range specs {
		if v, err := p.existing(s.Record.ID); err != nil {
			if !errors.Is(err, pool.ErrExists) {
				return nil, err
			}
			exist = append(exist, v)
			continue
		}
		o, err := p.origin(s.Origin, s.Record)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, snapReq{o, s.Record.Clone()})
	}
	if len(exist) > 0 {
		return exist, fmt.Errorf("%w: %d of the group's snapshots exist", pool.ErrExists, len(exist))
	}
	return p.snapshots(ctx, opGroup, reqs, true, held)
}

// snapshots makes the snapshots of reqs under one intent and one write hold (see the
// package documentation for the steps and their crash points): held, when a HoldWrites hold
// already holds the origins, else one of its own.
func (p *Pool) snapshots(ctx context.Context, op string, reqs []snapReq, readOnly bool, held *hold) ([]pool.Volume, error) {
	if err := p.writable(); err != nil {
		return nil, err
	}
	ids, err := p.st.allocThin(len(reqs), int64(len(reqs))*maxRecordLen)
	if err != nil {
		return nil, fmt.Errorf("dmthin: %s: %w", op, err)
	}
	defer p.st.release(ids)
	it := intent{Op: op}
	for i, r := range reqs {
		it.New = append(it.New, newVolRec(r.rec, ids[i], readOnly))
		it.Origins = append(it.Origins, r.origin.Thin)
	}
	pending, err := p.intend(ctx, it)
	if err != nil {
		return nil, err
	}
	crashpoint.Hit(op + "/after-intent")
	made, err := p.snapshotsHeld(ctx, op, pending, reqs, held)
	if err != nil {
		ctx, cancel := detached(ctx)
		defer cancel()
		if rerr := p.rollback(ctx, pending, made); rerr != nil {
			p.log.Error(rerr, "Cannot roll back a snapshot; the next Open will", "op", op, "intent", pending.Seq)
		}
		return nil, err
	}
	if err := p.bumpTxID(); err != nil {
		p.abandon(ctx, pending)
		return nil, err
	}
	crashpoint.Hit(op + "/after-txid")
	if err := p.settle(ctx, pending, true); err != nil {
		return nil, err
	}
	crashpoint.Hit(op + "/after-settle")
	out := make([]pool.Volume, len(pending.New))
	for i, v := range pending.New {
		out[i] = p.volume(v)
	}
	return out, nil
}

// snapshotsHeld holds the writes of the active, writable origins (or takes over held, which
// must hold them all), sends every create_snap and resumes them. It returns the thin ids it
// made; on error the caller rolls them back.
func (p *Pool) snapshotsHeld(ctx context.Context, op string, it *intent, reqs []snapReq, held *hold) (made []uint32, err error) {
	var names []string
	seen := map[string]bool{}
	p.mu.Lock()
	for _, r := range reqs {
		if a, ok := p.active[r.origin.ID]; ok && !a.readOnly && !seen[a.name] {
			seen[a.name] = true
			names = append(names, a.name)
		}
	}
	p.mu.Unlock()
	h := held
	if h != nil {
		defer h.release()
		if missing := h.missing(names); len(missing) > 0 {
			return nil, fmt.Errorf("dmthin: %s: the write hold does not hold %v", op, missing)
		}
	} else if len(names) > 0 {
		// Commit the pool's metadata now (a status with flush does), so that the commit
		// each create_snap makes inside the hold has only its own change to write, not
		// every block the origins' writes provisioned since the last one.
		if _, err := p.tp.Status(false); err != nil {
			return nil, fmt.Errorf("dmthin: %s: pool status: %w", op, err)
		}
		if h, err = p.startHold(ctx, names); err != nil {
			return nil, err
		}
		defer h.release() // resume, whatever happens below
	}
	crashpoint.Hit(op + "/after-suspend")
	if hook := p.opts.Hooks.DuringHold; hook != nil {
		hook()
	}
	for i, v := range it.New {
		if h != nil && !h.intact() {
			return made, h.expiredErr()
		}
		if err := p.tp.CreateSnap(v.Thin, it.Origins[i]); err != nil {
			p.foreignID(err, v.Thin)
			return made, fmt.Errorf("dmthin: %s %s of %s: %w", op, v.ID, reqs[i].origin.ID, p.messageErr(err))
		}
		made = append(made, v.Thin)
		if i == 0 && op == opGroup {
			crashpoint.Hit(op + "/after-first-message")
		}
	}
	if op == opGroup {
		crashpoint.Hit(op + "/after-messages")
	} else {
		crashpoint.Hit(op + "/after-message")
	}
	if h != nil && !h.release() {
		return made, h.expiredErr()
	}
	crashpoint.Hit(op + "/after-resume")
	return made, nil
}
