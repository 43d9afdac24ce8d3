package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// devEnv is a dev environment: a clone of a snapshot, mounted in its pod.
type devEnv struct {
	name string
	v    *pv
	path string
	took time.Duration // CreateVolume to mounted
	// stage is where NodeStageVolume spent its time, as the node logged it.
	stage []phase
}

// cloneEnv provisions a claim of size bytes from snapshot s and starts its pod: CreateVolume
// with the snapshot as content source, ControllerPublishVolume, NodeStageVolume,
// NodePublishVolume.
func (d *demo) cloneEnv(ctx context.Context, name string, s *snap, size int64) (*devEnv, error) {
	start := time.Now()
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.id}}}
	v, err := d.k.provision(ctx, name, size, false, src)
	if err != nil {
		return nil, err
	}
	if err := d.k.attach(ctx, v); err != nil {
		return nil, err
	}
	path, err := d.k.mount(ctx, v, name+"-0")
	if err != nil {
		return nil, err
	}
	return &devEnv{name: name, v: v, path: path, took: time.Since(start), stage: d.e.stages.phases(v.id)}, nil
}

func (d *demo) clones(ctx context.Context) error {
	r, n := d.r, d.o.clones
	r.section("3/7 Dev environments: clones of the snapshot, each staged and mounted in its pod")
	size := int64(d.o.volumeSize)
	var first *devEnv
	var err error
	if _, err = r.step("dev-00 on its own: CreateVolume from the snapshot, publish, stage, mount", func() error {
		first, err = d.cloneEnv(ctx, "dev-00", d.snap, size)
		return err
	}); err != nil {
		return err
	}
	d.res.one = first
	r.note("%s", first.breakdown())
	envs := make([]*devEnv, n)
	p := r.progress("mounted", int64(n), int64(n), nil)
	if d.res.batch, err = r.step(fmt.Sprintf("%d more at once (dev-01 … dev-%02d), all in parallel", n, n), func() error {
		return parallel(ctx, n, n, func(i int) error {
			env, err := d.cloneEnv(ctx, fmt.Sprintf("dev-%02d", i+1), d.snap, size)
			envs[i] = env
			if err == nil {
				p.add(1)
			}
			return err
		})
	}); err != nil {
		return err
	}
	d.res.envs = envs
	each := durations(envs, func(e *devEnv) (time.Duration, bool) { return e.took, true })
	r.note("each environment, CreateVolume to mounted: fastest %s, median %s, slowest %s; %d at once took %.1fx one alone",
		secs(each[0]), secs(median(each)), secs(each[len(each)-1]), n, ratio(d.res.batch, first.took))
	r.note("%s", phaseSpread(envs, "connect"))
	r.note("%s", phaseSpread(envs, "mount"))
	all := append([]*devEnv{first}, envs...)
	if used, err := d.e.poolUsed(ctx); err == nil {
		d.res.poolMid = used
		r.note("thin pool data in use: %s before the snapshot, %s with %d clones of %s mounted",
			human(d.res.poolBefore), human(used), len(all), human(int64(d.o.volumeSize)))
	}

	var files int64
	for _, s := range d.sums {
		files += s.size
	}
	pv := r.progress("verified", int64(len(all)), 4, nil)
	if _, err := r.step(fmt.Sprintf("verify every file's SHA-256 in all %d environments (O_DIRECT reads)", len(all)), func() error {
		return parallel(ctx, len(all), 2, func(i int) error {
			bad, err := verify(all[i].path, d.sums)
			if err != nil {
				return fmt.Errorf("%s: %w", all[i].name, err)
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s: %d file(s) differ from production: %s", all[i].name, len(bad), strings.Join(bad, ", "))
			}
			pv.add(1)
			return nil
		})
	}); err != nil {
		return err
	}
	r.note("%d files, %s, in each: all identical to production", len(d.sums), human(files))
	return d.scrub(all[len(all)/2])
}

// scrub overwrites one environment's users table, checks that only that file changed there,
// and that production still holds exactly what was written.
func (d *demo) scrub(env *devEnv) error {
	r := d.r
	var users fileSpec
	for _, s := range plan(int64(d.o.datasetSize)) {
		if s.path == usersFile {
			users = s
		}
	}
	var after fileSum
	var err error
	if _, err := r.step(fmt.Sprintf("scrub %s: rewrite its users table without names and e-mails", env.name), func() error {
		if after, err = generate(env.path, users, true); err != nil {
			return err
		}
		return syncFS(env.path)
	}); err != nil {
		return err
	}
	bad, err := verify(env.path, d.sums)
	if err != nil {
		return err
	}
	if !slices.Equal(bad, []string{usersFile}) {
		return fmt.Errorf("after the scrub, %s differs from production in %v; want only %s", env.name, bad, usersFile)
	}
	before := d.sums[slices.IndexFunc(d.sums, func(s fileSum) bool { return s.path == usersFile })]
	r.note("%s: %s sha256 %.12s… -> %.12s…, its other %d files unchanged", env.name, usersFile, before.sum, after.sum, len(d.sums)-1)
	if _, err := r.step("production unchanged? every file's SHA-256 again, from the device", func() error {
		bad, err := verify(d.prodPath, d.sums)
		if err == nil && len(bad) > 0 {
			err = fmt.Errorf("production changed: %s", strings.Join(bad, ", "))
		}
		return err
	}); err != nil {
		return err
	}
	r.note("prod-db: all %d files match the checksums recorded at write time", len(d.sums))
	return nil
}
