package mounter

import (
	"context"

	"k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// Format says what the device guarantees to mkfs.
type Format struct {
	// Zeroed: the device reads zeros wherever it was never written (a new thin volume: the
	// pool maps no block until it is written, and zero-fills the rest of a block it maps).
	// mkfs then writes no zeros of its own and discards nothing: ext4 gets
	// -E nodiscard,assume_storage_prezeroed=1 (e2fsprogs ≥ 1.47), which also marks the inode
	// tables as zeroed so that the kernel's lazy init never writes them; xfs gets -K.
	Zeroed bool
}

// formatOptions are mkfs's options for f.
func (f Format) formatOptions(fsType string) []string {
	if !f.Zeroed {
		return nil
	}
	switch fsType {
	case "", "ext4", "ext3":
		return []string{"-E", "nodiscard,assume_storage_prezeroed=1"}
	case "xfs":
		return []string{"-K"}
	}
	return nil
}

// Interface is what the CSI node service needs from the host. Paths are absolute. Methods
// taking a context run programs bounded by it; the others only read the kernel's state.
type Interface interface {
	// FormatAndMount mounts device at target (an existing directory) as fsType with options,
	// first creating the file system if the device has none and options do not contain "ro"
	// (with mkfs told what the device guarantees, see Format). An existing file system is
	// checked (fsck -a) before a read-write mount. It never reformats a device that holds
	// data: callers compare GetDiskFormat with fsType first.
	FormatAndMount(ctx context.Context, device, target, fsType string, options []string, f Format) error
	// GetDiskFormat returns the file system type on device ("ext4", "xfs"), "" when the
	// device holds no recognizable data, or a non-empty description for partition tables.
	GetDiskFormat(ctx context.Context, device string) (string, error)
	// Mount mounts source at target. With "bind" in options it is a bind mount; further
	// options (e.g. "ro") are applied by a bind remount, as mount(8) requires.
	Mount(ctx context.Context, source, target, fsType string, options []string) error
	// IsMountPoint reports whether path is a mount point (bind mounts included). A path that
	// does not exist yields an error wrapping fs.ErrNotExist; a corrupted mount point (e.g.
	// ENOTCONN, EIO on stat) counts as mounted, so that it gets unmounted.
	IsMountPoint(path string) (bool, error)
	// Unmount unmounts target until it is no longer a mount point (mounts can be stacked).
	// A target that is not mounted, or does not exist, is not an error. target itself is kept.
	Unmount(ctx context.Context, target string) error
	// CleanupMountPoint unmounts target like Unmount, then removes it (a directory or a
	// file). A missing target is not an error.
	CleanupMountPoint(ctx context.Context, target string) error
	// DeviceNumber returns the device number of path: the device itself for a block device
	// node (st_rdev), else the device of the file system holding path (st_dev). A mount point
	// thus reports the device mounted there, and a bind-mounted block device file the device.
	DeviceNumber(path string) (uint64, error)
	// DeviceMounts lists the mount points whose file system is on device, and the bind
	// mounts of the device node itself, as this process's mount namespace sees them.
	DeviceMounts(device string) ([]string, error)
	// NeedResize reports whether the file system on device, mounted at mountPath, may be
	// smaller than the device (false when it is mounted read-only or unformatted).
	NeedResize(ctx context.Context, device, mountPath string) (bool, error)
	// Resize grows the file system on device, mounted at mountPath, to the size of the device
	// (resize2fs for ext3/ext4, xfs_growfs for xfs) and reports whether it ran.
	Resize(ctx context.Context, device, mountPath string) (bool, error)
	// FilesystemStats returns the capacity and usage of the file system holding path.
	FilesystemStats(path string) (FSStats, error)
	// BlockDeviceSize returns the size in bytes of the block device at path (a device node or
	// a bind mount of one).
	BlockDeviceSize(path string) (int64, error)
}

// FSStats are a file system's capacity and usage, in bytes and inodes.
type FSStats struct {
	TotalBytes, AvailableBytes, UsedBytes    int64
	TotalInodes, AvailableInodes, UsedInodes int64
}

// Defaults of Options.
const (
	DefaultMaxConcurrentFormats = 2
	DefaultMountInfoPath        = "/proc/self/mountinfo"
)

// Options configure New. The zero value works on the real system.
type Options struct {
	// MaxConcurrentFormats caps how many mkfs run at once; zero means
	// DefaultMaxConcurrentFormats.
	MaxConcurrentFormats int
	// Exec runs programs; nil means the real one (k8s.io/utils/exec). Every command is bound
	// to the caller's context and gets LC_ALL=C whatever Exec is.
	Exec utilexec.Interface
	// Base answers mount point questions and lists mounts; nil means
	// mount.NewWithoutSystemd(""). Mounting and unmounting never go through it: they run
	// mount(8) and umount(8) through Exec, bounded by the context.
	Base mount.Interface
	// MountInfoPath is read by DeviceMounts; empty means DefaultMountInfoPath.
	MountInfoPath string
}

// Mounter is the real Interface. Build it once with New.
type Mounter struct {
	exec          utilexec.Interface
	base          mount.Interface
	formatSlots   chan struct{}
	mountInfoPath string
}

var _ Interface = (*Mounter)(nil)

// New returns a Mounter. Without systemd integration: block device file systems need no
// systemd scope (that is for FUSE daemons).
func New(opts Options) *Mounter {
	m := &Mounter{exec: opts.Exec, base: opts.Base, mountInfoPath: opts.MountInfoPath}
	if m.exec == nil {
		m.exec = utilexec.New()
	}
	if m.base == nil {
		m.base = mount.NewWithoutSystemd("")
	}
	if m.mountInfoPath == "" {
		m.mountInfoPath = DefaultMountInfoPath
	}
	n := opts.MaxConcurrentFormats
	if n <= 0 {
		n = DefaultMaxConcurrentFormats
	}
	m.formatSlots = make(chan struct{}, n)
	return m
}

// bound returns the exec seam for one call.
func (m *Mounter) bound(ctx context.Context) boundExec {
	return boundExec{ctx: ctx, inner: m.exec, sem: m.formatSlots}
}
