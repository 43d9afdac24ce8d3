package dm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The layout of the structures in <linux/dm-ioctl.h>, in native byte order. Offsets of struct
// dm_ioctl come from golang.org/x/sys/unix.DmIoctl; the variable-length records that follow it
// (their names are flexible array members) are laid out here by hand.
var ne = binary.NativeEndian

const (
	headerSize = unix.SizeofDmIoctl // struct dm_ioctl; the payload starts here (8-aligned)

	offVersion     = unsafe.Offsetof(unix.DmIoctl{}.Version)
	offDataSize    = unsafe.Offsetof(unix.DmIoctl{}.Data_size)
	offDataStart   = unsafe.Offsetof(unix.DmIoctl{}.Data_start)
	offTargetCount = unsafe.Offsetof(unix.DmIoctl{}.Target_count)
	offOpenCount   = unsafe.Offsetof(unix.DmIoctl{}.Open_count)
	offFlags       = unsafe.Offsetof(unix.DmIoctl{}.Flags)
	offEventNr     = unsafe.Offsetof(unix.DmIoctl{}.Event_nr)
	offDev         = unsafe.Offsetof(unix.DmIoctl{}.Dev)
	offName        = unsafe.Offsetof(unix.DmIoctl{}.Name)
	offUUID        = unsafe.Offsetof(unix.DmIoctl{}.Uuid)

	// struct dm_target_spec: sector_start u64, length u64, status s32, next u32,
	// target_type[16]; the parameter string follows.
	specSize      = unix.SizeofDmTargetSpec
	offSpecStart  = unsafe.Offsetof(unix.DmTargetSpec{}.Sector_start)
	offSpecLength = unsafe.Offsetof(unix.DmTargetSpec{}.Length)
	offSpecNext   = unsafe.Offsetof(unix.DmTargetSpec{}.Next)
	offSpecType   = unsafe.Offsetof(unix.DmTargetSpec{}.Target_type)

	// struct dm_name_list: dev u64, next u32, name[] at 12; then, at the next 8-byte
	// boundary after the name's NUL, event_nr u32, flags u32 and (with
	// DM_NAME_LIST_FLAG_HAS_UUID) the uuid.
	offNameListNext = 8
	offNameListName = 12

	// struct dm_target_versions: next u32, version[3] u32, name[] at 16.
	offVersionsName = 16

	// struct dm_target_msg: sector u64, message[] at 8.
	offMsgText = 8
)

// requestVersion is the interface version every ioctl asks for. Any 4.x kernel accepts 4.0.0;
// asking for a minor version newer than the kernel's fails with EINVAL.
var requestVersion = [3]uint32{unix.DM_VERSION_MAJOR, 0, 0}

func align8(n int) int { return (n + 7) &^ 7 }

// cstr is the NUL-terminated string at the start of b (all of b if there is no NUL).
func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// header is the part of struct dm_ioctl a request sets.
type header struct {
	name, uuid  string
	flags       uint32
	targetCount uint32
	eventNr     uint32
}

// encodeRequest lays out a request of size bytes (header plus payload, room for the reply
// included). name and uuid must have been validated.
func encodeRequest(size int, h header, payload []byte) []byte {
	buf := make([]byte, size)
	for i, v := range requestVersion {
		ne.PutUint32(buf[int(offVersion)+4*i:], v)
	}
	ne.PutUint32(buf[offDataSize:], uint32(size))
	ne.PutUint32(buf[offDataStart:], headerSize)
	ne.PutUint32(buf[offTargetCount:], h.targetCount)
	ne.PutUint32(buf[offFlags:], h.flags)
	ne.PutUint32(buf[offEventNr:], h.eventNr)
	copy(buf[offName:offName+unix.DM_NAME_LEN-1], h.name)
	copy(buf[offUUID:offUUID+unix.DM_UUID_LEN-1], h.uuid)
	copy(buf[headerSize:], payload)
	return buf
}

// reply is a buffer the kernel filled in.
type reply []byte

func (r reply) flags() uint32 { return ne.Uint32(r[offFlags:]) }

func (r reply) version() Version {
	return Version{ne.Uint32(r[offVersion:]), ne.Uint32(r[offVersion+4:]), ne.Uint32(r[offVersion+8:])}
}

func (r reply) info() DeviceInfo {
	flags := r.flags()
	dev := ne.Uint64(r[offDev:])
	return DeviceInfo{
		Name:          cstr(r[offName : offName+unix.DM_NAME_LEN]),
		UUID:          cstr(r[offUUID : offUUID+unix.DM_UUID_LEN]),
		Dev:           dev,
		Major:         unix.Major(dev),
		Minor:         unix.Minor(dev),
		Suspended:     flags&unix.DM_SUSPEND_FLAG != 0,
		LiveTable:     flags&unix.DM_ACTIVE_PRESENT_FLAG != 0,
		InactiveTable: flags&unix.DM_INACTIVE_PRESENT_FLAG != 0,
		ReadOnly:      flags&unix.DM_READONLY_FLAG != 0,
		OpenCount:     int32(ne.Uint32(r[offOpenCount:])),
		EventNr:       ne.Uint32(r[offEventNr:]),
		TargetCount:   ne.Uint32(r[offTargetCount:]),
	}
}

// data is the payload the kernel wrote: from data_start to data_size.
func (r reply) data() ([]byte, error) {
	start, end := ne.Uint32(r[offDataStart:]), ne.Uint32(r[offDataSize:])
	if end < headerSize-7 || int(end) > len(r) {
		return nil, fmt.Errorf("dm: malformed reply: data_size %d outside a %d-byte buffer", end, len(r))
	}
	if start >= end {
		return nil, nil
	}
	if start < headerSize-7 {
		return nil, fmt.Errorf("dm: malformed reply: data_start %d inside the header", start)
	}
	return r[start:end], nil
}

// encodeTargets lays out a table for DM_TABLE_LOAD: one struct dm_target_spec per target,
// each followed by its NUL-terminated parameters and padding to 8 bytes; next is the distance
// from the start of this spec to the start of the next one. The table must have been
// validated.
func encodeTargets(table []Target) []byte {
	n := 0
	for _, t := range table {
		n += align8(specSize + len(t.Params) + 1)
	}
	out := make([]byte, 0, n)
	for _, t := range table {
		size := align8(specSize + len(t.Params) + 1)
		spec := make([]byte, size)
		ne.PutUint64(spec[offSpecStart:], t.Start)
		ne.PutUint64(spec[offSpecLength:], t.Length)
		ne.PutUint32(spec[offSpecNext:], uint32(size))
		copy(spec[offSpecType:offSpecType+unix.DM_MAX_TYPE_NAME-1], t.Type)
		copy(spec[specSize:], t.Params)
		out = append(out, spec...)
	}
	return out
}

// decodeTargets reads count targets from a DM_TABLE_STATUS reply. There, unlike in a load,
// next is the offset of the next spec from the start of the payload (the first spec).
func decodeTargets(data []byte, count uint32) ([]Target, error) {
	// Each target takes more than specSize bytes, so a count beyond that is malformed; the
	// capacity never trusts it.
	if uint64(count) > uint64(len(data)/specSize) {
		return nil, fmt.Errorf("dm: malformed reply: %d targets in %d bytes", count, len(data))
	}
	table := make([]Target, 0, count)
	off := 0
	for i := range count {
		if off < 0 || off+specSize > len(data) {
			return nil, fmt.Errorf("dm: malformed reply: target %d at offset %d outside %d bytes", i, off, len(data))
		}
		spec := data[off:]
		params := spec[specSize:]
		end := bytes.IndexByte(params, 0)
		if end < 0 {
			return nil, fmt.Errorf("dm: malformed reply: target %d parameters not terminated", i)
		}
		table = append(table, Target{
			Start:  ne.Uint64(spec[offSpecStart:]),
			Length: ne.Uint64(spec[offSpecLength:]),
			Type:   cstr(spec[offSpecType : offSpecType+unix.DM_MAX_TYPE_NAME]),
			Params: string(params[:end]),
		})
		next := int(ne.Uint32(spec[offSpecNext:]))
		if i+1 < count && next <= off {
			return nil, fmt.Errorf("dm: malformed reply: target %d points back to offset %d", i, next)
		}
		off = next
	}
	return table, nil
}

// decodeNameList reads a DM_LIST_DEVICES reply: struct dm_name_list records, each with next
// giving the distance to the following one (0 on the last).
func decodeNameList(data []byte) ([]Device, error) {
	if len(data) == 0 || len(data) >= 8 && ne.Uint64(data) == 0 {
		return nil, nil // no devices: an empty payload, or a first record with dev 0 ("no data")
	}
	var devs []Device
	for off := 0; ; {
		if off+offNameListName > len(data) {
			return nil, fmt.Errorf("dm: malformed device list: record at %d outside %d bytes", off, len(data))
		}
		rec := data[off:]
		next := int(ne.Uint32(rec[offNameListNext:]))
		end := len(rec)
		if next != 0 {
			if next < offNameListName+1 || next > len(rec) {
				return nil, fmt.Errorf("dm: malformed device list: record at %d has next %d", off, next)
			}
			end = next
		}
		rec = rec[:end]
		nameEnd := bytes.IndexByte(rec[offNameListName:], 0)
		if nameEnd < 0 {
			return nil, fmt.Errorf("dm: malformed device list: name at %d not terminated", off)
		}
		d := Device{Name: string(rec[offNameListName : offNameListName+nameEnd]), Dev: ne.Uint64(rec)}
		// Kernels since interface 4.37 add event_nr and flags, since 4.45 the uuid.
		if p := align8(offNameListName + nameEnd + 1); p+8 <= len(rec) {
			d.EventNr = ne.Uint32(rec[p:])
			if ne.Uint32(rec[p+4:])&unix.DM_NAME_LIST_FLAG_HAS_UUID != 0 {
				d.UUID = cstr(rec[p+8:])
			}
		}
		devs = append(devs, d)
		if next == 0 {
			return devs, nil
		}
		off += next
	}
}

// decodeVersions reads a DM_LIST_VERSIONS reply: struct dm_target_versions records linked by
// next like the device list.
func decodeVersions(data []byte) (map[string]Version, error) {
	vs := make(map[string]Version)
	if len(data) == 0 {
		return vs, nil
	}
	for off := 0; ; {
		if off+offVersionsName+1 > len(data) {
			return nil, fmt.Errorf("dm: malformed target versions: record at %d outside %d bytes", off, len(data))
		}
		rec := data[off:]
		next := int(ne.Uint32(rec))
		if next != 0 && (next < offVersionsName+1 || next > len(rec)) {
			return nil, fmt.Errorf("dm: malformed target versions: record at %d has next %d", off, next)
		}
		vs[cstr(rec[offVersionsName:])] = Version{ne.Uint32(rec[4:]), ne.Uint32(rec[8:]), ne.Uint32(rec[12:])}
		if next == 0 {
			return vs, nil
		}
		off += next
	}
}

// encodeMessage lays out struct dm_target_msg.
func encodeMessage(sector uint64, msg string) []byte {
	b := make([]byte, offMsgText+len(msg)+1)
	ne.PutUint64(b, sector)
	copy(b[offMsgText:], msg)
	return b
}
