//go:build vm && bench

package dmthin

// The dm-thin pool's own figures, measured in-process under the VM's emulation: make bench
// runs them beside tests/bench (goals are reported, never asserted).

import (
	"fmt"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// TestLatency measures the p50 of each operation in-process, under the VM's emulation.
func TestLatency(t *testing.T) {
	e := newEnv(t, "lat", 64, 4096)
	p := e.open(t)
	const n = 30
	mustCreate(t, p, "origin", 256)
	origin := mustActivate(t, p, "origin")
	blocktest.Write(t, origin, 0, blocktest.Pattern(1, 4*mib))
	measure(t, "Create", n, func(i int) error { _, err := p.Create(ctx(t), record(fmt.Sprintf("vol-%d", i), 256)); return err })
	measure(t, "Snapshot of an active origin", n, func(i int) error {
		_, err := p.Snapshot(ctx(t), "origin", record(fmt.Sprintf("snap-%d", i), 256), true)
		return err
	})
	measure(t, "Clone of a snapshot", n, func(i int) error {
		_, err := p.Snapshot(ctx(t), fmt.Sprintf("snap-%d", i), record(fmt.Sprintf("clone-%d", i), 512), false)
		return err
	})
	measure(t, "Activate", n, func(i int) error { _, err := p.Activate(ctx(t), fmt.Sprintf("vol-%d", i)); return err })
	measure(t, "Activate (already active)", n, func(i int) error { _, err := p.Activate(ctx(t), fmt.Sprintf("vol-%d", i)); return err })
	measure(t, "Resize of an active volume", n, func(i int) error {
		_, err := p.Resize(ctx(t), fmt.Sprintf("vol-%d", i), 512*mib)
		return err
	})
	measure(t, "Resize of an inactive clone", n, func(i int) error {
		_, err := p.Resize(ctx(t), fmt.Sprintf("clone-%d", i), gib)
		return err
	})
	hosts := []pool.Host{{NQN: "nqn.2014-08.org.nvmexpress:uuid:1", NodeID: "node-1"}}
	measure(t, "SetHosts", n, func(i int) error {
		_, err := p.SetHosts(ctx(t), fmt.Sprintf("vol-%d", i), hosts, []string{"tcp"})
		return err
	})
	measure(t, "Get", n, func(i int) error { _, err := p.Get(ctx(t), fmt.Sprintf("vol-%d", i)); return err })
	measure(t, "Usage", n, func(int) error { _, err := p.Usage(ctx(t)); return err })
	measure(t, "Delete of an active volume", n, func(i int) error { return p.Delete(ctx(t), fmt.Sprintf("vol-%d", i)) })
	measure(t, "Delete of an inactive snapshot", n, func(i int) error { return p.Delete(ctx(t), fmt.Sprintf("snap-%d", i)) })
	e.shutdown(t, p)
}

// TestThousandVolumes: the cost of Create does not grow with the number of volumes (p50 with
// 10 and with 1,000 in the pool), and Open with 1,000 volumes (re-attach, and after a
// reboot).
func TestThousandVolumes(t *testing.T) {
	e := newEnv(t, "scale", 64, 4096)
	p := e.open(t)
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tp := thin.Pool{Control: c, Name: e.opts.Name + "-pool"}
	const total, sample = 1000, 60
	create := func(i int) error { _, err := p.Create(ctx(t), record(fmt.Sprintf("vol-%04d", i), 1024)); return err }
	hosts := []pool.Host{{NQN: "nqn.2014-08.org.nvmexpress:uuid:1", NodeID: "node-1"}}

	// costs measures, with n volumes in the pool: Create; SetHosts (one journal write, the
	// record store alone); and the kernel's part of a create alone (create_thin and
	// set_transaction_id sent to the pool device directly, then undone).
	type costs struct{ create, setHosts, kernel time.Duration }
	measureAt := func(n int) (c costs) {
		var dc, dh, dk timing.Samples
		for i := range sample {
			id := n + i
			dc.Time(t, func() error { return create(id) })
			dh.Time(t, func() error {
				_, err := p.SetHosts(ctx(t), fmt.Sprintf("vol-%04d", id), hosts, nil)
				return err
			})
		}
		st, _ := tp.Status(true)
		orig := st.TransactionID
		for i := range sample {
			thinID := uint32(16_000_000 + i)
			dk.Time(t, func() error {
				if err := tp.CreateThin(thinID); err != nil {
					return err
				}
				if err := tp.SetTransactionID(st.TransactionID, st.TransactionID+1); err != nil {
					return err
				}
				st.TransactionID++
				return nil
			})
			if err := tp.Delete(thinID); err != nil {
				t.Fatal(err)
			}
		}
		// Put the transaction id back where the pool left it.
		if err := tp.SetTransactionID(st.TransactionID, orig); err != nil {
			t.Fatal(err)
		}
		c.create, c.setHosts, c.kernel = timing.Round(dc.P50()), timing.Round(dh.P50()), timing.Round(dk.P50())
		return c
	}
	for i := range 10 {
		if err := create(i); err != nil {
			t.Fatal(err)
		}
	}
	at10 := measureAt(10)
	// Stay at 10: delete what was measured.
	for i := range sample {
		if err := p.Delete(ctx(t), fmt.Sprintf("vol-%04d", 10+i)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for i := 10; i < total-sample; i++ {
		if err := create(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("created volumes 10 to %d in %s", total-sample, timing.Since(start))
	at1000 := measureAt(total - sample)
	ratio := func(a, b time.Duration) float64 { return float64(b) / float64(a) }
	t.Logf("p50 with 10 volumes → with ~1000: Create %s → %s (ratio %.2f); SetHosts (the record store) %s → %s (%.2f); "+
		"the kernel's create_thin + set_transaction_id %s → %s (%.2f)",
		at10.create, at1000.create, ratio(at10.create, at1000.create),
		at10.setHosts, at1000.setHosts, ratio(at10.setHosts, at1000.setHosts),
		at10.kernel, at1000.kernel, ratio(at10.kernel, at1000.kernel))
	if ratio(at10.setHosts, at1000.setHosts) > 1.2 {
		t.Logf("goal missed: the record store's cost grows with the number of volumes: SetHosts %s at 10, %s at 1000", at10.setHosts, at1000.setHosts)
	}
	measure(t, "Get with 1000 volumes", 50, func(i int) error { _, err := p.Get(ctx(t), fmt.Sprintf("vol-%04d", i*7)); return err })
	measure(t, "List with 1000 volumes", 10, func(int) error { _, err := p.List(ctx(t)); return err })
	for i := range 20 {
		mustActivate(t, p, fmt.Sprintf("vol-%04d", i))
	}

	// Open with 1,000 volumes, 20 of them active: re-attach after Close, then after a reboot.
	p.Close()
	start = time.Now()
	p = e.open(t)
	t.Logf("Open (re-attach) with 1000 volumes, 20 active: %s", timing.Since(start))
	if l, _ := p.List(ctx(t)); len(l) != total {
		t.Fatalf("%d volumes after reopen", len(l))
	}
	e.shutdown(t, p)
	start = time.Now()
	p = e.open(t)
	t.Logf("Open after a reboot with 1000 volumes: %s", timing.Since(start))
	e.shutdown(t, p)
}

// measure runs op n times and logs the median.
func measure(t testing.TB, what string, n int, op func(i int) error) {
	t.Helper()
	s := timing.Repeat(t, what, n, op)
	t.Logf("%-44s p50 %9s (n=%d)", what, timing.Round(s.P50()), n)
}
