package dmthin

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// probeImage writes a 1 MiB file with the given bytes at their offsets, and returns what
// probing it finds.
func probeImage(t *testing.T, parts map[int][]byte) probe {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dev.img")
	b := make([]byte, mib)
	for off, p := range parts {
		copy(b[off:], p)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := openDevice(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	head, err := d.readHead()
	if err != nil {
		t.Fatal(err)
	}
	return probeContent(head)
}

func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// ext4 is the part of an ext4 superblock the check reads: the magic, a 4 KiB block size, a
// block count.
func ext4() map[int][]byte {
	return map[int][]byte{1024 + 4: u32(262144), 1024 + 24: u32(2), 1024 + 56: u16(0xEF53)}
}

func TestForeignSignaturesAreRecognized(t *testing.T) {
	tests := []struct {
		name  string
		parts map[int][]byte
		want  string
	}{
		{"LVM2 label in sector 1 (pvcreate)", map[int][]byte{512: []byte("LABELONE"), 512 + 24: []byte("LVM2 001")}, "LVM2"},
		{"LVM2 label in sector 3", map[int][]byte{1536: []byte("LABELONE"), 1536 + 24: []byte("LVM2 001")}, "LVM2"},
		{"ext4", ext4(), "ext2/ext3/ext4"},
		{"XFS", map[int][]byte{0: []byte("XFSB")}, "XFS"},
		{"btrfs", map[int][]byte{0x10040: []byte("_BHRfS_M")}, "btrfs"},
		{"MBR", map[int][]byte{510: {0x55, 0xAA}}, "MBR"},
		{"GPT (512-byte sectors, with its protective MBR)", map[int][]byte{510: {0x55, 0xAA}, 512: []byte("EFI PART")}, "GPT"},
		{"GPT (4 KiB sectors)", map[int][]byte{4096: []byte("EFI PART")}, "GPT"},
		{"swap (4 KiB pages)", map[int][]byte{4086: []byte("SWAPSPACE2")}, "swap"},
		{"swap (64 KiB pages)", map[int][]byte{65526: []byte("SWAPSPACE2")}, "swap"},
		{"old swap", map[int][]byte{4086: []byte("SWAP-SPACE")}, "swap"},
		{"LUKS1", map[int][]byte{0: []byte("LUKS\xba\xbe"), 6: u16(1)}, "LUKS"},
		{"LUKS2 with its first header wiped", map[int][]byte{0x4000: []byte("SKUL\xba\xbe")}, "LUKS"},
		{"MD RAID 1.2", map[int][]byte{4096: u32(0xa92b4efc)}, "MD RAID"},
		{"MD RAID 1.1", map[int][]byte{0: u32(0xa92b4efc)}, "MD RAID"},
		{"bcache", map[int][]byte{4096 + 24: []byte("\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f\x48\xba\x6d\x81")}, "bcache"},
		{"dm-thin metadata", map[int][]byte{32: u64(27022010)}, "dm-thin"},
		{"ISO 9660", map[int][]byte{0x8001: []byte("CD001")}, "ISO 9660"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := probeImage(t, tt.parts)
			if p.blank || p.ours || !strings.Contains(p.foreign, tt.want) {
				t.Fatalf("probe %+v, want foreign %q", p, tt.want)
			}
		})
	}
}

func TestBlankDevices(t *testing.T) {
	if p := probeImage(t, nil); !p.blank {
		t.Fatalf("zeroed device: %+v", p)
	}
	// Random bytes (a device used before, by something unknown) are not a signature.
	r := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, probeBytes)
	for i := range junk {
		junk[i] = byte(r.Uint32())
	}
	if p := probeImage(t, map[int][]byte{0: junk}); !p.blank {
		t.Fatalf("random device: %+v", p)
	}
	// An LVM label whose type wipefs erased is no longer a physical volume.
	if p := probeImage(t, map[int][]byte{512: []byte("LABELONE")}); !p.blank {
		t.Fatalf("a wiped LVM label: %+v", p)
	}
	// An ext4 magic alone, with an impossible block size, is not an ext4 file system.
	if p := probeImage(t, map[int][]byte{1024 + 56: u16(0xEF53), 1024 + 24: u32(77), 1024 + 4: u32(1)}); !p.blank {
		t.Fatalf("a stray 0xEF53: %+v", p)
	}
}

func testHeader(role uint32) header {
	l, err := newLayout(64*mib, 128)
	if err != nil {
		panic(err)
	}
	return header{Role: role, UUID: testUUID, Created: 27022010, Name: "nvmeof-storage1", layout: l}
}

func TestOwnHeaderIsRecognized(t *testing.T) {
	h := testHeader(roleMetadata)
	b := h.encode()
	p := probeImage(t, map[int][]byte{0: b, blockSize: b})
	if !p.ours || p.foreign != "" || p.blank || p.hdr != h {
		t.Fatalf("probe of our header: %+v", p)
	}
	// Copy 0 damaged: copy 1 still says it is ours.
	damaged := append([]byte(nil), b...)
	damaged[hdrUUID] ^= 1
	if p := probeImage(t, map[int][]byte{0: damaged, blockSize: b}); !p.ours || p.hdr != h {
		t.Fatalf("probe with copy 0 damaged: %+v", p)
	}
	// Both damaged: neither ours nor blank.
	if p := probeImage(t, map[int][]byte{0: damaged, blockSize: damaged}); p.ours || p.blank || p.hdrErr == nil {
		t.Fatalf("probe with both copies damaged: %+v", p)
	}
	// Something written over part of our header shows.
	over := append([]byte(nil), b...)
	copy(over[1024+4:], u32(262144))
	copy(over[1024+24:], u32(2))
	copy(over[1024+56:], u16(0xEF53))
	if p := probeImage(t, map[int][]byte{0: over, blockSize: b}); !p.ours || !strings.Contains(p.foreign, "ext") {
		t.Fatalf("our header with ext4 written over copy 0: %+v", p)
	}
	// Our header and a foreign signature elsewhere.
	if p := probeImage(t, map[int][]byte{0: b, blockSize: b, 0x10040: []byte("_BHRfS_M")}); !strings.Contains(p.foreign, "btrfs") {
		t.Fatalf("our header and btrfs: %+v", p)
	}
}

func TestHeaderRoundTripAndChecks(t *testing.T) {
	for _, role := range []uint32{roleMetadata, roleData} {
		h := testHeader(role)
		got, err := decodeHeader(h.encode())
		if err != nil || got != h {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, h)
		}
	}
	h := testHeader(roleMetadata)
	h.Name = strings.Repeat("n", 100)
	if got, _ := decodeHeader(h.encode()); len(got.Name) != maxNameField {
		t.Errorf("long name kept as %q", got.Name)
	}
	b := testHeader(roleMetadata).encode()
	binary.LittleEndian.PutUint32(b[hdrVersion:], 2)
	binary.LittleEndian.PutUint32(b[hdrCRC:], 0)
	if _, err := decodeHeader(b); err == nil {
		t.Error("a header with a bad checksum decoded")
	}
	bad := testHeader(roleMetadata)
	bad.JournalOff = bad.Slot1 // overlaps a slot
	if _, err := decodeHeader(bad.encode()); err == nil {
		t.Error("a header with overlapping regions decoded")
	}
}

func TestLayout(t *testing.T) {
	for _, tt := range []struct {
		meta, slot, thinOff int64
	}{
		{8 * mib, mib, 5 * mib},
		{64 * mib, 2 * mib, 9 * mib},
		{1 << 30, 32 * mib, 129 * mib},
		{16 << 30, 64 * mib, 257 * mib},
	} {
		l, err := newLayout(tt.meta, 128)
		if err != nil {
			t.Fatal(err)
		}
		if l.SlotBytes != tt.slot || l.ThinOff != tt.thinOff || l.JournalBytes != 2*tt.slot || l.check() != nil {
			t.Errorf("metadata device of %d: %+v (%v)", tt.meta, l, l.check())
		}
		if got := l.thinSectors(tt.meta); got*sector > maxThinMetadataBytes || int64(got)*sector > tt.meta-l.ThinOff {
			t.Errorf("thin metadata of %d sectors", got)
		}
	}
	if _, err := newLayout(6*mib, 128); err == nil {
		t.Error("a 6 MiB metadata device was accepted")
	}
	l, _ := newLayout(64*mib, 256)
	if got := l.dataSectors(mib + 10*128*1024 + 5000); got != 10*256 {
		t.Errorf("data sectors %d, want whole 128 KiB blocks (2560)", got)
	}
}

func TestOneOpenerAtATime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.img")
	if err := os.WriteFile(path, make([]byte, mib), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := openDevice(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.lock(); err != nil {
		t.Fatal(err)
	}
	b, err := openDevice(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.lock(); !errors.Is(err, ErrPoolBusy) {
		t.Fatalf("second lock: %v, want ErrPoolBusy", err)
	}
	a.Close()
	if err := b.lock(); err != nil {
		t.Fatalf("lock after the first holder closed: %v", err)
	}
}
