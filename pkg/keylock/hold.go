package keylock

import (
	"context"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// A call returns when its context ends, but some work cannot be stopped at once: a process in
// uninterruptible sleep ignores SIGKILL until its I/O completes, and a write to
// /dev/nvme-fabrics cannot be interrupted. Such work goes on in the background, and the lock
// that guarded it must stay held until it ends, or the next call on the same key would run
// beside it (a second mkfs on a device the first one is still writing).
//
// Hold and TryHold take a lock and return a context that records this: code that leaves work
// running calls Outlive with a context derived from it, and the lock is released only when the
// holder has released it AND every such piece of work has ended.

type holdKey struct{}

// hold is one held lock and the work that outlives the call that took it.
type hold struct {
	parent *hold // the lock held by an enclosing call, if any

	mu       sync.Mutex
	pending  int  // work registered with Outlive that has not ended
	released bool // the holder called its release function
	unlock   func()
}

// add registers one more piece of pending work with h and every enclosing hold.
func (h *hold) add() {
	for ; h != nil; h = h.parent {
		h.mu.Lock()
		h.pending++
		h.mu.Unlock()
	}
}

// done ends one piece of pending work in h and every enclosing hold.
func (h *hold) done() {
	for ; h != nil; h = h.parent {
		h.settle(func() { h.pending-- })
	}
}

// release is the holder's release function.
func (h *hold) release() { h.settle(func() { h.released = true }) }

// settle applies change and unlocks once the holder has released and no work is pending.
func (h *hold) settle(change func()) {
	h.mu.Lock()
	change()
	free := h.released && h.pending == 0 && h.unlock != nil
	unlock := h.unlock
	if free {
		h.unlock = nil
	}
	h.mu.Unlock()
	if free {
		unlock()
	}
}

func (l *Locks) newHold(ctx context.Context, key string) (context.Context, func()) {
	parent, _ := ctx.Value(holdKey{}).(*hold)
	h := &hold{parent: parent, unlock: func() { l.Unlock(key) }}
	return context.WithValue(ctx, holdKey{}, h), h.release
}

// TryHold takes the lock of key if it is free. It returns a context to run the guarded work
// with and the function that releases the lock, which takes effect once all work registered
// with Outlive under that context has ended.
func (l *Locks) TryHold(ctx context.Context, key string) (context.Context, func(), bool) {
	if !l.TryLock(key) {
		return ctx, nil, false
	}
	ctx, release := l.newHold(ctx, key)
	return ctx, release, true
}

// Hold is TryHold that waits for the lock, bounded by ctx.
func (l *Locks) Hold(ctx context.Context, key string) (context.Context, func(), error) {
	if err := l.Lock(ctx, key); err != nil {
		return ctx, nil, err
	}
	ctx, release := l.newHold(ctx, key)
	return ctx, release, nil
}

// Outlive registers work that goes on after the call running under ctx returns: every lock
// held for ctx (by Hold or TryHold, including those of enclosing calls) stays held until the
// returned function is called. Call it exactly once, when the work has really ended. Without a
// held lock in ctx, Outlive does nothing.
func Outlive(ctx context.Context) (ended func()) {
	h, _ := ctx.Value(holdKey{}).(*hold)
	if h == nil {
		return func() {}
	}
	h.add()
	var once sync.Once
	return func() { once.Do(h.done) }
}

// Do runs fn holding the try-lock of key, with a context for Outlive. When key is busy it
// returns an rpcerr.ErrAborted error at once, without calling fn: the CSI services answer
// codes.Aborted and the caller retries with back-off. An empty key takes no lock (the logic
// rejects the missing field itself).
func Do[T any](ctx context.Context, l *Locks, key string, fn func(context.Context) (T, error)) (T, error) {
	if key != "" {
		var release func()
		var ok bool
		ctx, release, ok = l.TryHold(ctx, key)
		if !ok {
			var zero T
			return zero, rpcerr.Abortedf("an operation on %s is already in progress", key)
		}
		defer release()
	}
	return fn(ctx)
}
