package pooltest

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const blockSize = 4096

// aligned returns a zeroed, 4 KiB-aligned buffer of n bytes, as O_DIRECT needs.
func aligned(n int) []byte {
	raw := make([]byte, n+blockSize)
	off := blockSize - int(uintptr(unsafe.Pointer(&raw[0]))%blockSize)
	if off == blockSize {
		off = 0
	}
	return raw[off : off+n]
}

// pattern is 4 KiB filled with tag, so blocks written at different times differ.
func pattern(tag byte) []byte {
	b := aligned(blockSize)
	for i := range b {
		b[i] = tag ^ byte(i)
	}
	return b
}

// writeBlock writes 4 KiB of pattern(tag) at offset of the block device dev, bypassing the
// page cache, and flushes it.
func writeBlock(t testing.TB, dev string, offset int64, tag byte) {
	t.Helper()
	if err := tryWriteBlock(dev, offset, tag); err != nil {
		t.Fatal(err)
	}
}

func tryWriteBlock(dev string, offset int64, tag byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(pattern(tag), offset); err != nil {
		return fmt.Errorf("write %s at %d: %w", dev, offset, err)
	}
	return f.Sync()
}

// readBlock reads 4 KiB at offset of dev, bypassing the page cache.
func readBlock(t testing.TB, dev string, offset int64) []byte {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := aligned(blockSize)
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatalf("read %s at %d: %v", dev, offset, err)
	}
	return b
}

// wantBlock fails unless the block at offset of dev holds pattern(tag) (tag 0: zeros).
func wantBlock(t testing.TB, dev string, offset int64, tag byte, what string) {
	t.Helper()
	want := make([]byte, blockSize)
	if tag != 0 {
		want = pattern(tag)
	}
	if got := readBlock(t, dev, offset); !bytes.Equal(got, want) {
		t.Fatalf("%s: block at %d of %s holds %x…, want %x…", what, offset, dev, got[:8], want[:8])
	}
}

// deviceSize is the size of a block device in bytes.
func deviceSize(t testing.TB, dev string) int64 {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		t.Fatalf("BLKGETSIZE64 %s: %v", dev, errno)
	}
	return int64(size)
}
