// Package inventory lists what a host holds of what nvmeof-csi makes: the LVs of a thin pool's
// volume group, device-mapper devices (a dm-thin pool's stack), nvmet subsystems, NVMe
// controllers and mounts. Each is read through the package that owns it: pkg/lvm (a JSON
// report), pkg/dm (ioctls), pkg/nvmet (configfs), pkg/nvme (sysfs), and mountinfo parsed by
// k8s.io/mount-utils, as pkg/mounter does.
//
// It only reads, and holds no state: calls may run concurrently. What it returns is a snapshot;
// the kernel may change right after. The proofs that a teardown left nothing (the demo's, the
// test tiers') use it, and so can an operator's search for orphans.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/mount-utils"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// DefaultMountInfoPath is the mount table Take reads by default.
const DefaultMountInfoPath = "/proc/self/mountinfo"

// Scope says where Take looks and what it counts. The zero Scope counts every nvmet subsystem
// and NVMe controller of the real system, and no LVs or mounts.
type Scope struct {
	// Pool, when set, is the thin pool whose volume group is listed.
	Pool *lvm.Pool
	// DMPrefix, when set, selects the device-mapper devices counted: those whose name starts
	// with it (a dm-thin pool's stack is "<name>-pool", "<name>-<ID>", …: prefix "<name>-").
	// Empty counts none.
	DMPrefix string
	// DM lists device-mapper devices; nil means the kernel's (pkg/dm, which makes
	// /dev/mapper/control if it is missing).
	DM DMLister
	// NQNPrefix selects the nvmet subsystems and NVMe controllers counted: those whose
	// subsystem NQN starts with it (an agent's prefix, see agent.Config.NQNPrefix). Empty
	// counts them all.
	NQNPrefix string
	// NvmetRoot and NvmetFS are nvmet's configfs directory and the file system it is read
	// through; empty and nil mean nvmet.DefaultRoot and nvmet.OSFS.
	NvmetRoot string
	NvmetFS   nvmet.FS
	// Initiator reads the NVMe controllers from sysfs; nil means the real system.
	Initiator *nvme.Initiator
	// MountDirs are where mounts are counted; see MountsUnder. None counts no mounts.
	MountDirs []string
	// MountInfoPath is the mount table; empty means DefaultMountInfoPath.
	MountInfoPath string
}

// Host is what Take found.
type Host struct {
	// LVs are the LVs of the pool's volume group other than the thin pool itself: thin
	// volumes, snapshots and clones, and anything else in the volume group.
	LVs []lvm.VGLV
	// DMDevices are the device-mapper devices in scope, sorted by name.
	DMDevices []dm.Device
	// Subsystems are the nvmet subsystems in scope, sorted by NQN.
	Subsystems []nvmet.Subsystem
	// Controllers are the NVMe controllers of subsystems in scope, sorted by name.
	Controllers []nvme.Controller
	// Mounts are the mount points under the scope's directories, deepest first.
	Mounts []string
}

// Take lists what the host holds in scope. A source that cannot be read adds its error to the
// returned one (all of them joined) and leaves its part of Host empty; the other parts are
// still filled in.
func Take(ctx context.Context, s Scope) (Host, error) {
	var h Host
	var errs []error
	if s.Pool != nil {
		lvs, err := s.Pool.ListVG(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("LVs of volume group %s: %w", s.Pool.VG, err))
		}
		for _, lv := range lvs {
			if lv.Name != s.Pool.ThinPool {
				h.LVs = append(h.LVs, lv)
			}
		}
	}
	if s.DMPrefix != "" {
		devs, err := DMDevices(s.DM, s.DMPrefix)
		if err != nil {
			errs = append(errs, err)
		}
		h.DMDevices = devs
	}
	subs, err := Subsystems(ctx, s.NvmetRoot, s.NvmetFS, s.NQNPrefix)
	if err != nil {
		errs = append(errs, err)
	}
	h.Subsystems = subs
	if h.Controllers, err = Controllers(s.Initiator, s.NQNPrefix); err != nil {
		errs = append(errs, err)
	}
	if len(s.MountDirs) > 0 {
		if h.Mounts, err = MountsUnder(s.MountInfoPath, s.MountDirs...); err != nil {
			errs = append(errs, err)
		}
	}
	return h, errors.Join(errs...)
}

// Empty reports whether nothing was found.
func (h Host) Empty() bool {
	return len(h.LVs)+len(h.DMDevices)+len(h.Subsystems)+len(h.Controllers)+len(h.Mounts) == 0
}

// Items describes each thing found, one line each ("LV nvmeof/pvc-1 (thin)", "device-mapper
// device nvmeof-sn-pool", "nvmet subsystem nqn...", "NVMe controller nvme0 of nqn...", "mount
// /var/lib/...").
func (h Host) Items() []string {
	var out []string
	for _, lv := range h.LVs {
		out = append(out, fmt.Sprintf("LV %s (%s)", lv.Name, lv.Segtype))
	}
	for _, d := range h.DMDevices {
		out = append(out, "device-mapper device "+d.Name)
	}
	for _, s := range h.Subsystems {
		out = append(out, "nvmet subsystem "+s.NQN)
	}
	for _, c := range h.Controllers {
		out = append(out, fmt.Sprintf("NVMe controller %s of %s (%s)", c.Name, c.SubsysNQN, c.State))
	}
	for _, m := range h.Mounts {
		out = append(out, "mount "+m)
	}
	return out
}

// DMLister lists device-mapper devices by name prefix, as *dm.Control does.
type DMLister interface {
	List(prefix string) ([]dm.Device, error)
}

// DMDevices lists, through l (the kernel's device-mapper when nil), the devices whose name
// starts with prefix, sorted by name.
func DMDevices(l DMLister, prefix string) ([]dm.Device, error) {
	if l == nil {
		c, err := dm.Open()
		if err != nil {
			return nil, fmt.Errorf("device-mapper devices: %w", err)
		}
		defer func() { _ = c.Close() }()
		l = c
	}
	devs, err := l.List(prefix)
	if err != nil {
		return nil, fmt.Errorf("device-mapper devices named %s*: %w", prefix, err)
	}
	devs = slices.DeleteFunc(devs, func(d dm.Device) bool { return !strings.HasPrefix(d.Name, prefix) })
	slices.SortFunc(devs, func(a, b dm.Device) int { return strings.Compare(a.Name, b.Name) })
	return devs, nil
}

// Subsystems lists the nvmet subsystems whose NQN starts with prefix (all of them when it is
// empty) in the configfs tree at root (nvmet.DefaultRoot when empty) through fsys (nvmet.OSFS
// when nil), sorted by NQN. Without nvmet's configfs there are none. A directory under
// subsystems/ whose name is no valid NQN is not a subsystem anyone made, and is not listed.
func Subsystems(ctx context.Context, root string, fsys nvmet.FS, prefix string) ([]nvmet.Subsystem, error) {
	if prefix == "" {
		prefix = "nqn." // every valid NQN
	}
	subs, err := (&nvmet.Target{Root: root, FS: fsys, Prefix: prefix}).List(ctx)
	if err != nil {
		return nil, fmt.Errorf("nvmet subsystems: %w", err)
	}
	return subs, nil
}

// Controllers lists the NVMe controllers, through in (the real system when nil), of the
// subsystems whose NQN starts with prefix (all of them when it is empty), sorted by name.
func Controllers(in *nvme.Initiator, prefix string) ([]nvme.Controller, error) {
	if in == nil {
		in = &nvme.Initiator{}
	}
	all, err := in.Controllers("")
	if err != nil {
		return nil, fmt.Errorf("NVMe controllers: %w", err)
	}
	return slices.DeleteFunc(all, func(c nvme.Controller) bool { return !strings.HasPrefix(c.SubsysNQN, prefix) }), nil
}

// MountsUnder lists the mount points at or below any of dirs, deepest first, from the mount
// table at mountInfoPath (DefaultMountInfoPath when empty). A point mounted more than once is
// listed as often, so that unmounting the list in order leaves nothing. A dir may be a
// filepath.Match pattern, matched against the leading path elements of each mount point:
// "/var/lib/kubelet/pods/*/volumes/kubernetes.io~csi" counts every pod's CSI volumes.
func MountsUnder(mountInfoPath string, dirs ...string) ([]string, error) {
	if mountInfoPath == "" {
		mountInfoPath = DefaultMountInfoPath
	}
	infos, err := mount.ParseMountInfo(mountInfoPath)
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	var out []string
	for _, m := range infos {
		ok, err := under(m.MountPoint, dirs)
		if err != nil {
			return nil, fmt.Errorf("mounts: %w", err)
		}
		if ok {
			out = append(out, m.MountPoint)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

// under reports whether path, or one of its parent directories, matches one of the patterns.
func under(path string, patterns []string) (bool, error) {
	for _, p := range patterns {
		if p = filepath.Clean(p); p == "/" {
			return true, nil
		}
		for i := 1; i <= len(path); i++ {
			if i < len(path) && path[i] != '/' {
				continue
			}
			ok, err := filepath.Match(p, path[:i])
			if err != nil {
				return false, fmt.Errorf("pattern %q: %w", p, err)
			}
			if ok {
				return true, nil
			}
		}
	}
	return false, nil
}
