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

func TestHoldKeepsTheLockUntilOutlivingWorkEnds(t *testing.T) {
	var l Locks
	ctx, release, ok := l.TryHold(context.Background(), "vol")
	if !ok {
		t.Fatal("TryHold of a free key failed")
	}
	ended := Outlive(ctx)
	release()
	if l.TryLock("vol") {
		t.Fatal("the lock was free while work registered with Outlive was still running")
	}
	ended()
	ended() // a second call is harmless
	if !l.TryLock("vol") {
		t.Fatal("the lock stayed held after the holder released it and the work ended")
	}
}

func TestHoldReleasesAtOnceWithoutOutlivingWork(t *testing.T) {
	var l Locks
	_, release, err := l.Hold(context.Background(), "vol")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if !l.TryLock("vol") {
		t.Fatal("the lock stayed held after release with no pending work")
	}
}

func TestOutliveHoldsEveryEnclosingLock(t *testing.T) {
	var volumes, subsystems Locks
	ctx, releaseVol, _ := volumes.TryHold(context.Background(), "vol")
	ctx, releaseSub, err := subsystems.Hold(ctx, "nqn")
	if err != nil {
		t.Fatal(err)
	}
	ended := Outlive(ctx)
	releaseSub()
	releaseVol()
	if volumes.TryLock("vol") || subsystems.TryLock("nqn") {
		t.Fatal("an enclosing lock was free while the work was still running")
	}
	ended()
	if !volumes.TryLock("vol") || !subsystems.TryLock("nqn") {
		t.Fatal("the locks stayed held after the work ended")
	}
}

func TestWorkEndingBeforeReleaseDoesNotFreeTheLockEarly(t *testing.T) {
	var l Locks
	ctx, release, _ := l.TryHold(context.Background(), "vol")
	Outlive(ctx)()
	if l.TryLock("vol") {
		t.Fatal("the lock was freed by the end of the work, before the holder released it")
	}
	release()
	if !l.TryLock("vol") {
		t.Fatal("the lock stayed held")
	}
}

func TestOutliveWithoutAHeldLockIsANoOp(t *testing.T) {
	Outlive(context.Background())()
}
