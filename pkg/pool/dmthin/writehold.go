package dmthin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

var _ pool.WriteHolder = (*Pool)(nil)

// writeHold is a hold of HoldWrites: the origins' locks, taken when it starts, and the dm
// write hold of those that are active and writable. It ends exactly once: by Release, by the
// SnapshotGroup it serves, or by its timer; the locks are given back when it has ended and
// no SnapshotGroup runs under it.
type writeHold struct {
	p       *Pool
	origins []string // sorted, locked
	h       *hold    // nil when no origin is active and writable: nothing to suspend
	expires time.Time
	timer   *time.Timer

	mu   sync.Mutex // held by the SnapshotGroup that uses the hold, and by free
	used bool       // a SnapshotGroup ran, or the hold ended: it serves nothing more
	free sync.Once
}

// HoldWrites implements pool.WriteHolder: it locks the origins, commits the pool's metadata
// (so that the create_snaps made under the hold have little to write), and suspends the
// active, writable ones without flush. The hold ends after timeout whatever the caller does;
// ctx bounds only the start.
func (p *Pool) HoldWrites(ctx context.Context, origins []string, timeout time.Duration) (pool.WriteHold, error) {
	if len(origins) == 0 || timeout <= 0 {
		return nil, fmt.Errorf("%w: a write hold needs origins and a timeout", pool.ErrInvalid)
	}
	for _, id := range origins {
		if err := validID(id); err != nil {
			return nil, err
		}
	}
	ids, err := p.enter(ctx, origins)
	if err != nil {
		return nil, err
	}
	w := &writeHold{p: p, origins: ids, expires: time.Now().Add(timeout)}
	if err := w.start(ctx, timeout); err != nil {
		w.release()
		return nil, err
	}
	return w, nil
}

func (w *writeHold) start(ctx context.Context, timeout time.Duration) error {
	p := w.p
	var names []string
	for _, id := range w.origins {
		if _, err := p.target(id); err != nil {
			return err
		}
	}
	p.mu.Lock()
	for _, id := range w.origins {
		if a, ok := p.active[id]; ok && !a.readOnly {
			names = append(names, a.name)
		}
	}
	p.mu.Unlock()
	if err := p.writable(); err != nil {
		return err
	}
	// The timer gives the locks back however the hold ends; the hold's own timer resumes
	// the origins at the same bound.
	w.timer = time.AfterFunc(timeout, w.release)
	if len(names) == 0 {
		return nil
	}
	if _, err := p.tp.Status(false); err != nil {
		return fmt.Errorf("dmthin: hold writes: pool status: %w", err)
	}
	h, err := p.startHoldFor(context.WithoutCancel(ctx), names, timeout)
	if err != nil {
		return err
	}
	w.h = h
	return nil
}

// SnapshotGroup implements pool.WriteHold.
func (w *writeHold) SnapshotGroup(ctx context.Context, specs []pool.SnapshotSpec) ([]pool.Volume, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.used {
		return nil, fmt.Errorf("%w: the hold of %v ended before its snapshots", pool.ErrHoldEnded, w.origins)
	}
	w.used = true
	defer w.freeLocked()
	if w.h != nil {
		defer w.h.release()
	}
	p := w.p
	var news []string
	for _, s := range specs {
		if err := validRecord(s.Record); err != nil {
			return nil, err
		}
		if !slices.Contains(w.origins, s.Origin) {
			return nil, fmt.Errorf("%w: %s is not held by this write hold", pool.ErrInvalid, s.Origin)
		}
		if slices.Contains(news, s.Record.ID) || slices.Contains(w.origins, s.Record.ID) {
			return nil, fmt.Errorf("%w: %s twice in one group", pool.ErrInvalid, s.Record.ID)
		}
		news = append(news, s.Record.ID)
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: empty snapshot group", pool.ErrInvalid)
	}
	if w.h != nil && !w.h.intact() {
		return nil, fmt.Errorf("%w: %w", pool.ErrHoldEnded, w.h.expiredErr())
	}
	vols, err := run(ctx, p, news, func(ctx context.Context) ([]pool.Volume, error) {
		return p.snapshotGroup(ctx, specs, w.h)
	})
	if errors.Is(err, ErrHoldExpired) {
		err = fmt.Errorf("%w: %w", pool.ErrHoldEnded, err)
	}
	return vols, err
}

// HoldDuration implements pool.WriteHold.
func (w *writeHold) HoldDuration() time.Duration {
	if w.h == nil {
		return 0
	}
	return w.h.duration()
}

// Release implements pool.WriteHold.
func (w *writeHold) Release() bool {
	intact := true
	if w.h != nil {
		intact = w.h.release()
	}
	w.release()
	return intact
}

// Expires implements pool.WriteHold.
func (w *writeHold) Expires() time.Time { return w.expires }

// release ends the hold and, once no SnapshotGroup runs under it, gives the locks back.
func (w *writeHold) release() {
	if w.h != nil {
		w.h.release()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.used = true
	w.freeLocked()
}

// freeLocked gives the origins' locks back, once; w.mu is held.
func (w *writeHold) freeLocked() {
	w.free.Do(func() {
		if w.timer != nil {
			w.timer.Stop()
		}
		w.p.leave(w.origins)
	})
}
