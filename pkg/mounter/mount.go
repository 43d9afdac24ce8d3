package mounter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/mount-utils"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// maxStackedMounts bounds Unmount's loop over mounts stacked on one target.
const maxStackedMounts = 8

// FormatAndMount implements Interface with mount-utils' SafeFormatAndMount, whose blkid, fsck,
// mkfs and mount all run through the bound exec seam.
func (m *Mounter) FormatAndMount(ctx context.Context, device, target, fsType string, options []string, f Format) error {
	sfm := &mount.SafeFormatAndMount{Interface: boundMounter{Interface: m.base, m: m, ctx: ctx}, Exec: m.bound(ctx)}
	if err := sfm.FormatAndMountSensitiveWithFormatOptions(device, target, fsType, options, nil, f.formatOptions(fsType)); err != nil {
		return fmt.Errorf("mounter: format and mount %s at %s: %w", device, target, classifyMountError(err))
	}
	return nil
}

// classifyMountError gives a failed probe, fsck, mkfs or mount its class by mount-utils'
// error type, never by the programs' words (README "Node errors"): a file system that is not
// the one asked for, has errors fsck cannot repair, or that mkfs or mount refuse is
// FailedPrecondition; the call's end is its own. Whether the device was unreadable because
// its paths are down is for the caller, who knows the paths, to tell (Unavailable).
func classifyMountError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	var me mount.MountError
	if errors.As(err, &me) {
		switch me.Type {
		case mount.FilesystemMismatch:
			return fmt.Errorf("%w: the device holds another file system (%w)", rpcerr.ErrPrecondition, err)
		case mount.HasFilesystemErrors:
			return fmt.Errorf("%w: the file system has errors fsck cannot repair unattended; repair it by hand (%w)", rpcerr.ErrPrecondition, err)
		}
	}
	return fmt.Errorf("%w: the file system could not be made or mounted (%w)", rpcerr.ErrPrecondition, err)
}

// GetDiskFormat implements Interface (blkid).
func (m *Mounter) GetDiskFormat(ctx context.Context, device string) (string, error) {
	sfm := &mount.SafeFormatAndMount{Interface: m.base, Exec: m.bound(ctx)}
	format, err := sfm.GetDiskFormat(device)
	if err != nil {
		return "", fmt.Errorf("mounter: probing %s: %w", device, err)
	}
	return format, nil
}

// Mount implements Interface.
func (m *Mounter) Mount(ctx context.Context, source, target, fsType string, options []string) error {
	if err := m.mount(ctx, source, target, fsType, options, nil); err != nil {
		return classifyMountError(err)
	}
	return nil
}

// mount runs mount(8), twice for a bind mount with options (bind, then bind remount with the
// options and the source's own restrictive flags, which a remount must repeat).
func (m *Mounter) mount(ctx context.Context, source, target, fsType string, options, flags []string) error {
	bind, bindOpts, remountOpts := mount.MakeBindOpts(options)
	if !bind {
		return m.runMount(ctx, source, target, fsType, options, flags)
	}
	if err := m.runMount(ctx, source, target, fsType, bindOpts, flags); err != nil {
		return err
	}
	if len(remountOpts) <= 2 { // just "bind", "remount": the bind already has the source's flags
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(source, &st); err != nil {
		return fmt.Errorf("mounter: statfs %s: %w", source, err)
	}
	return m.runMount(ctx, source, target, fsType, append(remountOpts, restrictiveFlags(st.Flags)...), flags)
}

// restrictiveFlags maps statfs flags to the mount options a bind remount must keep.
func restrictiveFlags(flags int64) []string {
	var out []string
	for _, f := range []struct {
		bit  int64
		name string
	}{
		{unix.ST_RDONLY, "ro"}, {unix.ST_NODEV, "nodev"}, {unix.ST_NOEXEC, "noexec"},
		{unix.ST_NOSUID, "nosuid"}, {unix.ST_NOATIME, "noatime"}, {unix.ST_RELATIME, "relatime"},
		{unix.ST_NODIRATIME, "nodiratime"},
	} {
		if flags&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

func (m *Mounter) runMount(ctx context.Context, source, target, fsType string, options, flags []string) error {
	args, _ := mount.MakeMountArgsSensitiveWithMountFlags(source, target, fsType, options, nil, flags)
	out, err := m.bound(ctx).Command("mount", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mounter: mount %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (m *Mounter) runUnmount(ctx context.Context, target string) error {
	out, err := m.bound(ctx).Command("umount", target).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mounter: umount %s: %w: %s", target, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// IsMountPoint implements Interface.
func (m *Mounter) IsMountPoint(path string) (bool, error) {
	mounted, err := m.base.IsMountPoint(path)
	switch {
	case err == nil:
		return mounted, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("mounter: %s: %w", path, fs.ErrNotExist)
	case mount.IsCorruptedMnt(err):
		return true, nil
	}
	return false, fmt.Errorf("mounter: is %s a mount point: %w", path, err)
}

// Unmount implements Interface.
func (m *Mounter) Unmount(ctx context.Context, target string) error {
	for range maxStackedMounts {
		mounted, err := m.IsMountPoint(target)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !mounted) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := m.runUnmount(ctx, target); err != nil {
			return err
		}
	}
	return fmt.Errorf("mounter: %s is still mounted after %d unmounts", target, maxStackedMounts)
}

// CleanupMountPoint implements Interface.
func (m *Mounter) CleanupMountPoint(ctx context.Context, target string) error {
	if err := m.Unmount(ctx, target); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mounter: %w", err)
	}
	return nil
}

// DeviceNumber implements Interface.
func (m *Mounter) DeviceNumber(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("mounter: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return st.Rdev, nil
	}
	return st.Dev, nil
}

// DeviceMounts implements Interface from mountinfo: entries whose file system device is the
// device, and bind mounts of its node (a devtmpfs entry rooted at the node's name).
func (m *Mounter) DeviceMounts(device string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		return nil, fmt.Errorf("mounter: stat %s: %w", device, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fmt.Errorf("mounter: %s is not a block device", device)
	}
	infos, err := mount.ParseMountInfo(m.mountInfoPath)
	if err != nil {
		return nil, fmt.Errorf("mounter: %w", err)
	}
	real, err := filepath.EvalSymlinks(device)
	if err != nil {
		return nil, fmt.Errorf("mounter: %w", err)
	}
	return deviceMountPoints(infos, int(unix.Major(st.Rdev)), int(unix.Minor(st.Rdev)), filepath.Base(real)), nil
}

// deviceMountPoints picks the mount points of device major:minor (named node in /dev) from
// mountinfo entries.
func deviceMountPoints(infos []mount.MountInfo, major, minor int, node string) []string {
	var out []string
	for _, mi := range infos {
		if (mi.Major == major && mi.Minor == minor) || (mi.FsType == "devtmpfs" && mi.Root == "/"+node) {
			out = append(out, mi.MountPoint)
		}
	}
	return out
}

// boundMounter is the mount.Interface handed to SafeFormatAndMount: queries go to the base,
// mounting and unmounting through the bound exec seam.
type boundMounter struct {
	mount.Interface
	m   *Mounter
	ctx context.Context
}

// Mount runs mount(8) through the bound exec seam.
func (b boundMounter) Mount(source, target, fsType string, options []string) error {
	return b.m.mount(b.ctx, source, target, fsType, options, nil)
}

// MountSensitive is Mount; this package passes no sensitive options.
func (b boundMounter) MountSensitive(source, target, fsType string, options, sensitive []string) error {
	return b.m.mount(b.ctx, source, target, fsType, slices.Concat(options, sensitive), nil)
}

// MountSensitiveWithoutSystemd is Mount (the Mounter never uses systemd).
func (b boundMounter) MountSensitiveWithoutSystemd(source, target, fsType string, options, sensitive []string) error {
	return b.m.mount(b.ctx, source, target, fsType, slices.Concat(options, sensitive), nil)
}

// MountSensitiveWithoutSystemdWithMountFlags is Mount with extra mount(8) flags.
func (b boundMounter) MountSensitiveWithoutSystemdWithMountFlags(source, target, fsType string, options, sensitive, flags []string) error {
	return b.m.mount(b.ctx, source, target, fsType, slices.Concat(options, sensitive), flags)
}

// Unmount runs umount(8) through the bound exec seam.
func (b boundMounter) Unmount(target string) error { return b.m.runUnmount(b.ctx, target) }
