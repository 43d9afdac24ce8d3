// Package mountertest provides an in-memory mounter.Interface for unit tests of code that
// mounts: a mount table, the file systems on devices, device numbers and sizes, and a hook
// that lets a test block or fail any mutating call.
package mountertest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/mounter"
)

// Mount is one entry of the fake mount table.
type Mount struct {
	Source  string
	FSType  string
	Options []string
	// Dev is the device number the mount point reports (the device mounted or bound there).
	Dev uint64
}

// Hook is called at the start of every mutating call with its name ("FormatAndMount",
// "Mount", "Unmount", "Resize") and target path. A non-nil error fails the call. The hook may
// block; it runs without the Fake's lock held.
type Hook func(ctx context.Context, op, path string) error

// Fake is an in-memory mounter.Interface. Paths handed to it must exist on the real file
// system where the kernel would require it (mount targets), so tests use temporary
// directories; devices ("/dev/...") exist only in the Fake. The zero value is not usable: call
// New. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	hook    Hook
	mounts  map[string]Mount
	formats map[string]string
	// made records how each device was formatted.
	made    map[string]mounter.Format
	devices map[string]uint64
	sizes   map[string]int64
	calls   []string
}

var _ mounter.Interface = (*Fake)(nil)

// New returns an empty Fake.
func New() *Fake {
	return &Fake{mounts: map[string]Mount{}, formats: map[string]string{}, made: map[string]mounter.Format{},
		devices: map[string]uint64{}, sizes: map[string]int64{}}
}

// SetHook installs h (nil removes it).
func (f *Fake) SetHook(h Hook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

// SetDeviceSize sets the size of a device (and creates it).
func (f *Fake) SetDeviceSize(device string, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devNum(device)
	f.sizes[device] = size
}

// Made returns how FormatAndMount formatted device, and whether it did.
func (f *Fake) Made(device string) (mounter.Format, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.made[device]
	return m, ok
}

// SetFormat records that device holds a file system of type fsType ("" wipes it).
func (f *Fake) SetFormat(device, fsType string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.formats[device] = fsType
}

// Format returns the file system type on device.
func (f *Fake) Format(device string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.formats[device]
}

// AddMount puts an entry into the mount table, as if something else had mounted it.
func (f *Fake) AddMount(source, target, fsType string, options []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounts[target] = Mount{Source: source, FSType: fsType, Options: options, Dev: f.numOf(source)}
}

// Mounts returns a copy of the mount table.
func (f *Fake) Mounts() map[string]Mount {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]Mount, len(f.mounts))
	for k, v := range f.mounts {
		out[k] = v
	}
	return out
}

// Calls returns the mutating calls made so far, as "Op path".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// devNum returns the number of a device, assigning a new one on first use.
func (f *Fake) devNum(device string) uint64 {
	if n, ok := f.devices[device]; ok {
		return n
	}
	n := uint64(259<<8 + len(f.devices) + 1)
	f.devices[device] = n
	return n
}

// numOf is the device number of a mount source: a mount point's device, or a device's own.
func (f *Fake) numOf(source string) uint64 {
	if m, ok := f.mounts[source]; ok {
		return m.Dev
	}
	return f.devNum(source)
}

// enter runs the hook and records the call.
func (f *Fake) enter(ctx context.Context, op, path string) error {
	f.mu.Lock()
	h := f.hook
	f.calls = append(f.calls, op+" "+path)
	f.mu.Unlock()
	if h != nil {
		return h(ctx, op, path)
	}
	return ctx.Err()
}

func mustExist(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("fake mount: %w", err)
	}
	return nil
}

// FormatAndMount implements mounter.Interface.
func (f *Fake) FormatAndMount(ctx context.Context, device, target, fsType string, options []string, format mounter.Format) error {
	if err := f.enter(ctx, "FormatAndMount", target); err != nil {
		return err
	}
	if err := mustExist(target); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fsType == "" {
		fsType = "ext4"
	}
	switch have := f.formats[device]; {
	case have == "" && slices.Contains(options, "ro"):
		return fmt.Errorf("fake mount: cannot mount unformatted %s read-only", device)
	case have == "":
		f.formats[device] = fsType
		f.made[device] = format
	case have != fsType:
		return fmt.Errorf("fake mount: %s holds %s, not %s", device, have, fsType)
	}
	f.mounts[target] = Mount{Source: device, FSType: fsType, Options: options, Dev: f.devNum(device)}
	return nil
}

// GetDiskFormat implements mounter.Interface.
func (f *Fake) GetDiskFormat(ctx context.Context, device string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.formats[device], ctx.Err()
}

// Mount implements mounter.Interface. A bind mount of a mount point reports that mount's
// device; of a device node, the device.
func (f *Fake) Mount(ctx context.Context, source, target, fsType string, options []string) error {
	if err := f.enter(ctx, "Mount", target); err != nil {
		return err
	}
	if err := mustExist(target); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounts[target] = Mount{Source: source, FSType: fsType, Options: options, Dev: f.numOf(source)}
	return nil
}

// IsMountPoint implements mounter.Interface.
func (f *Fake) IsMountPoint(path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("fake: %s: %w", path, fs.ErrNotExist)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.mounts[path]
	return ok, nil
}

// Unmount implements mounter.Interface.
func (f *Fake) Unmount(ctx context.Context, target string) error {
	f.mu.Lock()
	_, mounted := f.mounts[target]
	f.mu.Unlock()
	if !mounted {
		return nil
	}
	if err := f.enter(ctx, "Unmount", target); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounts, target)
	return nil
}

// CleanupMountPoint implements mounter.Interface.
func (f *Fake) CleanupMountPoint(ctx context.Context, target string) error {
	if err := f.Unmount(ctx, target); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// DeviceNumber implements mounter.Interface: a mount point's device, a known device's
// number, else 1 (the file system of unmounted paths) for paths that exist.
func (f *Fake) DeviceNumber(path string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.mounts[path]; ok {
		return m.Dev, nil
	}
	if n, ok := f.devices[path]; ok {
		return n, nil
	}
	if _, err := os.Stat(path); err != nil {
		return 0, err
	}
	return 1, nil
}

// DeviceMounts implements mounter.Interface.
func (f *Fake) DeviceMounts(device string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.devices[device]
	if !ok {
		return nil, fmt.Errorf("fake: %s: %w", device, fs.ErrNotExist)
	}
	var out []string
	for target, m := range f.mounts {
		if m.Dev == n {
			out = append(out, target)
		}
	}
	sort.Strings(out)
	return out, nil
}

// NeedResize implements mounter.Interface: formatted and not mounted read-only.
func (f *Fake) NeedResize(ctx context.Context, device, mountPath string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.mounts[mountPath]
	return f.formats[device] != "" && !slices.Contains(m.Options, "ro"), ctx.Err()
}

// Resize implements mounter.Interface (it only records the call).
func (f *Fake) Resize(ctx context.Context, device, mountPath string) (bool, error) {
	if err := f.enter(ctx, "Resize", mountPath); err != nil {
		return false, err
	}
	return true, nil
}

// FilesystemStats implements mounter.Interface for mount points: the device's size as total
// bytes, a quarter of it used, and 1000 inodes of which 10 used.
func (f *Fake) FilesystemStats(path string) (mounter.FSStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.mounts[path]
	if !ok {
		return mounter.FSStats{}, fmt.Errorf("fake: %s is not a mount point", path)
	}
	total := f.sizeOf(m.Dev)
	return mounter.FSStats{
		TotalBytes: total, UsedBytes: total / 4, AvailableBytes: total - total/4,
		TotalInodes: 1000, UsedInodes: 10, AvailableInodes: 990,
	}, nil
}

// BlockDeviceSize implements mounter.Interface for devices and bind mounts of them.
func (f *Fake) BlockDeviceSize(path string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.mounts[path]; ok && strings.HasPrefix(m.Source, "/dev/") {
		return f.sizeOf(m.Dev), nil
	}
	if n, ok := f.devices[path]; ok {
		return f.sizeOf(n), nil
	}
	return 0, fmt.Errorf("fake: %s is not a block device", path)
}

func (f *Fake) sizeOf(dev uint64) int64 {
	for name, n := range f.devices {
		if n == dev {
			return f.sizes[name]
		}
	}
	return 0
}
