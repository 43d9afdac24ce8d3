//go:build vm

package lvm

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// newPool makes a volume group on a sparse loop file of sizeMiB on the scratch disk, with a
// thin pool over 90% of it, and removes both when the test ends.
func newPool(t *testing.T, vg string, sizeMiB int64) *lvm.Pool {
	t.Helper()
	img := filepath.Join(vmtest.ScratchDir(), vg+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dev := strings.TrimSpace(vmenv.Run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		// Best effort: a test that failed half-way may leave LVs open or active.
		if _, err := vmenv.RunE("vgremove", "--force", vg); err != nil {
			t.Log(err)
		}
		if _, err := vmenv.RunE("losetup", "--detach", dev); err != nil {
			t.Log(err)
		}
		os.Remove(img)
	})
	start := time.Now()
	if err := lvm.CreatePool(ctx(t), command.Exec{}, vg, "pool", []string{dev}, 90); err != nil {
		t.Fatalf("CreatePool: %v", err)
	}
	t.Logf("CreatePool on %s (%d MiB): %s", dev, sizeMiB, time.Since(start).Round(time.Millisecond))
	return &lvm.Pool{VG: vg, ThinPool: "pool", Runner: command.Exec{}}
}

// ctx bounds one step of a test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// pattern is n pseudo-random bytes determined by seed.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeDevice writes data at offset 0 of a block device with dd, bypassing the page cache.
func writeDevice(t *testing.T, dev string, data []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "pattern")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	vmenv.Run(t, "dd", "if="+src, "of="+dev, "bs=1M", "oflag=direct", "conv=fsync,notrunc", "status=none")
}

// readDevice reads n bytes from offset 0 of a block device with dd, bypassing the page cache.
func readDevice(t *testing.T, dev string, n int) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "read")
	vmenv.Run(t, "dd", "if="+dev, "of="+dst, "bs=1M", "count="+strconv.Itoa(n>>20), "iflag=direct", "status=none")
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectData fails the test unless the device starts with want.
func expectData(t *testing.T, dev string, want []byte, what string) {
	t.Helper()
	if got := readDevice(t, dev, len(want)); !bytes.Equal(got, want) {
		t.Errorf("%s: %s does not hold the expected data (first difference at %d)", what, dev, firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// blockSize is the size of a block device as the kernel sees it.
func blockSize(t *testing.T, dev string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(vmenv.Run(t, "blockdev", "--getsize64", dev)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// mustExist fails the test unless path exists.
func mustExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("device node: %v", err)
	}
}

// step logs how long a step took.
func step(t *testing.T, what string, start time.Time) {
	t.Helper()
	t.Logf("%-40s %s", what, time.Since(start).Round(time.Millisecond))
}
