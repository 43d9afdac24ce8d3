package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// sourceSizes are the two volumes the size step clones: a thin clone is O(1), so a clone of
// the large one should reach its pod about as fast as a clone of the small one. Thin volumes
// cost what is written, not their size.
var sourceSizes = []int64{1 << 30, 64 << 30}

// sizeSamples is how many clones of each are timed (the median is reported).
const sizeSamples = 3

// sizeFiles are the few files each source gets before its snapshot, and every clone shows.
var sizeFiles = []fileSpec{
	{path: "app/config.json", size: 4 << 10, seed: 7001},
	{path: "app/data.bin", size: 1 << 20, seed: 7002},
	{path: "app/index.bin", size: 256 << 10, seed: 7003},
}

// sizeResult is the time from CreateVolume to mounted of each clone of one source.
type sizeResult struct {
	size    int64
	samples []time.Duration
	envs    []*devEnv
}

func (s sizeResult) p50() time.Duration {
	sorted := slices.Clone(s.samples)
	slices.Sort(sorted)
	return median(sorted)
}

// sizeName is a short name for a size in claim names: "1g", "64g".
func sizeName(size int64) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSuffix(human(size), "iB")), " ", "")
}

// sizes shows that a clone's way to its pod does not depend on the volume's size: a 1 GiB
// and a 64 GiB volume are made, formatted (staged once), given a few files and unstaged, then
// snapshotted; then clones of each are timed from CreateVolume to mounted, the two sizes
// alternating so that whatever drifts meanwhile affects both alike.
func (d *demo) sizes(ctx context.Context) error {
	r := d.r
	names := make([]string, len(sourceSizes))
	for i, size := range sourceSizes {
		names[i] = human(size)
	}
	r.section(fmt.Sprintf("4/7 Size: clones of a %s and a %s volume, to their pods", names[0], names[1]))
	snaps := make([]*snap, len(sourceSizes))
	sums := make([][]fileSum, len(sourceSizes))
	for i, size := range sourceSizes {
		name := "src-" + sizeName(size)
		if _, err := r.step(fmt.Sprintf("%s: CreateVolume %s, stage (mkfs.ext4), write %d files, unstage, CreateSnapshot", name, human(size), len(sizeFiles)), func() error {
			var err error
			snaps[i], sums[i], err = d.sizeSource(ctx, name, size)
			return err
		}); err != nil {
			return err
		}
	}
	d.res.sizes = make([]sizeResult, len(sourceSizes))
	for i, size := range sourceSizes {
		d.res.sizes[i].size = size
	}
	if _, err := r.step(fmt.Sprintf("%d clones of each, one at a time, alternating: CreateVolume, publish, stage, mount", sizeSamples), func() error {
		for j := range sizeSamples {
			for n := range sourceSizes {
				i := n
				if j%2 == 1 {
					i = len(sourceSizes) - 1 - n
				}
				env, err := d.cloneEnv(ctx, fmt.Sprintf("src-%s-clone-%d", sizeName(sourceSizes[i]), j+1), snaps[i], sourceSizes[i])
				if err != nil {
					return err
				}
				if bad, err := verify(env.path, sums[i]); err != nil || len(bad) > 0 {
					return fmt.Errorf("%s: files differ from its source: %v %v", env.name, bad, err)
				}
				d.res.sizes[i].samples = append(d.res.sizes[i].samples, env.took)
				d.res.sizes[i].envs = append(d.res.sizes[i].envs, env)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, s := range d.res.sizes {
		var each []string
		for _, t := range s.samples {
			each = append(each, secs(t))
		}
		r.note("clone of the %s volume to mounted: median %s (%s); NodeStage medians: %s",
			human(s.size), secs(s.p50()), strings.Join(each, ", "), medianPhases(s.envs))
	}
	small, large := d.res.sizes[0], d.res.sizes[len(d.res.sizes)-1]
	r.note("%s vs %s: %.2fx; each clone shows its source's files", human(large.size), human(small.size), ratio(large.p50(), small.p50()))
	return nil
}

// sizeSource makes one source volume: provisioned, published, staged (a new, empty volume:
// mkfs), given sizeFiles, unstaged and unpublished, then snapshotted (nothing is mounted, so
// no freeze is needed). It returns the snapshot and the files' checksums.
func (d *demo) sizeSource(ctx context.Context, name string, size int64) (*snap, []fileSum, error) {
	k := d.k
	v, err := k.provision(ctx, name, size, false, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := k.attach(ctx, v); err != nil {
		return nil, nil, err
	}
	path, err := k.mount(ctx, v, name+"-0")
	if err != nil {
		return nil, nil, err
	}
	sums := make([]fileSum, len(sizeFiles))
	for i, f := range sizeFiles {
		if sums[i], err = generate(path, f, false); err != nil {
			return nil, nil, err
		}
	}
	if err := syncFS(path); err != nil {
		return nil, nil, err
	}
	if err := k.release(ctx, v); err != nil {
		return nil, nil, err
	}
	s, err := k.snapshot(ctx, name+"-snap", v)
	return s, sums, err
}
