package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm/thin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

// The two pool backends the demo can run the agent on (--backend).
const (
	backendDMThin = agent.BackendDMThin
	backendLVM    = agent.BackendLVM
)

// The pool's files in the work directory: one sparse file for LVM's volume group, or the
// metadata and data devices of the dm-thin pool.
const (
	lvmImage  = "pool.img"
	metaImage = "pool-meta.img"
	dataImage = "pool-data.img"
)

// dmName is the name the agent gives its dm-thin pool (pkg/agent: "nvmeof-<node name>"): its
// device-mapper devices are <dmName>-pool, -pool_tmeta, -pool_tdata and <dmName>-<volume ID>,
// its device nodes are in /dev/nvmeof/<dmName>. The teardown checks that the pool's stack
// really is under this name before it proves that nothing under it is left.
const dmName = "nvmeof-" + storageNode

// dmPrefix selects the device-mapper devices of the demo's pool: the dm-thin stack, or LVM's
// devices of the volume group.
func (e *env) dmPrefix() string {
	if e.o.backend == backendLVM {
		return vgName + "-"
	}
	return dmName + "-"
}

// metadataSize is the size of the dm-thin pool's metadata device for a data device of
// dataBytes. dm-thin needs about 64 bytes per data block (64 KiB blocks: 1/1024 of the data),
// doubled here for the mappings of clones that diverge and for B-tree slack; the record store
// takes 1/8 of the device (see package dmthin). 1/256 of the data covers both with room, at
// least 256 MiB (checkpoint slots of 8 MiB: the records of thousands of volumes), at most
// 16 GiB (the kernel uses up to 15.9 GiB of thin metadata). Whole MiB. The file is sparse:
// only what the pool writes takes space.
func metadataSize(dataBytes int64) int64 {
	const mib = 1 << 20
	size := (dataBytes/256 + mib - 1) / mib * mib
	return min(max(size, 256*mib), 16<<30)
}

// overcommitRatio is the agent's pool.overcommitRatio: enough for every volume the demo
// provisions at its virtual size (the agent counts snapshots too), with a quarter to spare,
// and at least 10.
func overcommitRatio(o options) float64 {
	need := float64(provisioned(o))
	return max(10, float64(int64(1.25*need/float64(o.poolSize))+1))
}

// provisioned is the sum of the virtual sizes of everything the demo creates: production,
// its snapshot, its clones and its full copy; and the size step's two sources, their
// snapshots and their clones.
func provisioned(o options) int64 {
	var sizeStep int64
	for _, s := range sourceSizes {
		sizeStep += s * (2 + sizeSamples)
	}
	return int64(o.volumeSize)*int64(o.clones+4) + sizeStep
}

// createPool makes the thin pool's devices on sparse files of the work directory: for LVM a
// loop device with a volume group and its thin pool; for dm-thin two blank loop devices,
// which the agent formats when it first opens them.
func (e *env) createPool(ctx context.Context) error {
	if e.o.backend == backendLVM {
		loop, err := sparseLoop(ctx, e.path(lvmImage), int64(e.o.poolSize))
		if err != nil {
			return err
		}
		e.loop = loop
		return e.lvmPool(e.loop).Setup(ctx, []string{e.loop}, 90)
	}
	var err error
	if e.metaLoop, err = sparseLoop(ctx, e.path(metaImage), metadataSize(int64(e.o.poolSize))); err != nil {
		return err
	}
	e.dataLoop, err = sparseLoop(ctx, e.path(dataImage), int64(e.o.poolSize))
	return err
}

// sparseLoop makes a new sparse file of size bytes at path and a loop device over it.
func sparseLoop(ctx context.Context, path string, size int64) (string, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	out, err := run(ctx, "losetup", "--find", "--show", path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// poolConfig is the agent's pool configuration.
func (e *env) poolConfig() agent.PoolConfig {
	ratio := overcommitRatio(e.o)
	if e.o.backend == backendLVM {
		return agent.PoolConfig{Backend: backendLVM, VolumeGroup: vgName, ThinPool: thinPool, OvercommitRatio: ratio, Devices: []string{e.loop}}
	}
	return agent.PoolConfig{Backend: backendDMThin, MetadataDevice: e.metaLoop, DataDevice: e.dataLoop, OvercommitRatio: ratio}
}

// poolLabel says what the pool is, for the setup step.
func (e *env) poolLabel() string {
	if e.o.backend == backendLVM {
		return fmt.Sprintf("LVM thin pool %s/%s on a %s sparse file (loop device)", vgName, thinPool, e.o.poolSize)
	}
	return fmt.Sprintf("dm-thin pool: %s data and %s metadata sparse files (loop devices)",
		e.o.poolSize, human(metadataSize(int64(e.o.poolSize))))
}

// lvmPool is the demo's LVM thin pool as lvm sees it when it only sees loop.
func (e *env) lvmPool(loop string) *lvm.Pool {
	return &lvm.Pool{VG: vgName, ThinPool: thinPool, Runner: bounded{}, ExtraConfig: lvmFilter(loop)}
}

// dmthinOptions open the agent's dm-thin pool, as the agent does.
func (e *env) dmthinOptions() dmthin.Options {
	return dmthin.Options{MetadataDevice: e.metaLoop, DataDevice: e.dataLoop, Name: dmName}
}

// poolUsed returns the bytes of the thin pool's data space in use: from LVM's report, or
// from the dm-thin pool's status (one ioctl; the agent holds the pool, the kernel answers
// anyone).
func (e *env) poolUsed(ctx context.Context) (int64, error) {
	if e.o.backend == backendLVM {
		u, err := e.lvmPool(e.loop).Usage(ctx)
		return u.DataUsedBytes, err
	}
	c, err := dm.Open()
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close() }()
	name := dmName + "-pool"
	table, err := c.Table(name)
	if err != nil {
		return 0, err
	}
	if len(table) != 1 {
		return 0, fmt.Errorf("%s has %d targets, want one thin-pool", name, len(table))
	}
	t, err := thin.ParsePoolTable(table[0].Params)
	if err != nil {
		return 0, err
	}
	st, err := thin.Pool{Control: c, Name: name}.Status(false)
	if err != nil {
		return 0, err
	}
	return int64(st.UsedDataBlocks) * int64(t.BlockSectors) * 512, nil
}

// releaseDMThin is the end of the dm-thin pool, once the agent has stopped (and let go of
// its lock on the metadata device): it checks that the pool's stack is active under the name
// the proof looks for, opens the pool as the agent did, lists what its records still hold,
// and shuts it down, which removes every device-mapper device of the pool. The records stay
// on the files (a restarted agent would find them); the sweep deletes the files.
func (e *env) releaseDMThin(ctx context.Context) (stack []string, left []pool.Volume, err error) {
	devs, err := inventory.DMDevices(nil, e.dmPrefix())
	if err != nil {
		return nil, nil, err
	}
	for _, d := range devs {
		stack = append(stack, d.Name)
	}
	if len(devs) < 3 {
		return stack, nil, fmt.Errorf("the pool's stack (pool, tmeta, tdata) is not under %s*: found %v", e.dmPrefix(), stack)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p, err := dmthin.Open(ctx, e.dmthinOptions())
	if err != nil {
		return stack, nil, fmt.Errorf("opening the pool after the agent: %w", err)
	}
	left, err = p.List(ctx)
	if err != nil {
		return stack, nil, errors.Join(err, p.Close())
	}
	if err := p.Shutdown(ctx); err != nil {
		return stack, left, errors.Join(fmt.Errorf("shutting the pool down: %w", err), p.Close())
	}
	return stack, left, nil
}

// removeDMDevices removes the device-mapper devices whose names start with prefix, those
// stacked on others first (a device others are stacked on is busy until they are gone, so
// each round removes what it can), resuming any left suspended; for at most 30 seconds. It is
// the sweep's way to remove a dm-thin pool left behind without opening it. It returns the
// names it removed.
func removeDMDevices(prefix string) ([]string, error) {
	c, err := dm.Open()
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	var removed []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		devs, err := c.List(prefix)
		if err != nil || len(devs) == 0 {
			return removed, err
		}
		for _, d := range devs {
			if info, err := c.Info(d.Name); err == nil && info.Suspended {
				_, _ = c.Resume(d.Name)
			}
			if c.Remove(d.Name) == nil {
				removed = append(removed, d.Name)
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, d := range devs {
				names = append(names, d.Name)
			}
			return removed, fmt.Errorf("device-mapper devices %v could not be removed", names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dmNodeDir is where the agent's dm-thin pool makes its device nodes.
func dmNodeDir() string { return filepath.Join(dmthin.DefaultNodeDir, dmName) }
