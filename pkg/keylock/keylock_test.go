package keylock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTryLockRefusesABusyKeyAndFreesIt(t *testing.T) {
	var l Locks
	if !l.TryLock("a") {
		t.Fatal("first TryLock failed")
	}
	if l.TryLock("a") {
		t.Fatal("second TryLock of a held key succeeded")
	}
	if !l.TryLock("b") {
		t.Fatal("a different key was blocked")
	}
	l.Unlock("a")
	if !l.TryLock("a") {
		t.Fatal("TryLock after Unlock failed")
	}
}

func TestLockWaitsForTheHolder(t *testing.T) {
	var l Locks
	if err := l.Lock(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error)
	go func() { got <- l.Lock(context.Background(), "k") }()
	select {
	case err := <-got:
		t.Fatalf("Lock returned %v while the key was held", err)
	case <-time.After(20 * time.Millisecond):
	}
	l.Unlock("k")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestLockGivesUpWithTheContext(t *testing.T) {
	var l Locks
	l.TryLock("k")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Lock(ctx, "k"); err == nil {
		t.Fatal("Lock on a cancelled context succeeded while the key was held")
	}
}

func TestLockIsMutualExclusion(t *testing.T) {
	var l Locks
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Lock(context.Background(), "k"); err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			inside.Add(-1)
			l.Unlock("k")
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders at once", maxInside.Load())
	}
}
