package blocktest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAlignedIsZeroedAndOnABlockBoundary(t *testing.T) {
	for _, n := range []int{0, 1, 512, BlockSize, 3*BlockSize + 1, 1 << 20} {
		b := Aligned(n)
		if len(b) != n || cap(b) != n {
			t.Errorf("Aligned(%d): len %d cap %d", n, len(b), cap(b))
		}
		if n > 0 && uintptr(unsafe.Pointer(&b[0]))%BlockSize != 0 {
			t.Errorf("Aligned(%d) starts at %p", n, &b[0])
		}
		if !bytes.Equal(b, make([]byte, n)) {
			t.Errorf("Aligned(%d) is not zeroed", n)
		}
	}
}

func TestPatternIsDeterministicPerSeed(t *testing.T) {
	a, again, other := Pattern(1, 8192), Pattern(1, 8192), Pattern(2, 8192)
	if !bytes.Equal(a, again) {
		t.Error("the same seed gave different bytes")
	}
	if bytes.Equal(a, other) {
		t.Error("seeds 1 and 2 gave the same bytes")
	}
	if !bytes.Equal(Pattern(1, 100), a[:100]) {
		t.Error("a shorter pattern is not a prefix of a longer one of the same seed")
	}
	if zeros := bytes.Count(a, []byte{0}); zeros > len(a)/64 {
		t.Errorf("%d of %d bytes are zero: not a pattern a blank device could pass for", zeros, len(a))
	}
}

// file is a regular file of n zero bytes in the test's temporary directory.
func file(t *testing.T, n int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dev")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteAndReadAtAnOffsetWithODirect(t *testing.T) {
	path := file(t, 1<<20)
	data := Pattern(7, 3*BlockSize)
	// An unaligned slice of the caller: WriteAt copies it into an aligned buffer.
	unaligned := append(make([]byte, 1), data...)[1:]
	if err := WriteAt(path, 2*BlockSize, unaligned); err != nil {
		t.Fatalf("WriteAt (is the temporary directory on a file system without O_DIRECT, such as tmpfs before Linux 6.6?): %v", err)
	}
	if got := Read(t, path, 2*BlockSize, len(data)); !bytes.Equal(got, data) {
		t.Error("ReadAt does not return what WriteAt wrote")
	}
	if got := Read(t, path, 0, 2*BlockSize); !bytes.Equal(got, make([]byte, 2*BlockSize)) {
		t.Error("WriteAt wrote before its offset")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[2*BlockSize:5*BlockSize], data) {
		t.Error("a buffered read does not see what WriteAt wrote")
	}
}

func TestReadAndWriteErrors(t *testing.T) {
	path := file(t, 4*BlockSize)
	if _, err := ReadAt(path, 4*BlockSize, BlockSize); err == nil {
		t.Error("ReadAt past the end succeeded")
	}
	if err := WriteAt(path, 1, make([]byte, BlockSize)); !errors.Is(err, unix.EINVAL) {
		t.Errorf("WriteAt at an unaligned offset = %v, want EINVAL (O_DIRECT)", err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if err := WriteAt(missing, 0, make([]byte, BlockSize)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteAt of a missing file = %v, want ErrNotExist (WriteAt never creates)", err)
	}
}

// recorder keeps what Errorf reports; everything else goes to the real test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestExpectNamesTheFirstDifference(t *testing.T) {
	path := file(t, 1<<20)
	data := Pattern(3, 2*BlockSize)
	Write(t, path, BlockSize, data)

	r := &recorder{TB: t}
	Expect(r, path, BlockSize, data, "same")
	if len(r.errs) != 0 {
		t.Errorf("Expect of the written data: %q", r.errs)
	}
	other := bytes.Clone(data)
	other[5000] ^= 0xff
	Expect(r, path, BlockSize, other, "changed")
	if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], "changed: ") || !strings.Contains(r.errs[0], fmt.Sprint(BlockSize+5000)) {
		t.Errorf("Expect of other data: %q, want one error naming byte %d", r.errs, BlockSize+5000)
	}
}

func TestSizeIsForBlockDevices(t *testing.T) {
	_, err := size(file(t, 1<<20))
	if !errors.Is(err, unix.ENOTTY) || !strings.Contains(err.Error(), "BLKGETSIZE64") {
		t.Errorf("size of a regular file = %v, want ENOTTY from BLKGETSIZE64", err)
	}
	if _, err := size(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("size of a missing file = %v", err)
	}
}
