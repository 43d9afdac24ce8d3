package main

import (
	"fmt"
	"time"
)

// Goals of the storage engine, which the closing table reports against (met or not; the demo
// never fails on them).
const (
	// goalBatch: N environments at once take at most this multiple of one alone.
	goalBatch = 2.0
	// goalHold: production writes are held at most this long for the snapshot.
	goalHold = 300 * time.Millisecond
	// goalSize: a clone of the large source reaches its pod within this multiple of a clone
	// of the small one.
	goalSize = 1.2
)

// table prints the comparison with the full copy, the engine's figures against their goals,
// and where one environment's time goes.
func (d *demo) table() {
	r, res := d.r, d.res
	size := human(int64(d.o.volumeSize))
	r.section("Result")
	r.printf("  %-50s %10s   %s\n", "from production data to a mounted environment", "wall time", "vs full copy")
	row := func(what string, t time.Duration, n int) {
		cmp := "baseline"
		if t != res.copyToMount {
			cmp = fmt.Sprintf("%.1fx faster", float64(res.copyToMount)/float64(t)*float64(n))
			if n > 1 {
				cmp += " per environment"
			}
		}
		r.printf("  %-50s %10s   %s\n", what, secs(t), cmp)
	}
	row(fmt.Sprintf("full copy of %s (block copy + hand-over)", size), res.copyToMount, 1)
	row("clone of the snapshot, 1 environment", res.one.took, 1)
	row(fmt.Sprintf("clones of the snapshot, %d environments at once", d.o.clones), res.batch, d.o.clones)
	r.printf("\n  %d environments cost %s of wall time; copying would take about %s (%d x %s).\n",
		d.o.clones, secs(res.batch), secs(time.Duration(d.o.clones)*res.copyToMount), d.o.clones, secs(res.copyToMount))
	r.printf("  Production writes were held %s for the snapshot, %s for the copy.\n", secs(res.snapHold.total()), secs(res.copyHold.total()))
	if res.poolMid > 0 {
		r.printf("  The %d clones of %s added %s to the thin pool; the copy wrote %s.\n",
			d.o.clones+1, size, human(max(0, res.poolMid-res.poolBefore)), human(res.copied))
	}
	if b := res.backup; b.ran {
		r.printf("\n  %-50s %10s %10s   %s\n", fmt.Sprintf("nightly backup of prod-db (%s)", size), "moved", "wall time", "")
		r.printf("  %-50s %10s %10s   %s\n", "full: the allocated blocks of nightly-1", human(b.full), secs(b.fullTook),
			fmt.Sprintf("%.1f%% of the volume", 100*float64(b.full)/float64(b.volume)))
		r.printf("  %-50s %10s %10s   %s\n", fmt.Sprintf("incremental: blocks changed by a day (%s written)", human(b.changed)), human(b.incr), secs(b.incrTook),
			fmt.Sprintf("%.1f%% of the volume; delta computed in %s", 100*float64(b.incr)/float64(b.volume), ms(b.deltaTook)))
		r.printf("  Data and WAL were group-snapshotted at one instant; the database's longest write meanwhile: %s (call %s).\n",
			ms(b.groupStall), ms(b.groupCall))
	}

	r.printf("\n  The storage engine (%s pool) against its goals (reported, not asserted):\n", d.o.backend)
	goalRow := func(what, got string, g string) { r.printf("  %-50s %-24s %s\n", what, got, g) }
	batch := ratio(res.batch, res.one.took)
	goalRow(fmt.Sprintf("%d environments at once vs 1 alone", d.o.clones),
		fmt.Sprintf("%s / %s = %.2fx", secs(res.batch), secs(res.one.took), batch),
		fmt.Sprintf("goal <= %.0fx: %s", goalBatch, goal(batch, goalBatch)))
	hold := res.snapHold.total()
	goalRow("production writes held for the snapshot", secs(hold),
		fmt.Sprintf("goal <= %s: %s", secs(goalHold), goal(hold.Seconds(), goalHold.Seconds())))
	r.printf("      freeze %s, CreateSnapshot %s, thaw %s\n", ms(res.snapHold.freeze), ms(res.snapHold.work), ms(res.snapHold.thaw))
	if len(res.sizes) == 2 {
		small, large := res.sizes[0], res.sizes[1]
		sr := ratio(large.p50(), small.p50())
		goalRow(fmt.Sprintf("clone to mounted, %s vs %s (p50 of %d)", human(large.size), human(small.size), len(large.samples)),
			fmt.Sprintf("%s / %s = %.2fx", secs(large.p50()), secs(small.p50()), sr),
			fmt.Sprintf("goal <= %.1fx: %s", goalSize, goal(sr, goalSize)))
	}

	r.printf("\n  %-46s %12s %21s\n", "where one environment's time goes", res.one.name+" alone", fmt.Sprintf("%d at once", len(res.envs)))
	r.printf("  %-46s %12s %10s %10s\n", "", "", "median", "slowest")
	for _, b := range breakdownRows(res.one, res.envs) {
		if !b.known {
			r.printf("  %-46s %12s %10s %10s\n", b.what, "-", "-", "-")
			continue
		}
		r.printf("  %-46s %12s %10s %10s\n", b.what, ms(b.one), ms(b.median), ms(b.slowest))
	}
	r.printf("\n  Total: %s.\n", secs(time.Since(r.start)))
}
