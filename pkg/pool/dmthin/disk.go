package dmthin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockIO is where the record store lives: reads and writes of whole 4 KiB blocks at 4 KiB
// offsets, from and to 4 KiB-aligned buffers (alignedBuf). A write is durable when it returns.
type blockIO interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
}

// device is one of the pool's two block devices, open for direct, synchronous I/O: every
// write reaches stable storage before it returns (O_DSYNC), and nothing is cached in the
// page cache (O_DIRECT), so what the process reads is what is on the device.
type device struct {
	path string
	f    *os.File
	// dev is the device number (st_rdev) of a block device; 0 for a regular file (tests).
	dev  uint64
	size int64
}

// openDevice opens path for the pool. A block device is opened with O_DIRECT; a regular file
// (unit tests) without it if its file system refuses O_DIRECT, still with O_DSYNC. With
// exclusive, a block device is opened O_EXCL as well, which fails (EBUSY) while anything else
// holds it: a mounted file system, a device-mapper or MD device built on it.
func openDevice(path string, exclusive bool) (*device, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	isBlock := st.Mode&unix.S_IFMT == unix.S_IFBLK
	if !isBlock && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a block device", path)
	}
	flags := os.O_RDWR | unix.O_DSYNC | unix.O_CLOEXEC
	if exclusive && isBlock {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(path, flags|unix.O_DIRECT, 0)
	if err != nil && !isBlock && errors.Is(err, unix.EINVAL) {
		f, err = os.OpenFile(path, flags, 0)
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%s is in use (mounted, or held by another device): %w", path, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: size: %w", path, err)
	}
	d := &device{path: path, f: f, size: size}
	if isBlock {
		d.dev = st.Rdev
	}
	return d, nil
}

func (d *device) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.f.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("read %s at %d: %w", d.path, off, err)
	}
	return n, nil
}

func (d *device) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write %s at %d: %w", d.path, off, err)
	}
	return n, nil
}

func (d *device) Close() error { return d.f.Close() }

// lock takes an exclusive advisory lock (flock) on the device node, held until the device is
// closed or the process dies: one process at a time may open a pool (two would interleave
// their journals).
func (d *device) lock() error {
	conn, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := conn.Control(func(fd uintptr) { lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB) }); err != nil {
		return err
	}
	if errors.Is(lerr, unix.EWOULDBLOCK) {
		return fmt.Errorf("%w: the pool on %s is open in another process (or another Pool of this one)", ErrPoolBusy, d.path)
	}
	if lerr != nil {
		return fmt.Errorf("flock %s: %w", d.path, lerr)
	}
	return nil
}

// readHead reads the first probeBytes of the device (less if it is smaller).
func (d *device) readHead() ([]byte, error) {
	n := min(int64(probeBytes), d.size/blockSize*blockSize)
	if n < 2*blockSize {
		return nil, fmt.Errorf("%s: %d bytes is too small for a pool device", d.path, d.size)
	}
	b := alignedBuf(int(n))
	if _, err := d.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// alignedBuf returns n zero bytes starting at a 4 KiB boundary, as O_DIRECT needs. (Go's
// garbage collector does not move heap objects, so the alignment holds.)
func alignedBuf(n int) []byte {
	b := make([]byte, n+blockSize)
	off := blockSize - int(uintptr(unsafe.Pointer(&b[0]))%blockSize)
	if off == blockSize {
		off = 0
	}
	return b[off : off+n : off+n]
}

// aligned copies b into an aligned buffer rounded up to whole blocks.
func aligned(b []byte) []byte {
	out := alignedBuf((len(b) + blockSize - 1) / blockSize * blockSize)
	copy(out, b)
	return out
}
