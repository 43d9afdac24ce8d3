package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// scope is where the demo's things live, for pkg/inventory: the pool (nil to leave LVs out),
// nvmet subsystems and NVMe controllers under the agent's NQN prefix, and mounts under the
// work directory (every staging and publish path of the demo is there).
func (e *env) scope(pool *lvm.Pool) inventory.Scope {
	return inventory.Scope{Pool: pool, NQNPrefix: e.prefix, MountDirs: []string{e.dir}}
}

// prove checks that the CSI teardown left nothing behind: no LV in the volume group but the
// thin pool, no nvmet subsystem under the agent's prefix and no nvmet host object of the
// worker, no NVMe controller of those subsystems, no mount under the work directory. Others'
// subsystems and controllers (a host's own PCIe drives) are not counted. It returns what it
// checked, one line each.
func (e *env) prove(ctx context.Context) ([]string, error) {
	h, err := inventory.Take(ctx, e.scope(e.pool(e.loop)))
	if err != nil {
		return nil, err
	}
	left := h.Items()
	if host := e.nvmetHost(); host != "" {
		left = append(left, "nvmet host object "+host)
	}
	if len(left) > 0 {
		return nil, fmt.Errorf("%d thing(s) left: %s", len(left), strings.Join(left, "; "))
	}
	return []string{
		fmt.Sprintf("LVs in volume group %s besides the thin pool: none", vgName),
		fmt.Sprintf("nvmet subsystems named %s*: none; the worker's nvmet host object: gone", e.prefix),
		"NVMe controllers of those subsystems: none",
		"mounts under " + e.dir + ": none",
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

// poolUsed returns the bytes of the thin pool's data space in use.
func (e *env) poolUsed(ctx context.Context) (int64, error) {
	u, err := e.pool(e.loop).Usage(ctx)
	return u.DataUsedBytes, err
}
