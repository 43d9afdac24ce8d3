package mounter

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FilesystemStats implements Interface with statfs(2), which answers from the file system's
// in-memory state (no device I/O).
func (m *Mounter) FilesystemStats(path string) (FSStats, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FSStats{}, fmt.Errorf("mounter: statfs %s: %w", path, err)
	}
	bs := st.Bsize
	return FSStats{
		TotalBytes:      int64(st.Blocks) * bs,
		AvailableBytes:  int64(st.Bavail) * bs,
		UsedBytes:       int64(st.Blocks-st.Bfree) * bs,
		TotalInodes:     int64(st.Files),
		AvailableInodes: int64(st.Ffree),
		UsedInodes:      int64(st.Files - st.Ffree),
	}, nil
}

// BlockDeviceSize implements Interface with the BLKGETSIZE64 ioctl.
func (m *Mounter) BlockDeviceSize(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("mounter: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("mounter: %w", err)
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return 0, fmt.Errorf("mounter: %s is not a block device", path)
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("mounter: BLKGETSIZE64 %s: %w", path, errno)
	}
	return int64(size), nil
}
