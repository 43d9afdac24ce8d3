//go:build vm

package dmthin

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
)

// TestConcurrentOperations: operations on different IDs from several goroutines at once
// (creates, snapshots of active origins, clones, resizes, deletes), then the records and the
// thin metadata agree.
func TestConcurrentOperations(t *testing.T) {
	e := newEnv(t, "conc", 64, 4096)
	// Six writers' snapshots of active origins at once, under emulation on a loaded machine:
	// a write hold can outlast the default second (TestHoldTimeout tests that bound; this
	// test is about concurrency).
	e.opts.HoldTimeout = 15 * time.Second
	p := e.open(t)
	const workers, rounds = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := context.Background()
			for r := range rounds {
				id := fmt.Sprintf("w%d-%d", w, r)
				steps := []func() error{
					func() error { _, err := p.Create(c, record(id, 64)); return err },
					func() error { _, err := p.Activate(c, id); return err },
					func() error { _, err := p.Snapshot(c, id, record(id+"-s", 64), true); return err },
					func() error { _, err := p.Snapshot(c, id+"-s", record(id+"-c", 128), false); return err },
					func() error { _, err := p.Resize(c, id, 96*mib); return err },
				}
				if r%3 == 0 {
					steps = append(steps, func() error { return p.Delete(c, id) }, func() error { return p.Delete(c, id+"-s") })
				}
				for _, s := range steps {
					if err := s(); err != nil {
						errs <- fmt.Errorf("%s: %w", id, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l, _ := p.List(ctx(t))
	t.Logf("%d workers × %d rounds (%d operations) in %s; %d volumes", workers, rounds, workers*rounds*6, timing.Since(start), len(l))
	noSuspended(t, e.opts.Name)
	e.shutdown(t, p)
}
