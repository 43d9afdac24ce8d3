package nvme

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	// headRE matches usable namespace block devices: the multipath head, or the namespace of
	// a controller when native multipath is off. Partitions (nvme0n1p1), hidden per-path
	// devices (nvme0c1n1) and character devices (ng0n1) do not match.
	headRE = regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`)
	pathRE = regexp.MustCompile(`^nvme[0-9]+c[0-9]+n[0-9]+$`)
)

// FindNamespace returns the block device ("/dev/nvme3n1") of the namespace with UUID nsUUID
// in the subsystem subsysNQN, or an error wrapping ErrNotFound.
//
// It walks /sys/class/nvme-subsystem: with native multipath the namespace head sits in the
// subsystem's directory; without it, each controller of the subsystem has its own device for
// the namespace, and the one of a live controller is preferred. The namespace's "uuid"
// attribute is compared, else its "wwid" ("uuid.<uuid>"). Hidden path devices are never
// returned. Namespaces appear asynchronously after Connect: see WaitNamespace.
func (in *Initiator) FindNamespace(subsysNQN, nsUUID string) (string, error) {
	if err := ValidNQN(subsysNQN); err != nil {
		return "", fmt.Errorf("nvme: find namespace: %w", err)
	}
	if err := ValidUUID(nsUUID); err != nil {
		return "", fmt.Errorf("nvme: find namespace: %w", err)
	}
	subsystems, err := readDirNames(in.sysfs("class", "nvme-subsystem"))
	if err != nil {
		return "", fmt.Errorf("nvme: find namespace: %w", err)
	}
	var found []candidate
	for _, s := range subsystems {
		dir := in.sysfs("class", "nvme-subsystem", s)
		if nqn, err := readAttr(filepath.Join(dir, "subsysnqn")); err != nil || strings.TrimSpace(nqn) != subsysNQN {
			continue
		}
		c, err := in.subsystemNamespaces(dir, nsUUID)
		if err != nil {
			return "", fmt.Errorf("nvme: find namespace in %s: %w", s, err)
		}
		found = append(found, c...)
	}
	if len(found) == 0 {
		return "", fmt.Errorf("nvme: namespace %s of %s: %w", nsUUID, subsysNQN, ErrNotFound)
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].live != found[j].live {
			return found[i].live
		}
		return ctrlLess(found[i].name, found[j].name)
	})
	return "/dev/" + found[0].name, nil
}

// candidate is a namespace block device whose identity matched.
type candidate struct {
	name string
	live bool // its path (or, for a multipath head, the head itself) is usable now
}

// subsystemNamespaces returns the devices under one subsystem directory whose UUID is nsUUID:
// heads directly in it (multipath), or namespaces of the controllers linked from it.
func (in *Initiator) subsystemNamespaces(dir, nsUUID string) ([]candidate, error) {
	entries, err := readDirNames(dir)
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, e := range entries {
		switch {
		case headRE.MatchString(e):
			if ok, err := hasUUID(filepath.Join(dir, e), nsUUID); err != nil {
				return nil, err
			} else if ok {
				out = append(out, candidate{name: e, live: true})
			}
		case ctrlRE.MatchString(e):
			state, err := readAttr(filepath.Join(dir, e, "state"))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			ns, err := readDirNames(filepath.Join(dir, e))
			if err != nil {
				return nil, err
			}
			for _, n := range ns {
				if !headRE.MatchString(n) {
					continue
				}
				if ok, err := hasUUID(filepath.Join(dir, e, n), nsUUID); err != nil {
					return nil, err
				} else if ok {
					out = append(out, candidate{name: n, live: strings.TrimSpace(state) == "live"})
				}
			}
		}
	}
	return out, nil
}

// hasUUID reports whether the block device directory blk is a visible namespace with UUID
// nsUUID. A device that vanished meanwhile does not match.
func hasUUID(blk, nsUUID string) (bool, error) {
	if hiddenDevice(blk) {
		return false, nil
	}
	u, err := namespaceUUID(blk)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil && strings.EqualFold(u, nsUUID), err
}

// hiddenDevice reports whether the block device directory blk says it is hidden (a multipath
// path device); unreadable means not hidden.
func hiddenDevice(blk string) bool {
	h, err := readAttr(filepath.Join(blk, "hidden"))
	return err == nil && strings.TrimSpace(h) == "1"
}

// namespaceUUID reads a namespace's UUID from its "uuid" attribute, else from its "wwid".
func namespaceUUID(blk string) (string, error) {
	u, err := readAttr(filepath.Join(blk, "uuid"))
	if err == nil {
		return strings.TrimSpace(u), nil
	}
	w, werr := readAttr(filepath.Join(blk, "wwid"))
	if werr != nil {
		return "", err
	}
	if v, ok := strings.CutPrefix(strings.TrimSpace(w), "uuid."); ok {
		return v, nil
	}
	return "", fmt.Errorf("%s has no UUID: %w", filepath.Base(blk), ErrNotFound)
}

// WaitNamespace polls FindNamespace every poll interval (zero means DefaultPollInterval)
// until the namespace appears with its device node under DevRoot, or ctx ends. Errors other than ErrNotFound end the wait at
// once; on timeout the error wraps both ErrNotFound and ctx's error.
func (in *Initiator) WaitNamespace(ctx context.Context, subsysNQN, nsUUID string, poll time.Duration) (string, error) {
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		dev, err := in.FindNamespace(subsysNQN, nsUUID)
		if err == nil {
			// sysfs shows a disk before devtmpfs has its node (device_add makes the node
			// last): a caller must be able to open what it is given.
			if _, serr := os.Stat(in.devNode(filepath.Base(dev))); serr == nil {
				return dev, nil
			} else if !errors.Is(serr, fs.ErrNotExist) {
				return "", fmt.Errorf("nvme: %s: %w", dev, serr)
			}
			err = fmt.Errorf("nvme: %s has no device node yet: %w", dev, ErrNotFound)
		}
		if !errors.Is(err, ErrNotFound) {
			return dev, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// VerifyDevice checks, right before a caller formats or mounts dev ("/dev/nvme3n1" or
// "nvme3n1"), that it still is the namespace with UUID nsUUID of subsystem subsysNQN: its own
// sysfs UUID and the NQN of the subsystem (or controller) it belongs to. A mismatch wraps
// ErrWrongDevice, a missing device ErrNotFound, a malformed name ErrInvalidOption.
func (in *Initiator) VerifyDevice(dev, subsysNQN, nsUUID string) error {
	name, err := deviceName(dev)
	if err != nil {
		return err
	}
	blk := in.sysfs("class", "block", name)
	if hiddenDevice(blk) {
		return fmt.Errorf("nvme: %s is a hidden multipath path device: %w", name, ErrWrongDevice)
	}
	u, err := namespaceUUID(blk)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("nvme: verify %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("nvme: verify %s: %w", name, err)
	}
	if !strings.EqualFold(u, nsUUID) {
		return fmt.Errorf("nvme: %s has namespace UUID %s, want %s: %w", name, u, nsUUID, ErrWrongDevice)
	}
	nqn, err := readAttr(filepath.Join(blk, "device", "subsysnqn"))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("nvme: verify %s: no subsystem: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("nvme: verify %s: %w", name, err)
	}
	if nqn = strings.TrimSpace(nqn); nqn != subsysNQN {
		return fmt.Errorf("nvme: %s belongs to %s, want %s: %w", name, nqn, subsysNQN, ErrWrongDevice)
	}
	return nil
}

// DeviceSize returns the size in bytes of a namespace block device, as the kernel currently
// sees it (watch it after Rescan).
func (in *Initiator) DeviceSize(dev string) (int64, error) {
	name, err := deviceName(dev)
	if err != nil {
		return 0, err
	}
	v, err := readAttr(in.sysfs("class", "block", name, "size"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("nvme: size of %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("nvme: size of %s: %w", name, err)
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("nvme: size of %s: %q: %w", name, v, err)
	}
	return sectors * 512, nil // sysfs counts 512-byte sectors whatever the block size
}

// deviceName turns "/dev/nvme3n1" or "nvme3n1" into "nvme3n1", refusing anything that is
// not a namespace block device name.
func deviceName(dev string) (string, error) {
	name := strings.TrimPrefix(dev, "/dev/")
	if pathRE.MatchString(name) {
		return "", fmt.Errorf("nvme: %s is a hidden multipath path device: %w", name, ErrWrongDevice)
	}
	if !headRE.MatchString(name) {
		return "", fmt.Errorf("%w: %q is not an NVMe namespace device", ErrInvalidOption, dev)
	}
	return name, nil
}

// readDirNames lists a directory's entry names; a missing directory is empty.
func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}
