package dmthin

import (
	"bytes"
	"encoding/binary"
)

// probeBytes is how much of the start of a device Open reads to recognize what it holds.
const probeBytes = 256 << 10

// signature is one kind of content a device may already hold, recognized by magic bytes at a
// fixed offset (the same places blkid looks).
type signature struct {
	what  string
	match func(b []byte) bool
}

// at reports whether b holds magic at off.
func at(b []byte, off int, magic string) bool {
	return off >= 0 && off+len(magic) <= len(b) && string(b[off:off+len(magic)]) == magic
}

func le16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func le64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

// foreignSignatures are the contents Open refuses to format over. The first match names what
// was found.
var foreignSignatures = []signature{
	{"an LVM2 physical volume label", func(b []byte) bool {
		// The label is in one of the first four sectors: "LABELONE", and the type
		// "LVM2 001" at +24 (what wipefs erases).
		for s := range 4 {
			if at(b, s*sector, "LABELONE") && at(b, s*sector+24, "LVM2 001") {
				return true
			}
		}
		return false
	}},
	{"a LUKS encryption header", func(b []byte) bool {
		if at(b, 0, "LUKS\xba\xbe") {
			return true
		}
		// LUKS2 keeps a second header at one of these offsets.
		for _, off := range []int{0x4000, 0x8000, 0x10000, 0x20000} {
			if at(b, off, "SKUL\xba\xbe") {
				return true
			}
		}
		return false
	}},
	{"an XFS file system", func(b []byte) bool { return at(b, 0, "XFSB") }},
	{"an ext2/ext3/ext4 file system", func(b []byte) bool {
		// The superblock is at 1024: s_magic at +56, s_log_block_size at +24 (at most 6:
		// 64 KiB blocks), s_blocks_count at +4.
		const sb = 1024
		return len(b) >= sb+1024 && le16(b, sb+56) == 0xEF53 && le32(b, sb+24) <= 6 && le32(b, sb+4) != 0
	}},
	{"a btrfs file system", func(b []byte) bool { return at(b, 0x10040, "_BHRfS_M") }},
	{"a swap area", func(b []byte) bool {
		// The signature ends the first page, of whatever size the page was.
		for _, page := range []int{4096, 8192, 16384, 65536} {
			if at(b, page-10, "SWAPSPACE2") || at(b, page-10, "SWAP-SPACE") {
				return true
			}
		}
		return false
	}},
	{"a GPT partition table", func(b []byte) bool { return at(b, 512, "EFI PART") || at(b, 4096, "EFI PART") }},
	{"an MBR partition table or boot sector (0x55AA)", func(b []byte) bool {
		return len(b) >= 512 && b[510] == 0x55 && b[511] == 0xAA
	}},
	{"an MD RAID member (superblock 1.1 or 1.2)", func(b []byte) bool {
		return len(b) >= 4100 && (le32(b, 0) == 0xa92b4efc || le32(b, 4096) == 0xa92b4efc)
	}},
	{"bcache", func(b []byte) bool {
		return at(b, 4096+24, "\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f\x48\xba\x6d\x81")
	}},
	{"dm-thin pool metadata", func(b []byte) bool {
		// struct thin_disk_superblock: magic (27022010) at byte 32 of the first block.
		return len(b) >= 40 && le64(b, 32) == 27022010
	}},
	{"an ISO 9660 file system", func(b []byte) bool { return at(b, 0x8001, "CD001") }},
}

// foreignSignature names the first foreign content b (the start of a device) holds, or "".
// Our own headers (at 0 and 4096) are not foreign; the checks above never match them (their
// bytes at the offsets checked are zero), so a device with our header and, say, an ext4
// superblock written over part of it is still refused.
func foreignSignature(b []byte) string {
	for _, s := range foreignSignatures {
		if s.match(b) {
			return s.what
		}
	}
	return ""
}

// probe is what the start of one device holds.
type probe struct {
	// hdr is our header, if a copy of it is valid; ours reports that.
	hdr  header
	ours bool
	// hdrErr says why a copy that starts with our magic is not valid, when none is.
	hdrErr error
	// foreign names content of another kind ("" if none).
	foreign string
	// blank: neither ours nor anything recognized.
	blank bool
}

// probeContent recognizes what b (the first probeBytes of a device) holds.
func probeContent(b []byte) probe {
	var p probe
	for i := range headerCopies {
		off := i * blockSize
		if off+blockSize > len(b) || !isHeader(b[off:]) {
			continue
		}
		h, err := decodeHeader(b[off : off+blockSize])
		if err != nil {
			if p.hdrErr == nil {
				p.hdrErr = err
			}
			continue
		}
		p.hdr, p.ours = h, true
		break
	}
	// Mask the valid copies of our header, so that none of their fields (the creation time
	// at byte 32, say) is ever taken for a foreign magic. A block that starts with our magic
	// but fails its checksum is not masked: whatever was written over it must show.
	masked := b
	if p.ours {
		masked = bytes.Clone(b)
		for i := range headerCopies {
			off := i * blockSize
			if off+blockSize > len(masked) {
				continue
			}
			if _, err := decodeHeader(masked[off : off+blockSize]); err == nil {
				clear(masked[off : off+blockSize])
			}
		}
	}
	p.foreign = foreignSignature(masked)
	p.blank = !p.ours && p.hdrErr == nil && p.foreign == ""
	return p
}
