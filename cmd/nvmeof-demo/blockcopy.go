package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"k8s.io/mount-utils"
)

// The full copy moves copyChunk bytes per I/O, like `dd bs=4M iflag=direct oflag=direct`, with
// copyDepth chunks in flight so that the copy is as fast as this setup allows: the baseline
// is the best a block copy can do, not a straw man.
const (
	copyChunk = 4 << 20
	copyDepth = 4
)

// blockCopy copies the whole block device src onto dst (a device at least as large) with
// O_DIRECT on both sides. It calls done with each chunk's size and returns the bytes copied.
func blockCopy(ctx context.Context, src, dst string, done func(int64)) (int64, error) {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	size, err := in.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	if dsize, err := out.Seek(0, io.SeekEnd); err != nil || dsize < size {
		return 0, fmt.Errorf("%s holds %d bytes, %s %d: too small (%v)", dst, dsize, src, size, err)
	}
	bufs := make(chan []byte, copyDepth)
	for range copyDepth {
		b, err := alignedBuffer(copyChunk)
		if err != nil {
			return 0, err
		}
		defer func() { _ = unix.Munmap(b) }()
		bufs <- b
	}
	chunks := int((size + copyChunk - 1) / copyChunk)
	var copied atomic.Int64
	err = parallel(ctx, chunks, copyDepth, func(i int) error {
		buf := <-bufs // one per worker: never blocks
		defer func() { bufs <- buf }()
		off := int64(i) * copyChunk
		n, err := in.ReadAt(buf[:min(copyChunk, size-off)], off)
		if err != nil && err != io.EOF {
			return fmt.Errorf("reading %s: %w", src, err)
		}
		if _, err := out.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("writing %s: %w", dst, err)
		}
		copied.Add(int64(n))
		done(int64(n))
		return nil
	})
	if err != nil {
		return copied.Load(), err
	}
	return copied.Load(), out.Sync()
}

// mountedDevice returns the block device mounted at path, checked against the device number
// mountinfo gives for it.
func mountedDevice(path string) (string, error) {
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, m := range infos {
		if m.MountPoint != path {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(m.Source, &st); err != nil {
			return "", err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != uint32(m.Major) || unix.Minor(st.Rdev) != uint32(m.Minor) {
			return "", fmt.Errorf("%s is mounted from %s, which is not block device %d:%d", path, m.Source, m.Major, m.Minor)
		}
		return m.Source, nil
	}
	return "", fmt.Errorf("nothing is mounted at %s", path)
}
