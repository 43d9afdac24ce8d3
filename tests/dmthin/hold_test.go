//go:build vm

package dmthin

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

// holds records the write holds a pool reports.
type holds struct {
	mu sync.Mutex
	s  []dmthin.HoldStats
}

func (h *holds) hook(s dmthin.HoldStats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s = append(h.s, s)
}

func (h *holds) last() dmthin.HoldStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.s) == 0 {
		return dmthin.HoldStats{}
	}
	return h.s[len(h.s)-1]
}

// TestSnapshotGroupUnderWrites: four active origins written by fio; group snapshots of all
// four, each in one write hold, which is measured; data written before the snapshots reads
// back from each of them.
func TestSnapshotGroupUnderWrites(t *testing.T) {
	e := newEnv(t, "group", 64, 4096)
	var h holds
	e.opts.Hooks.HoldEnded = h.hook
	p := e.open(t)
	var paths []string
	before := blocktest.Pattern(7, mib)
	for i := range 4 {
		id := fmt.Sprintf("vol-%d", i)
		mustCreate(t, p, id, 256)
		path := mustActivate(t, p, id)
		blocktest.Write(t, path, 0, before)
		paths = append(paths, path)
	}
	fctx, stop := context.WithCancel(context.Background())
	defer stop()
	args := []string{"--thread", "--ioengine=psync", "--direct=1", "--rw=randwrite", "--bs=64k",
		"--offset=8M", "--size=200M", "--time_based", "--runtime=600", "--numjobs=1", "--group_reporting"}
	for i, path := range paths {
		args = append(args, fmt.Sprintf("--name=w%d", i), "--filename="+path)
	}
	fio := exec.CommandContext(fctx, "fio", args...)
	if err := fio.Start(); err != nil {
		t.Fatal(err)
	}
	defer fio.Wait()
	time.Sleep(2 * time.Second) // writes in flight

	var durations timing.Samples
	for g := range 5 {
		var specs []pool.SnapshotSpec
		for i := range 4 {
			specs = append(specs, pool.SnapshotSpec{Origin: fmt.Sprintf("vol-%d", i), Record: record(fmt.Sprintf("snap-%d-%d", g, i), 256)})
		}
		start := time.Now()
		vols, err := p.SnapshotGroup(ctx(t), specs)
		call := timing.Since(start)
		if err != nil {
			t.Fatalf("group %d: %v", g, err)
		}
		if len(vols) != 4 {
			t.Fatalf("group %d made %d snapshots", g, len(vols))
		}
		st := h.last()
		durations = append(durations, st.Total)
		t.Logf("group snapshot %d of %d active origins under fio: write hold %s (suspend %s, 4 create_snap and resume %s), call %s",
			g, st.Origins, st.Total.Round(10*time.Microsecond), st.Suspend.Round(10*time.Microsecond),
			(st.Total - st.Suspend).Round(10*time.Microsecond), call)
		if st.Expired || st.Origins != 4 {
			t.Errorf("group %d: hold %+v", g, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	stop()
	fio.Wait()
	t.Logf("group write hold p50 %s (HoldTimeout %s)", timing.Round(durations.P50()), dmthin.DefaultHoldTimeout)
	noSuspended(t, e.opts.Name)
	for g := range 5 {
		for i := range 4 {
			path := mustActivate(t, p, fmt.Sprintf("snap-%d-%d", g, i))
			blocktest.Expect(t, path, 0, before, "group snapshot")
		}
	}
	e.shutdown(t, p)
}

// TestHoldTimeout: a step inside the write hold that takes longer than HoldTimeout (a test
// hook sleeping): the origins are resumed at the deadline, the group fails and leaves no
// snapshot; the same when the call's context ends during the hold.
func TestHoldTimeout(t *testing.T) {
	e := newEnv(t, "holdto", 32, 1024)
	var h holds
	var slow time.Duration
	e.opts.HoldTimeout = 300 * time.Millisecond
	e.opts.Hooks.HoldEnded = h.hook
	e.opts.Hooks.DuringHold = func() { time.Sleep(slow) }
	p := e.open(t)
	for i := range 2 {
		mustCreate(t, p, fmt.Sprintf("vol-%d", i), 64)
		mustActivate(t, p, fmt.Sprintf("vol-%d", i))
	}
	ids := p.ThinIDs()
	specs := []pool.SnapshotSpec{{Origin: "vol-0", Record: record("snap-0", 64)}, {Origin: "vol-1", Record: record("snap-1", 64)}}

	slow = 3 * e.opts.HoldTimeout
	start := time.Now()
	_, err := p.SnapshotGroup(ctx(t), specs)
	st := h.last()
	hold, expired := st.Total, st.Expired
	t.Logf("a step of %s inside a hold bounded by %s → %v after %s; the hold lasted %s (expired %v)",
		slow, e.opts.HoldTimeout, err, timing.Since(start), hold.Round(time.Millisecond), expired)
	if !errors.Is(err, dmthin.ErrHoldExpired) {
		t.Errorf("SnapshotGroup with a slow step: %v, want ErrHoldExpired", err)
	}
	if !expired || hold > e.opts.HoldTimeout+200*time.Millisecond {
		t.Errorf("hold of %s (expired %v) with HoldTimeout %s", hold, expired, e.opts.HoldTimeout)
	}
	noSuspended(t, e.opts.Name)
	for _, s := range specs {
		if _, err := p.Get(ctx(t), s.Record.ID); !errors.Is(err, pool.ErrNotFound) {
			t.Errorf("%s after the expired hold: %v", s.Record.ID, err)
		}
	}
	blocktest.Write(t, e.opts.NodeDir+"/"+e.opts.Name+"/vol-0", 0, blocktest.Pattern(1, 4096)) // the origins take writes

	// The context ends during the hold.
	slow = 200 * time.Millisecond
	e2ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = p.SnapshotGroup(e2ctx, specs)
	t.Logf("context ending during the hold → %v", err)
	if err == nil {
		t.Error("SnapshotGroup succeeded though its context ended during the hold")
	}
	time.Sleep(time.Second) // the operation ends in the background
	noSuspended(t, e.opts.Name)
	for _, s := range specs {
		if _, err := p.Get(ctx(t), s.Record.ID); !errors.Is(err, pool.ErrNotFound) {
			t.Errorf("%s after the context ended: %v", s.Record.ID, err)
		}
	}
	if got := p.ThinIDs(); len(got) != len(ids) {
		t.Errorf("thin ids %v, before %v", got, ids)
	}

	// Without the slow step the same group works.
	slow = 0
	if _, err := p.SnapshotGroup(ctx(t), specs); err != nil {
		t.Fatal(err)
	}
	e.shutdown(t, p)
}
