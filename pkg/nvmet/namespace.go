package nvmet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
)

// nsDeviceAttrs are the namespace attributes the kernel lets us write only while the namespace
// is disabled.
var nsDeviceAttrs = []string{"device_path", "device_uuid", "device_nguid"}

func (ns Namespace) deviceAttrs() map[string]string {
	return map[string]string{"device_path": ns.DevicePath, "device_uuid": ns.UUID, "device_nguid": ns.NGUID}
}

func (t *Target) nsPath(nqn string, id uint32, elem ...string) string {
	return t.subsysPath(nqn, append([]string{"namespaces", strconv.FormatUint(uint64(id), 10)}, elem...)...)
}

// ensureNamespace creates or updates namespace ns (normalized) and enables it. Device attributes
// that differ are written with the namespace disabled, so a change disables it briefly.
func (t *Target) ensureNamespace(nqn string, ns Namespace) error {
	if err := t.mkdir(t.nsPath(nqn, ns.ID)); err != nil {
		return err
	}
	want := ns.deviceAttrs()
	var stale []string
	for _, a := range nsDeviceAttrs {
		have, err := t.read(t.nsPath(nqn, ns.ID, a))
		if err != nil {
			return err
		}
		if have != want[a] {
			stale = append(stale, a)
		}
	}
	enable, err := t.read(t.nsPath(nqn, ns.ID, "enable"))
	if err != nil {
		return err
	}
	enabled := enable == "1"
	if len(stale) > 0 && enabled {
		if err := t.write(t.nsPath(nqn, ns.ID, "enable"), "0"); err != nil {
			return err
		}
		enabled = false
	}
	for _, a := range stale {
		if err := t.write(t.nsPath(nqn, ns.ID, a), want[a]); err != nil {
			return err
		}
	}
	if err := t.ensureAttr(t.nsPath(nqn, ns.ID, "ana_grpid"), strconv.FormatUint(uint64(ns.ANAGroupID), 10)); err != nil {
		return err
	}
	if !enabled {
		if err := t.write(t.nsPath(nqn, ns.ID, "enable"), "1"); err != nil {
			return fmt.Errorf("enabling namespace %d on %s: %w", ns.ID, ns.DevicePath, err)
		}
	}
	return nil
}

// removeNamespaces disables and removes every namespace of nqn but keep (0: all of them).
func (t *Target) removeNamespaces(nqn string, keep uint32) error {
	names, err := t.readDir(t.subsysPath(nqn, "namespaces"))
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == strconv.FormatUint(uint64(keep), 10) {
			continue
		}
		dir := t.subsysPath(nqn, "namespaces", name)
		if err := t.write(t.subsysPath(nqn, "namespaces", name, "enable"), "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := t.rmdir(dir); err != nil {
			return err
		}
	}
	return nil
}

// readNamespace returns the namespace of nqn with the lowest ID (the one Subsystem describes),
// or the zero Namespace when there is none.
func (t *Target) readNamespace(nqn string) (Namespace, error) {
	names, err := t.readDir(t.subsysPath(nqn, "namespaces"))
	if err != nil {
		return Namespace{}, err
	}
	var ids []uint32
	for _, name := range names {
		if id, err := strconv.ParseUint(name, 10, 32); err == nil {
			ids = append(ids, uint32(id))
		}
	}
	if len(ids) == 0 {
		return Namespace{}, nil
	}
	ns := Namespace{ID: slices.Min(ids)}
	vals := map[string]*string{"device_path": &ns.DevicePath, "device_uuid": &ns.UUID, "device_nguid": &ns.NGUID}
	for _, a := range nsDeviceAttrs {
		if *vals[a], err = t.read(t.nsPath(nqn, ns.ID, a)); err != nil {
			return Namespace{}, err
		}
	}
	if ns.DevicePath == "(null)" {
		ns.DevicePath = ""
	}
	grp, err := t.read(t.nsPath(nqn, ns.ID, "ana_grpid"))
	if err != nil {
		return Namespace{}, err
	}
	g, err := strconv.ParseUint(grp, 10, 32)
	if err != nil {
		return Namespace{}, fmt.Errorf("ana_grpid %q: %w", grp, err)
	}
	ns.ANAGroupID = uint32(g)
	return ns, nil
}

// RevalidateNamespace makes the kernel re-read the size of namespace nsid of subsystem nqn and
// tell connected hosts about a change; call it after growing the backing device. The namespace
// must exist (ErrNotFound) and be enabled.
func (t *Target) RevalidateNamespace(ctx context.Context, nqn string, nsid uint32) error {
	if err := t.own(nqn); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := t.write(t.nsPath(nqn, nsid, "revalidate_size"), "1")
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("nvmet: namespace %d of %s: %w", nsid, nqn, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("nvmet: revalidating namespace %d of %s: %w", nsid, nqn, err)
	}
	return nil
}
