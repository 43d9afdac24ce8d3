package lvm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
)

// Pool is one thin pool: the thin-pool LV ThinPool in the volume group VG.
type Pool struct {
	// VG and ThinPool name the volume group and its thin-pool LV.
	VG, ThinPool string
	// Runner runs the lvm command.
	Runner command.Runner
	// ExtraConfig, if set, is passed to every lvm command as --config (lvm.conf syntax), e.g.
	// "activation{udev_sync=0}".
	ExtraConfig string
	// WaitForDevice waits until the device node of a newly activated LV exists; nil polls the
	// path for up to DeviceTimeout. Unit tests replace it.
	WaitForDevice func(ctx context.Context, path string) error
}

// Create makes a thin LV of at least sizeBytes in the pool, with tags, and activates it. The
// size is rounded up to the VG's extent size; the returned LV carries the real one.
//
// Create does not apply an overcommit policy: thin LVs may together exceed the pool; check
// Usage first. If an LV of that name already exists, Create changes nothing and returns
// ErrExists, together with the existing LV when it is a thin LV of this pool, so callers can
// compare it with the request. A full pool or VG is ErrNoSpace.
func (p *Pool) Create(ctx context.Context, name string, sizeBytes int64, tags []string) (LV, error) {
	if err := p.checkNew(name); err != nil {
		return LV{}, err
	}
	size, err := sizeArg(sizeBytes)
	if err != nil {
		return LV{}, err
	}
	if err := validateTags(tags); err != nil {
		return LV{}, err
	}
	args := []string{"--type", "thin", "--virtualsize", size, "--thinpool", p.ThinPool,
		"--name", name, "--activate", "y"}
	args = append(args, tagArgs("--addtag", tags)...)
	args = append(args, p.VG)
	if _, err := p.lvm(ctx, "lvcreate", args...); err != nil {
		return p.createFailed(ctx, name, err)
	}
	return p.activated(ctx, name)
}

// Snapshot makes name a thin snapshot of origin (a thin LV of this pool), O(1) whatever the
// size: read-only for a snapshot, writable for a clone. It is activated at once and created
// without LVM's activation-skip flag, so it also comes back on plain activation.
//
// An existing name is ErrExists (with the LV when it is ours), a missing origin ErrNotFound,
// a full pool ErrNoSpace.
func (p *Pool) Snapshot(ctx context.Context, origin, name string, readOnly bool, tags []string) (LV, error) {
	if err := p.checkNew(name); err != nil {
		return LV{}, err
	}
	if err := p.checkExisting(origin); err != nil {
		return LV{}, fmt.Errorf("origin: %w", err)
	}
	if err := validateTags(tags); err != nil {
		return LV{}, err
	}
	args := []string{"--snapshot", "--name", name, "--setactivationskip", "n", "--activate", "y"}
	if readOnly {
		args = append(args, "--permission", "r")
	}
	args = append(args, tagArgs("--addtag", tags)...)
	args = append(args, p.VG+"/"+origin)
	if _, err := p.lvm(ctx, "lvcreate", args...); err != nil {
		if lv, exists := p.existing(ctx, name); exists != nil {
			return lv, exists
		}
		if ctx.Err() == nil {
			if _, gerr := p.Get(ctx, origin); errors.Is(gerr, ErrNotFound) {
				return LV{}, fmt.Errorf("origin: %w", gerr)
			}
		}
		return LV{}, classify(err)
	}
	return p.activated(ctx, name)
}

// Remove deletes a thin LV of the pool. A missing LV is ErrNotFound, which callers wanting
// idempotent deletes treat as success; an open device is ErrInUse. Thin snapshots of the LV
// survive it. Remove never touches the thin pool itself or LVs outside it.
func (p *Pool) Remove(ctx context.Context, name string) error {
	if err := p.checkExisting(name); err != nil {
		return err
	}
	lv, err := p.Get(ctx, name)
	if err != nil {
		return err
	}
	if lv.Open {
		return fmt.Errorf("%s/%s: %w", p.VG, name, ErrInUse)
	}
	if _, err := p.lvm(ctx, "lvremove", "--force", p.VG+"/"+name); err != nil {
		return p.failed(ctx, name, err)
	}
	return nil
}

// Extend grows a thin LV to at least sizeBytes (rounded up to the extent size) and returns
// it. It is a no-op when the LV is already that large, so repeating it is safe; it never
// shrinks an LV. A missing LV is ErrNotFound.
func (p *Pool) Extend(ctx context.Context, name string, sizeBytes int64) (LV, error) {
	if err := p.checkExisting(name); err != nil {
		return LV{}, err
	}
	size, err := sizeArg(sizeBytes)
	if err != nil {
		return LV{}, err
	}
	lv, err := p.Get(ctx, name)
	if err != nil {
		return LV{}, err
	}
	if lv.SizeBytes >= sizeBytes {
		return lv, nil
	}
	if _, err := p.lvm(ctx, "lvextend", "--size", size, p.VG+"/"+name); err != nil {
		return LV{}, p.failed(ctx, name, err)
	}
	return p.Get(ctx, name)
}

// Get returns a thin LV of the pool, or ErrNotFound.
func (p *Pool) Get(ctx context.Context, name string) (LV, error) {
	if err := p.checkExisting(name); err != nil {
		return LV{}, err
	}
	rows, err := p.lvs(ctx, selectName("lv_name", name))
	if err != nil {
		return LV{}, err
	}
	for _, r := range rows {
		if r.Name == name && r.isThinIn(p.ThinPool) {
			return r.toLV()
		}
	}
	return LV{}, fmt.Errorf("%s/%s: %w", p.VG, name, ErrNotFound)
}

// List returns the thin LVs of the pool (not the pool itself, nor other LVs of the VG), sorted
// by name.
func (p *Pool) List(ctx context.Context) ([]LV, error) {
	if err := p.checkPool(); err != nil {
		return nil, err
	}
	rows, err := p.lvs(ctx, "")
	if err != nil {
		return nil, err
	}
	var lvs []LV
	for _, r := range rows {
		if !r.isThinIn(p.ThinPool) {
			continue
		}
		lv, err := r.toLV()
		if err != nil {
			return nil, err
		}
		lvs = append(lvs, lv)
	}
	slices.SortFunc(lvs, func(a, b LV) int { return strings.Compare(a.Name, b.Name) })
	return lvs, nil
}

// AddTags adds tags to a thin LV; tags it already has are kept once. A missing LV is
// ErrNotFound.
func (p *Pool) AddTags(ctx context.Context, name string, tags ...string) error {
	return p.changeTags(ctx, name, "--addtag", tags)
}

// DelTags removes tags from a thin LV; tags it does not have are ignored. A missing LV is
// ErrNotFound.
func (p *Pool) DelTags(ctx context.Context, name string, tags ...string) error {
	return p.changeTags(ctx, name, "--deltag", tags)
}

func (p *Pool) changeTags(ctx context.Context, name, flag string, tags []string) error {
	if flag == "--addtag" {
		return p.ChangeTags(ctx, name, tags, nil)
	}
	return p.ChangeTags(ctx, name, nil, tags)
}

// ChangeTags adds and removes tags of a thin LV in one lvchange: LVM writes the VG metadata
// once, so the change is all or nothing. Tags in both lists are added. A missing LV is
// ErrNotFound.
func (p *Pool) ChangeTags(ctx context.Context, name string, add, del []string) error {
	if err := p.checkExisting(name); err != nil {
		return err
	}
	if err := validateTags(add); err != nil {
		return err
	}
	if err := validateTags(del); err != nil {
		return err
	}
	del = slices.DeleteFunc(slices.Clone(del), func(t string) bool { return slices.Contains(add, t) })
	if len(add)+len(del) == 0 {
		return nil
	}
	args := append(tagArgs("--addtag", add), tagArgs("--deltag", del)...)
	args = append(args, p.VG+"/"+name)
	if _, err := p.lvm(ctx, "lvchange", args...); err != nil {
		return p.failed(ctx, name, err)
	}
	return nil
}

// Activate makes sure a thin LV is active and its device node exists, whatever its
// activation-skip flag: after a reboot, or on an LV some other tool created. Activating an
// active LV is a no-op. A missing LV is ErrNotFound.
func (p *Pool) Activate(ctx context.Context, name string) error {
	if err := p.checkExisting(name); err != nil {
		return err
	}
	if _, err := p.lvm(ctx, "lvchange", "--activate", "y", "--ignoreactivationskip", p.VG+"/"+name); err != nil {
		return p.failed(ctx, name, err)
	}
	return p.waitDevice(ctx, p.devicePath(name))
}

// Deactivate removes a thin LV's device; the data stays. Deactivating an inactive LV is a
// no-op; an open device is ErrInUse, a missing LV ErrNotFound.
func (p *Pool) Deactivate(ctx context.Context, name string) error {
	if err := p.checkExisting(name); err != nil {
		return err
	}
	if _, err := p.lvm(ctx, "lvchange", "--activate", "n", p.VG+"/"+name); err != nil {
		return p.failed(ctx, name, err)
	}
	return nil
}
