package dmthin

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
)

// Sizes of the on-disk format (see the package documentation).
const (
	blockSize = 4096
	mib       = 1 << 20
	sector    = 512

	// headerMagic opens both copies of the header of each of the pool's devices.
	headerMagic = "NVMEOFTP"
	// formatVersion is the version of the whole on-disk format.
	formatVersion = 1

	roleMetadata = 1
	roleData     = 2

	// headerCopies: the header is written at offsets 0 and blockSize of each device.
	headerCopies = 2

	// reservedBytes is the start of each device kept for the headers: the record store
	// (metadata device) and the data (data device) begin there.
	reservedBytes = 1 * mib

	// Bounds of one checkpoint slot; the journal is twice a slot.
	minSlotBytes = 1 * mib
	maxSlotBytes = 64 * mib

	// minThinMetadataBytes is the smallest thin metadata area Open formats.
	minThinMetadataBytes = 2 * mib
	// maxThinMetadataBytes is what the kernel uses of a metadata device at most
	// (THIN_METADATA_MAX_SECTORS); a larger area is mapped only up to it.
	maxThinMetadataBytes = 255 * (1 << 14) * 8 * sector

	// minDataBlocks is the least number of data blocks a data device must hold.
	minDataBlocks = 16

	// maxNameField is the size of the informational pool name field in a header.
	maxNameField = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// poolUUID identifies a pool: both its devices and every record-store block carry it.
type poolUUID [16]byte

func newPoolUUID() (poolUUID, error) {
	var u poolUUID
	if _, err := rand.Read(u[:]); err != nil {
		return u, err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}

func (u poolUUID) String() string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// hex32 is the UUID without dashes, as device-mapper UUIDs carry it.
func (u poolUUID) hex32() string { return hex.EncodeToString(u[:]) }

// layout is where everything lives on the two devices. It is fixed when the pool is formatted
// and kept in both devices' headers.
type layout struct {
	// SlotBytes is the size of each of the two checkpoint slots, at Slot0 and Slot1.
	SlotBytes, Slot0, Slot1 int64
	// JournalOff and JournalBytes place the journal ring on the metadata device.
	JournalOff, JournalBytes int64
	// ThinOff is where the thin metadata begins on the metadata device (it runs to the end
	// of the device, up to maxThinMetadataBytes).
	ThinOff int64
	// DataOff is where the data begins on the data device (it runs to the end, in whole
	// blocks).
	DataOff int64
	// BlockSectors is the pool's data block size.
	BlockSectors uint32
}

// newLayout places the record store and the thin metadata on a metadata device of metaBytes:
// one checkpoint slot is 1/32 of the device (1 to 64 MiB, whole MiB), the journal two slots.
func newLayout(metaBytes int64, blockSectors uint32) (layout, error) {
	slot := min(max(metaBytes/32/mib*mib, minSlotBytes), maxSlotBytes)
	l := layout{
		SlotBytes:    slot,
		Slot0:        reservedBytes,
		Slot1:        reservedBytes + slot,
		JournalOff:   reservedBytes + 2*slot,
		JournalBytes: 2 * slot,
		ThinOff:      reservedBytes + 4*slot,
		DataOff:      reservedBytes,
		BlockSectors: blockSectors,
	}
	if metaBytes-l.ThinOff < minThinMetadataBytes {
		return layout{}, fmt.Errorf("a metadata device of %d bytes is too small: it needs at least %d (record store %d, thin metadata %d)",
			metaBytes, l.ThinOff+minThinMetadataBytes, l.ThinOff-reservedBytes, minThinMetadataBytes)
	}
	return l, nil
}

// check reports a layout that a header cannot have come from newLayout with: a damaged or
// foreign header that passed its checksum.
func (l layout) check() error {
	switch {
	case l.SlotBytes < minSlotBytes || l.SlotBytes > maxSlotBytes || l.SlotBytes%blockSize != 0:
		return fmt.Errorf("checkpoint slot of %d bytes", l.SlotBytes)
	case l.Slot0 < reservedBytes || l.Slot1 < l.Slot0+l.SlotBytes || l.Slot0%blockSize != 0 || l.Slot1%blockSize != 0:
		return fmt.Errorf("checkpoint slots at %d and %d", l.Slot0, l.Slot1)
	case l.JournalOff < l.Slot1+l.SlotBytes || l.JournalOff%blockSize != 0 || l.JournalBytes < 4*blockSize || l.JournalBytes%blockSize != 0:
		return fmt.Errorf("journal of %d bytes at %d", l.JournalBytes, l.JournalOff)
	case l.ThinOff < l.JournalOff+l.JournalBytes || l.ThinOff%blockSize != 0:
		return fmt.Errorf("thin metadata at %d", l.ThinOff)
	case l.DataOff < 2*blockSize || l.DataOff%blockSize != 0:
		return fmt.Errorf("data at %d", l.DataOff)
	case l.BlockSectors < 128 || l.BlockSectors > 2097152 || l.BlockSectors%128 != 0:
		return fmt.Errorf("data block of %d sectors", l.BlockSectors)
	}
	return nil
}

// thinSectors is the length of the thin metadata sub-device on a metadata device of metaBytes.
func (l layout) thinSectors(metaBytes int64) uint64 {
	return uint64(min(metaBytes-l.ThinOff, maxThinMetadataBytes) / sector)
}

// dataSectors is the length of the data sub-device on a data device of dataBytes: whole
// blocks.
func (l layout) dataSectors(dataBytes int64) uint64 {
	block := int64(l.BlockSectors) * sector
	return uint64((dataBytes - l.DataOff) / block * block / sector)
}

// header is the first block (twice) of each of the pool's devices.
type header struct {
	Role    uint32
	UUID    poolUUID
	Created int64 // Unix nanoseconds
	Name    string
	layout
}

// Byte offsets in a header block.
const (
	hdrMagic     = 0
	hdrVersion   = 8
	hdrRole      = 12
	hdrUUID      = 16
	hdrCreated   = 32
	hdrBlock     = 40
	hdrFlags     = 44
	hdrSlotBytes = 48
	hdrSlot0     = 56
	hdrSlot1     = 64
	hdrJournal   = 72
	hdrJournalSz = 80
	hdrThinOff   = 88
	hdrDataOff   = 96
	hdrName      = 104
	hdrCRC       = blockSize - 4
)

// encode writes h as one header block.
func (h header) encode() []byte {
	b := make([]byte, blockSize)
	le := binary.LittleEndian
	copy(b[hdrMagic:], headerMagic)
	le.PutUint32(b[hdrVersion:], formatVersion)
	le.PutUint32(b[hdrRole:], h.Role)
	copy(b[hdrUUID:], h.UUID[:])
	le.PutUint64(b[hdrCreated:], uint64(h.Created))
	le.PutUint32(b[hdrBlock:], h.BlockSectors)
	le.PutUint64(b[hdrSlotBytes:], uint64(h.SlotBytes))
	le.PutUint64(b[hdrSlot0:], uint64(h.Slot0))
	le.PutUint64(b[hdrSlot1:], uint64(h.Slot1))
	le.PutUint64(b[hdrJournal:], uint64(h.JournalOff))
	le.PutUint64(b[hdrJournalSz:], uint64(h.JournalBytes))
	le.PutUint64(b[hdrThinOff:], uint64(h.ThinOff))
	le.PutUint64(b[hdrDataOff:], uint64(h.DataOff))
	name := h.Name
	if len(name) > maxNameField {
		name = name[:maxNameField]
	}
	copy(b[hdrName:hdrName+maxNameField], name)
	le.PutUint32(b[hdrCRC:], crc32.Checksum(b[:hdrCRC], castagnoli))
	return b
}

// isHeader reports whether b starts with the header magic (valid or not).
func isHeader(b []byte) bool { return len(b) >= 8 && string(b[:8]) == headerMagic }

// decodeHeader parses a header block.
func decodeHeader(b []byte) (header, error) {
	if len(b) < blockSize || !isHeader(b) {
		return header{}, fmt.Errorf("no pool header")
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(b[hdrCRC:]), crc32.Checksum(b[:hdrCRC], castagnoli); got != want {
		return header{}, fmt.Errorf("pool header checksum %08x, want %08x", got, want)
	}
	if v := le.Uint32(b[hdrVersion:]); v != formatVersion {
		return header{}, fmt.Errorf("pool header of format version %d; this version reads %d", v, formatVersion)
	}
	var h header
	h.Role = le.Uint32(b[hdrRole:])
	copy(h.UUID[:], b[hdrUUID:])
	h.Created = int64(le.Uint64(b[hdrCreated:]))
	h.BlockSectors = le.Uint32(b[hdrBlock:])
	h.SlotBytes = int64(le.Uint64(b[hdrSlotBytes:]))
	h.Slot0 = int64(le.Uint64(b[hdrSlot0:]))
	h.Slot1 = int64(le.Uint64(b[hdrSlot1:]))
	h.JournalOff = int64(le.Uint64(b[hdrJournal:]))
	h.JournalBytes = int64(le.Uint64(b[hdrJournalSz:]))
	h.ThinOff = int64(le.Uint64(b[hdrThinOff:]))
	h.DataOff = int64(le.Uint64(b[hdrDataOff:]))
	h.Name = string(bytes.TrimRight(b[hdrName:hdrName+maxNameField], "\x00"))
	if h.Role != roleMetadata && h.Role != roleData {
		return header{}, fmt.Errorf("pool header of unknown role %d", h.Role)
	}
	if err := h.check(); err != nil {
		return header{}, fmt.Errorf("pool header with a bad layout: %w", err)
	}
	return h, nil
}

// roleName names a header role for errors.
func roleName(r uint32) string {
	if r == roleMetadata {
		return "metadata device"
	}
	return "data device"
}
