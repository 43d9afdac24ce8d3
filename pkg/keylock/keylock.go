// Package keylock serializes work per key (a volume ID or name) while letting different keys
// proceed in parallel.
//
// The CSI services use Do, which answers codes.Aborted at once when a key is busy (the caller
// retries); the agent uses Hold, which waits, bounded by the request's context. Both keep the
// lock held while work the call started goes on after it returned (see Outlive).
package keylock

import (
	"context"
	"sync"
)

// Locks is a set of per-key locks. The zero value is ready to use.
type Locks struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// TryLock takes the lock of key if it is free and reports whether it did.
func (l *Locks) TryLock(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = map[string]chan struct{}{}
	}
	if _, busy := l.held[key]; busy {
		return false
	}
	l.held[key] = make(chan struct{})
	return true
}

// Lock waits for the lock of key, or returns ctx.Err() if ctx ends first.
func (l *Locks) Lock(ctx context.Context, key string) error {
	for {
		l.mu.Lock()
		if l.held == nil {
			l.held = map[string]chan struct{}{}
		}
		wait, busy := l.held[key]
		if !busy {
			l.held[key] = make(chan struct{})
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Unlock releases the lock of key. Unlocking a free key panics: it is a programming error.
func (l *Locks) Unlock(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.held[key]
	if !ok {
		panic("keylock: unlock of unlocked key " + key)
	}
	delete(l.held, key)
	close(ch)
}
