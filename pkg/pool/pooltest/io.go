package pooltest

import (
	"bytes"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
)

// pattern is the 4 KiB block the suite writes for tag, so blocks written at different times
// differ.
func pattern(tag byte) []byte { return blocktest.Pattern(uint64(tag), blocktest.BlockSize) }

// writeBlock writes pattern(tag) at offset of the block device dev, bypassing the page cache,
// and flushes it.
func writeBlock(t testing.TB, dev string, offset int64, tag byte) {
	t.Helper()
	blocktest.Write(t, dev, offset, pattern(tag))
}

// wantBlock fails unless the block at offset of dev holds pattern(tag) (tag 0: zeros).
func wantBlock(t testing.TB, dev string, offset int64, tag byte, what string) {
	t.Helper()
	want := make([]byte, blocktest.BlockSize)
	if tag != 0 {
		want = pattern(tag)
	}
	if got := blocktest.Read(t, dev, offset, blocktest.BlockSize); !bytes.Equal(got, want) {
		t.Fatalf("%s: block at %d of %s holds %x…, want %x…", what, offset, dev, got[:8], want[:8])
	}
}
