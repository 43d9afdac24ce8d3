package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// demo is one run of the story.
type demo struct {
	o options
	r *reporter
	e *env
	k *kube

	sums     []fileSum
	prod     *pv
	prodPath string
	snap     *snap
	res      results
}

// results are the measurements of the final table.
type results struct {
	one                  *devEnv   // dev-00, on its own
	envs                 []*devEnv // the ones made at once
	batch                time.Duration
	sizes                []sizeResult
	copyToMount, copying time.Duration
	copied               int64
	snapHold, copyHold   hold
	poolBefore, poolMid  int64
	backup               backupResult
}

func runDemo(ctx context.Context, o options) int {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if !nvmeofKernel() {
		fmt.Fprintln(os.Stderr, "nvmeof-demo: this kernel has no /dev/nvme-fabrics or no nvmet configfs (modprobe nvme-fabrics nvmet nvmet-tcp, mount configfs); without --inside the demo runs in the VM")
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nvmeof-demo: the demo needs root here (device-mapper or LVM, nvmet configfs, /dev/nvme-fabrics, mount); or run it in the VM with --vm")
		return 1
	}
	e, err := newEnv(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-demo:", err)
		return 1
	}
	d := &demo{o: e.o, r: newReporter(os.Stdout), e: e}
	if err := d.run(ctx); err != nil {
		return 1
	}
	return 0
}

func (d *demo) run(ctx context.Context) (err error) {
	d.r.printf("nvmeof-csi demo: a production volume, a snapshot, %d dev environments cloned from it, and a full copy for comparison\n", d.o.clones)
	d.r.printf("kernel %s; pool backend %s; work directory %s (agent and plugin logs: demo.log)\n", kernelRelease(), d.o.backend, d.e.dir)
	if err := d.e.logToFile(); err != nil {
		d.r.printf("FAILED: %v\n", err)
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		d.r.printf("\nFAILED: %v\n\n--- %s (last 40 lines) ---\n%s\n---\n", err, d.e.logPath, d.e.logTail(40))
		if d.o.keepOnFail {
			d.r.printf("Everything is left in place (--keep-on-failure); a later run cleans it up first.\n")
			return
		}
		d.cleanupAfterFailure()
	}()
	for _, step := range []func(context.Context) error{d.setup, d.production, d.snapshot, d.clones, d.sizes, d.backup, d.fullCopy, d.teardown} {
		if err := step(ctx); err != nil {
			switch ctx.Err() {
			case context.DeadlineExceeded:
				err = fmt.Errorf("%w (the demo's --timeout of %s ran out)", err, d.o.timeout)
			case context.Canceled:
				err = fmt.Errorf("%w (interrupted)", err)
			}
			return err
		}
	}
	d.table()
	return nil
}

func (d *demo) setup(ctx context.Context) error {
	r, e := d.r, d.e
	r.section("Setup: a storage node and a worker in one kernel")
	did, err := e.sweep(ctx)
	for _, w := range did {
		r.note("left by an earlier run: %s", w)
	}
	if err != nil {
		return fmt.Errorf("cleaning up after an earlier run: %w", err)
	}
	if _, err := r.step(e.poolLabel(), func() error { return e.createPool(ctx) }); err != nil {
		return err
	}
	if _, err := r.step(fmt.Sprintf("nvmeof-agent %s in-process, NVMe/%s portals %s", storageNode, strings.ToUpper(d.o.transport), e.o.portals), e.startAgent); err != nil {
		return err
	}
	if _, err := r.step("nvmeof-csi --mode=all in-process, CSI on unix://…/csi.sock", e.startPlugin); err != nil {
		return err
	}
	k, err := dialCSI(e.endpoint, e.path("kubelet"), map[string]string{contract.ParamTransport: d.o.transport},
		func(msg string) { r.note("warning: %s", msg) })
	if err != nil {
		return err
	}
	d.k = k
	var about string
	if _, err := r.step("Probe until ready; GetPluginInfo, capabilities, NodeGetInfo", func() error {
		if err := k.waitReady(ctx, e.exited); err != nil {
			return err
		}
		about, err = k.discover(ctx)
		return err
	}); err != nil {
		return err
	}
	r.note("%s", about)
	return nil
}

func (d *demo) production(ctx context.Context) error {
	r, k := d.r, d.k
	size := int64(d.o.volumeSize)
	r.section(fmt.Sprintf("1/7 Production: prod-db, %s, ext4, holding a database", human(size)))
	var err error
	if _, err := r.step(fmt.Sprintf("CreateVolume prod-db (%s, StorageClass transport=%s)", human(size), d.o.transport), func() error {
		d.prod, err = k.provision(ctx, "prod-db", size, false, nil)
		return err
	}); err != nil {
		return err
	}
	r.note("volume ID %s", d.prod.id)
	if _, err := r.step("ControllerPublishVolume prod-db to "+workerNode+" (allows its host NQN)", func() error {
		return k.attach(ctx, d.prod)
	}); err != nil {
		return err
	}
	r.note("subsystem %s via %s", d.prod.pubCtx[contract.PublishSubsysNQN], d.prod.pubCtx[contract.PublishPortals])
	if _, err := r.step("NodeStage (connect both portals, mkfs.ext4, mount), NodePublish", func() error {
		d.prodPath, err = k.mount(ctx, d.prod, "prod-db-0")
		return err
	}); err != nil {
		return err
	}
	dev, _ := mountedDevice(k.stagingPath(d.prod))
	r.note("the pod sees %s (ext4 on %s)", d.prodPath, dev)

	specs := plan(int64(d.o.datasetSize))
	var total int64
	for _, s := range specs {
		total += s.size
	}
	p := r.progress("written", total, 4, bytesProgress)
	took, err := r.step(fmt.Sprintf("write the dataset: %d files, %s, recording each SHA-256", len(specs), human(total)), func() error {
		d.sums, err = writeDataset(ctx, d.prodPath, specs, p)
		return err
	})
	if err != nil {
		return err
	}
	r.note("%s; checksums also in %s in the volume", rate(total, took), manifestFile)
	d.res.poolBefore, _ = d.e.poolUsed(ctx)
	return nil
}

func (d *demo) snapshot(ctx context.Context) error {
	r := d.r
	r.section("2/7 Snapshot: consistent, production stays mounted")
	var err error
	if _, err := r.step("sync prod-db, freeze it, CreateSnapshot prod-db-snap, thaw", func() error {
		d.res.snapHold, err = frozen(d.prodPath, func() error {
			d.snap, err = d.k.snapshot(ctx, "prod-db-snap", d.prod)
			return err
		})
		return err
	}); err != nil {
		return err
	}
	r.note("snapshot ID %s", d.snap.id)
	r.note("production writes were held for %s", d.res.snapHold)
	return nil
}

// cleanupAfterFailure undoes what a failed run created: through CSI first (bounded), then
// whatever is left below it.
func (d *demo) cleanupAfterFailure() {
	r := d.r
	r.section("Cleaning up after the failure")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if d.k != nil && d.e.exited() == nil && len(d.e.servers) > 0 {
		_, _ = r.step("CSI teardown of every volume and snapshot created", func() error { return d.removeAll(ctx, nil) })
	}
	_, _ = r.step("stop nvmeof-csi and the agent", d.e.stop)
	did, err := d.e.sweep(ctx)
	for _, w := range did {
		r.note("%s", w)
	}
	if err != nil {
		r.printf("  could not remove everything: %v\n", err)
		return
	}
	r.printf("  cleaned up; nothing of the demo is left\n")
}

func kernelRelease() string {
	raw, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(raw))
}

func bytesProgress(done, total int64) string {
	return fmt.Sprintf("%s of %s (%d%%)", human(done), human(total), done*100/max(total, 1))
}
