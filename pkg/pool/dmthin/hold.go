package dmthin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// hold is the write hold of a snapshot: the active, writable origins suspended (without
// flush: bios the pool holds back are requeued for after the resume instead of waited for),
// and resumed exactly once — when the operation releases the hold, or when HoldTimeout passes
// or the operation's context ends, whichever is first. A suspend that is still running in the
// kernel when the hold ends resumes its device as soon as it returns. Whatever happens to the
// operation (an error, a panic, the caller gone), every origin is resumed.
type hold struct {
	p           *Pool
	start       time.Time
	origins     int
	suspendTook time.Duration
	names       []string      // every origin the hold was asked to suspend
	timeout     time.Duration // its bound
	took        time.Duration // from start to the end of the resumes, once ended
	timer       *time.Timer
	stop        func() bool // stops the context watch

	mu        sync.Mutex
	ended     bool
	expired   bool
	suspended []string
}

// startHold suspends names (in parallel) and returns the hold; on failure every suspended
// origin is resumed again.
func (p *Pool) startHold(ctx context.Context, names []string) (*hold, error) {
	return p.startHoldFor(ctx, names, p.opts.HoldTimeout)
}

// startHoldFor is startHold with a bound of its own.
func (p *Pool) startHoldFor(ctx context.Context, names []string, timeout time.Duration) (*hold, error) {
	h := &hold{p: p, start: time.Now(), origins: len(names), names: names, timeout: timeout}
	h.timer = time.AfterFunc(timeout, func() { h.end(true) })
	h.stop = context.AfterFunc(ctx, func() { h.end(true) })
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.suspend(name)
		}()
	}
	wg.Wait()
	h.mu.Lock()
	h.suspendTook = time.Since(h.start)
	h.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		h.release()
		return nil, err
	}
	return h, nil
}

func (h *hold) suspend(name string) error {
	err := h.p.ctl.Suspend(name, true)
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		if err == nil {
			h.p.resume(name) // the hold ended while this suspend was in the kernel
		}
		return h.expiredErr()
	}
	if err == nil {
		h.suspended = append(h.suspended, name)
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("dmthin: suspend %s: %w", name, err)
	}
	return nil
}

// end resumes every suspended origin, once. It reports whether this call ended the hold.
func (h *hold) end(expired bool) bool {
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return false
	}
	h.ended, h.expired = true, expired
	names := h.suspended
	h.suspended = nil
	h.mu.Unlock()
	h.timer.Stop()
	h.stop()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.p.resume(name)
		}()
	}
	wg.Wait()
	h.mu.Lock()
	h.took = time.Since(h.start)
	h.mu.Unlock()
	if hook := h.p.opts.Hooks.HoldEnded; hook != nil {
		h.mu.Lock()
		st := HoldStats{Origins: h.origins, Suspend: h.suspendTook, Total: h.took, Expired: expired}
		h.mu.Unlock()
		hook(st)
	}
	return true
}

// intact reports whether the hold still holds (it has neither ended nor expired).
func (h *hold) intact() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.ended
}

// release ends the hold; it reports whether the hold was intact until then, so that what was
// done under it is consistent. Safe to call more than once (later calls report false).
func (h *hold) release() bool { return h.end(false) }

// missing returns the names among names that the hold was not asked to suspend.
func (h *hold) missing(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(h.names, n) {
			out = append(out, n)
		}
	}
	return out
}

// duration is how long writes were held (0 until the hold ended).
func (h *hold) duration() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.took
}

func (h *hold) expiredErr() error {
	return fmt.Errorf("%w: the origins' writes were held for longer than %s (or the call ended)", ErrHoldExpired, h.timeout)
}

// suspendBounded suspends a device without flush, returning when it is suspended or when ctx
// ends, whichever is first. In the second case the suspend goes on in the kernel (an ioctl
// cannot be interrupted) and the device is resumed as soon as it returns.
func (p *Pool) suspendBounded(ctx context.Context, name string) error {
	var mu sync.Mutex
	abandoned := false
	done := make(chan error, 1)
	go func() {
		err := p.ctl.Suspend(name, true)
		mu.Lock()
		defer mu.Unlock()
		if abandoned && err == nil {
			p.resume(name)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("dmthin: suspend %s: %w", name, err)
		}
		return nil
	case <-ctx.Done():
		mu.Lock()
		abandoned = true
		mu.Unlock()
		select {
		case err := <-done: // it returned in the meantime, and was not resumed
			if err == nil {
				p.resume(name)
			}
		default:
		}
		return fmt.Errorf("dmthin: suspend %s: %w", name, ctx.Err())
	}
}
