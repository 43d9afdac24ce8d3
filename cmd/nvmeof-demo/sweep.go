package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// sweep removes whatever the demo may have left in the kernel and on disk, below the CSI
// surface and in dependency order: mounts under the work directory, NVMe controllers of the
// agent's subsystems, those subsystems, the demo's nvmet ports and host object, the dm-thin
// pool's device-mapper devices and device nodes, the volume group on the demo's LVM loop
// device, the loop devices of the pool's files, and the work directory's files (demo.log
// stays). Both backends' leftovers go, whichever --backend this run has. It is the safety net
// behind the CSI teardown, and runs before a demo too, in case an earlier one was killed. It
// never touches anything outside the demo's names. It returns what it removed.
func (e *env) sweep(ctx context.Context) ([]string, error) {
	var did []string
	var errs []error
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		} else {
			did = append(did, what)
		}
	}

	h, err := inventory.Take(ctx, e.scope())
	errs = append(errs, err)
	for _, m := range h.Mounts {
		_ = thaw(m) // a frozen file system would not unmount
		note("unmounted "+m, unix.Unmount(m, 0))
	}

	in := &nvme.Initiator{}
	var nqns []string
	for _, c := range h.Controllers {
		if !slices.Contains(nqns, c.SubsysNQN) {
			nqns = append(nqns, c.SubsysNQN)
		}
	}
	for _, nqn := range nqns {
		note("disconnected "+nqn, in.Disconnect(ctx, nqn))
	}

	if _, err := os.Stat(nvmet.DefaultRoot); err == nil {
		t := &nvmet.Target{Prefix: e.prefix}
		for _, s := range h.Subsystems {
			note("removed nvmet subsystem "+s.NQN, t.RemoveSubsystem(ctx, s.NQN))
		}
		if host := e.nvmetHost(); host != "" {
			note("removed nvmet host "+host, t.RemoveHost(ctx, host))
		}
		for _, id := range portIDs {
			if _, err := os.Stat(filepath.Join(nvmet.DefaultRoot, "ports", fmt.Sprint(id))); err == nil {
				note(fmt.Sprintf("removed nvmet port %d", id), t.RemovePort(ctx, id))
			}
		}
	}

	errs = append(errs, e.sweepPool(ctx, note))

	if left, err := inventory.MountsUnder("", e.dir); err != nil || len(left) > 0 {
		errs = append(errs, fmt.Errorf("not removing the files of %s: still mounted there: %v %v", e.dir, left, err))
		return did, errors.Join(errs...)
	}
	for _, name := range []string{lvmImage, metaImage, dataImage, "csi.sock", "agent.sock", "storage-nodes.yaml", "kubelet", "plugin-state", "etc-nvme"} {
		if _, err := os.Lstat(e.path(name)); err == nil {
			note("removed "+e.path(name), os.RemoveAll(e.path(name)))
		}
	}
	return did, errors.Join(errs...)
}

// sweepPool removes the pool's devices, either backend's: a dm-thin pool left active by an
// earlier run (a normal run's teardown shuts it down), removed without opening it (its files
// go anyway), with its device nodes; the volume group on the LVM loop device; the loop
// devices of the pool's files. It tells note what it did.
func (e *env) sweepPool(ctx context.Context, note func(string, error)) error {
	var errs []error
	removed, err := removeDMDevices(dmName + "-")
	for _, name := range removed {
		note("removed device-mapper device "+name, nil)
	}
	errs = append(errs, err)
	if _, err := os.Stat(dmNodeDir()); err == nil {
		note("removed "+dmNodeDir(), os.RemoveAll(dmNodeDir()))
	}

	for _, img := range poolImages {
		loops, err := loopsBackedBy(e.path(img))
		errs = append(errs, err)
		for _, loop := range loops {
			if img == lvmImage {
				if ok, _ := e.lvmPool(loop).VGExists(ctx); ok {
					_, err := run(ctx, "vgremove", "--config", lvmFilter(loop), "--force", vgName)
					note("removed volume group "+vgName, err)
				}
			}
			_, err := run(ctx, "losetup", "--detach", loop)
			note("detached "+loop, err)
		}
	}

	return errors.Join(errs...)
}

// poolImages are the files of either backend's pool.
var poolImages = []string{lvmImage, metaImage, dataImage}

// loopsBackedBy lists the loop devices whose backing file is img (also once it was deleted).
func loopsBackedBy(img string) ([]string, error) {
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // detached while we looked
		}
		if b := strings.TrimSuffix(strings.TrimSpace(string(raw)), " (deleted)"); b == img {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return out, nil
}
