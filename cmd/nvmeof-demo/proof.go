package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// scope is where the demo's things live, for pkg/inventory: nvmet subsystems and NVMe
// controllers under the agent's NQN prefix, and mounts under the work directory (every
// staging and publish path of the demo is there). The pool's part is added by the proofs.
func (e *env) scope() inventory.Scope {
	return inventory.Scope{NQNPrefix: e.prefix, MountDirs: []string{e.dir}}
}

// prove checks that the CSI teardown left nothing behind, once the agent has stopped: nothing
// in the pool (LVM: no LV in the volume group but the thin pool; dm-thin: no volume or
// snapshot in the records listed after the agent (left), and no device-mapper device of the
// pool after its Shutdown), no nvmet subsystem under the agent's prefix and no nvmet host
// object of the worker, no NVMe controller of those subsystems, no mount under the work
// directory. Others' subsystems and controllers (a host's own PCIe drives) are not counted. It
// returns what it checked, one line each.
func (e *env) prove(ctx context.Context, left []pool.Volume) ([]string, error) {
	s := e.scope()
	var lines []string
	if e.o.backend == backendLVM {
		s.Pool = e.lvmPool(e.loop)
		lines = append(lines, fmt.Sprintf("LVs in volume group %s besides the thin pool: none", vgName))
	} else {
		s.DMPrefix = e.dmPrefix()
		lines = append(lines, "volumes and snapshots in the dm-thin pool's records, listed after the agent stopped: none",
			fmt.Sprintf("device-mapper devices named %s* after the pool's Shutdown: none", e.dmPrefix()))
	}
	h, err := inventory.Take(ctx, s)
	if err != nil {
		return nil, err
	}
	items := h.Items()
	for _, v := range left {
		items = append(items, "volume "+v.ID+" in the dm-thin pool")
	}
	if host := e.nvmetHost(); host != "" {
		items = append(items, "nvmet host object "+host)
	}
	if len(items) > 0 {
		return nil, fmt.Errorf("%d thing(s) left: %s", len(items), strings.Join(items, "; "))
	}
	return append(lines,
		fmt.Sprintf("nvmet subsystems named %s*: none; the worker's nvmet host object: gone", e.prefix),
		"NVMe controllers of those subsystems: none",
		"mounts under "+e.dir+": none",
	), nil
}

// proveReleased checks, after the sweep, that the pool's devices are gone too: no
// device-mapper device of the pool (for LVM: of its volume group), and no loop device over
// the pool's files. It returns what it checked.
func (e *env) proveReleased() ([]string, error) {
	devs, err := inventory.DMDevices(nil, e.dmPrefix())
	if err != nil {
		return nil, err
	}
	var items []string
	for _, d := range devs {
		items = append(items, "device-mapper device "+d.Name)
	}
	for _, img := range poolImages {
		loops, err := loopsBackedBy(e.path(img))
		if err != nil {
			return nil, err
		}
		for _, l := range loops {
			items = append(items, "loop device "+l+" over "+img)
		}
	}
	if len(items) > 0 {
		return nil, fmt.Errorf("%d thing(s) left: %s", len(items), strings.Join(items, "; "))
	}
	return []string{
		fmt.Sprintf("device-mapper devices named %s*: none", e.dmPrefix()),
		fmt.Sprintf("loop devices over %s: none", strings.Join(poolImages, ", ")),
	}, nil
}

// nvmetHost returns the worker's host NQN if nvmet still has a host object for it, else "".
func (e *env) nvmetHost() string {
	raw, err := os.ReadFile(e.path("etc-nvme", "hostnqn"))
	if err != nil {
		return ""
	}
	host := strings.TrimSpace(string(raw))
	if _, err := os.Stat(filepath.Join(nvmet.DefaultRoot, "hosts", host)); err != nil {
		return ""
	}
	return host
}
