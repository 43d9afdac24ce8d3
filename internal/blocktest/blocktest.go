// Package blocktest reads and writes block devices the way tests check their data: with
// O_DIRECT (past the page cache, so a read shows what the device holds), at a byte offset, in
// whole 4 KiB blocks, with deterministic pseudo-random patterns. The contract suite
// (pkg/pool/pooltest) and the VM tests share it; it needs no root by itself, and works on a
// regular file too where its file system takes O_DIRECT.
package blocktest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BlockSize is the alignment O_DIRECT needs of buffers, offsets and lengths here (a page, and
// no device the tests use has larger logical blocks).
const BlockSize = 4096

// Aligned returns n zero bytes starting at a BlockSize boundary, as O_DIRECT needs. (Go's
// garbage collector does not move heap objects, so the alignment holds.)
func Aligned(n int) []byte {
	b := make([]byte, n+BlockSize)
	off := (BlockSize - int(uintptr(unsafe.Pointer(&b[0]))%BlockSize)) % BlockSize
	return b[off : off+n : off+n]
}

// Pattern returns n pseudo-random bytes determined by seed: the same seed gives the same
// bytes, different seeds differ.
func Pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// WriteAt writes data (whole blocks) at off (a block boundary) of path with O_DIRECT, then
// flushes the device's cache (fsync).
func WriteAt(path string, off int64, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := Aligned(len(data))
	copy(buf, data)
	if _, err := f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("write %s at %d: %w", path, off, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// ReadAt reads n bytes (whole blocks) at off (a block boundary) of path with O_DIRECT.
func ReadAt(path string, off int64, n int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := Aligned(n)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("read %s at %d: %w", path, off, err)
	}
	return buf, nil
}

// Write is WriteAt that fails the test on an error.
func Write(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	if err := WriteAt(path, off, data); err != nil {
		t.Fatal(err)
	}
}

// Read is ReadAt that fails the test on an error.
func Read(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	b, err := ReadAt(path, off, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Expect marks the test failed (and goes on) unless path holds want at off; what names the
// check in the message.
func Expect(t testing.TB, path string, off int64, want []byte, what string) {
	t.Helper()
	if got := Read(t, path, off, len(want)); !bytes.Equal(got, want) {
		t.Errorf("%s: %s does not hold the expected data (first difference at byte %d)", what, path, off+int64(firstDiff(got, want)))
	}
}

// firstDiff is the index of the first byte where a and b differ (the shorter length if one
// is a prefix of the other).
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Size returns the size in bytes of the block device path as the kernel sees it
// (BLKGETSIZE64); an error, a regular file included, fails the test.
func Size(t testing.TB, path string) int64 {
	t.Helper()
	n, err := size(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func size(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0, fmt.Errorf("BLKGETSIZE64 %s: %w", path, errno)
	}
	return int64(n), nil
}
