package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// fullCopy copies production the slow way: a new raw block volume, a consistent (frozen)
// device-to-device copy, then the copy handed over as an ext4 volume and mounted — the same
// end state a clone reaches, for a fair comparison.
func (d *demo) fullCopy(ctx context.Context) error {
	r, k := d.r, d.k
	size := int64(d.o.volumeSize)
	r.section(fmt.Sprintf("6/7 The slow way: a full block copy of the %s production volume", human(size)))
	start := time.Now()
	var blk *pv
	var dev string
	var err error
	if _, err := r.step("CreateVolume prod-copy (raw block), publish, stage, publish to a pod", func() error {
		if blk, err = k.provision(ctx, "prod-copy", size, true, nil); err != nil {
			return err
		}
		if err := k.attach(ctx, blk); err != nil {
			return err
		}
		dev, err = k.mount(ctx, blk, "copy-job-0")
		return err
	}); err != nil {
		return err
	}
	src, err := mountedDevice(k.stagingPath(d.prod))
	if err != nil {
		return err
	}
	r.note("from %s (prod-db's namespace) to prod-copy's device in the copy job's pod", src)
	p := r.progress("copied", size, 10, bytesProgress)
	if d.res.copying, err = r.step(fmt.Sprintf("sync prod-db, freeze it, copy the device in %s O_DIRECT chunks, thaw", human(copyChunk)), func() error {
		d.res.copyHold, err = frozen(d.prodPath, func() error {
			d.res.copied, err = blockCopy(ctx, src, dev, p.add)
			return err
		})
		return err
	}); err != nil {
		return err
	}
	r.note("%s at %s; production writes were held for %s", human(d.res.copied), rate(d.res.copied, d.res.copying), secs(d.res.copyHold.total()))
	var path string
	if _, err := r.step("hand prod-copy over as ext4: release the block PV, publish, stage, mount", func() error {
		if err := k.release(ctx, blk); err != nil {
			return err
		}
		fs := k.handOver(blk, "prod-copy-fs", false)
		if err := k.attach(ctx, fs); err != nil {
			return err
		}
		path, err = k.mount(ctx, fs, "prod-copy-0")
		return err
	}); err != nil {
		return err
	}
	d.res.copyToMount = time.Since(start)
	r.note("full copy to mounted: %s", secs(d.res.copyToMount))
	_, err = r.step("verify every file's SHA-256 in the copy", func() error {
		bad, err := verify(path, d.sums)
		if err == nil && len(bad) > 0 {
			err = fmt.Errorf("the copy differs from production in %v", bad)
		}
		return err
	})
	return err
}

func (d *demo) teardown(ctx context.Context) error {
	r, e := d.r, d.e
	r.section("7/7 Teardown, and proof that nothing is left")
	n := 0
	for _, v := range d.k.pvs {
		if !v.retain {
			n++
		}
	}
	p := r.progress("removed", int64(n), 4, nil)
	if _, err := r.step(fmt.Sprintf("unpublish, unstage, ControllerUnpublish, DeleteVolume: %d volumes; DeleteSnapshot: %d", n, len(d.k.snaps)), func() error {
		return d.removeAll(ctx, p)
	}); err != nil {
		return err
	}
	if _, err := r.step("stop nvmeof-csi and the agent", e.stop); err != nil {
		return err
	}
	var left []pool.Volume
	if e.o.backend == backendDMThin {
		// The agent leaves its pool's devices active when it stops (a restarted agent
		// re-attaches): the demo opens the pool itself and shuts it down.
		var stack []string
		if _, err := r.step("open the dm-thin pool (the agent let go of it), list its volumes, Shutdown", func() error {
			var err error
			stack, left, err = e.releaseDMThin(ctx)
			return err
		}); err != nil {
			return err
		}
		r.note("removed the pool's device-mapper stack: %s", strings.Join(stack, ", "))
	}
	checked, err := e.prove(ctx, left)
	if err != nil {
		return fmt.Errorf("left behind: %w", err)
	}
	for _, msg := range checked {
		r.note("ok: %s", msg)
	}
	label := "detach the pool's loop devices, remove its files and the agent's nvmet ports"
	if e.o.backend == backendLVM {
		label = "remove volume group " + vgName + ", its loop device and file, the agent's nvmet ports"
	}
	if _, err := r.step(label, func() error {
		_, err := e.sweep(ctx)
		return err
	}); err != nil {
		return err
	}
	if checked, err = e.proveReleased(); err != nil {
		return fmt.Errorf("left behind: %w", err)
	}
	for _, msg := range checked {
		r.note("ok: %s", msg)
	}
	return nil
}

// removeAll tears every tracked volume down as Kubernetes would when the pods and claims go
// (all at once, up to 8 in flight), then deletes the snapshots. It keeps going past failures
// and reports them all.
func (d *demo) removeAll(ctx context.Context, p *progress) error {
	pvs := d.k.pvs
	errs := make([]error, len(pvs))
	_ = parallel(ctx, len(pvs), 8, func(i int) error {
		errs[i] = d.k.remove(ctx, pvs[i])
		if p != nil && !pvs[i].retain {
			p.add(1)
		}
		return nil
	})
	for _, s := range d.k.snaps {
		errs = append(errs, d.k.deleteSnapshot(ctx, s))
	}
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d teardown call(s) failed, first: %w", len(failed), failed[0])
	}
	return ctx.Err()
}
