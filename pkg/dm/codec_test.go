package dm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The kernel's layout of struct dm_ioctl (x86-64 and every other Linux ABI: the struct has
// no padding that differs), written out by hand so the tests do not reuse the code's
// offsets.
const (
	kVersion     = 0
	kDataSize    = 12
	kDataStart   = 16
	kTargetCount = 20
	kOpenCount   = 24
	kFlags       = 28
	kEventNr     = 32
	kDev         = 40
	kName        = 48
	kUUID        = 176
	kHeader      = 312
)

var le = binary.NativeEndian

// kernelReply builds what the kernel copies back: a header with flags and the payload at
// data_start = 312.
func kernelReply(flags, targetCount uint32, payload []byte) reply {
	b := make([]byte, kHeader+len(payload)+64)
	le.PutUint32(b[kVersion:], 4)
	le.PutUint32(b[kVersion+4:], 48)
	le.PutUint32(b[kDataSize:], uint32(kHeader+len(payload)))
	le.PutUint32(b[kDataStart:], kHeader)
	le.PutUint32(b[kTargetCount:], targetCount)
	le.PutUint32(b[kFlags:], flags)
	copy(b[kHeader:], payload)
	return b
}

func TestHeaderOffsetsMatchTheKernel(t *testing.T) {
	got := []uintptr{offVersion, offDataSize, offDataStart, offTargetCount, offOpenCount, offFlags, offEventNr, offDev, offName, offUUID, headerSize}
	want := []uintptr{kVersion, kDataSize, kDataStart, kTargetCount, kOpenCount, kFlags, kEventNr, kDev, kName, kUUID, kHeader}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("struct dm_ioctl offsets %v, want %v", got, want)
	}
	if specSize != 40 || offSpecNext != 20 || offSpecType != 24 {
		t.Errorf("struct dm_target_spec: size %d, next at %d, type at %d; want 40, 20, 24", specSize, offSpecNext, offSpecType)
	}
}

func TestEncodeRequestFillsTheHeaderTheKernelReads(t *testing.T) {
	payload := []byte("payload")
	b := encodeRequest(kHeader+100, header{name: "vol-1", uuid: "NVMEOF-abc", flags: unix.DM_READONLY_FLAG, targetCount: 3, eventNr: 9}, payload)
	checks := []struct {
		what      string
		got, want uint32
	}{
		{"version major", le.Uint32(b[kVersion:]), 4},
		{"version minor (4.0 is accepted by every 4.x kernel)", le.Uint32(b[kVersion+4:]), 0},
		{"data_size", le.Uint32(b[kDataSize:]), kHeader + 100},
		{"data_start", le.Uint32(b[kDataStart:]), kHeader},
		{"target_count", le.Uint32(b[kTargetCount:]), 3},
		{"flags", le.Uint32(b[kFlags:]), unix.DM_READONLY_FLAG},
		{"event_nr", le.Uint32(b[kEventNr:]), 9},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	if got := cstr(b[kName:]); got != "vol-1" {
		t.Errorf("name %q", got)
	}
	if got := cstr(b[kUUID:]); got != "NVMEOF-abc" {
		t.Errorf("uuid %q", got)
	}
	if !bytes.Equal(b[kHeader:kHeader+len(payload)], payload) {
		t.Errorf("payload not at data_start")
	}
}

func TestEncodeRequestKeepsNamesTerminated(t *testing.T) {
	long := strings.Repeat("n", 200)
	b := encodeRequest(kHeader, header{name: long, uuid: long}, nil)
	if b[kName+127] != 0 || b[kUUID+128] != 0 {
		t.Error("name or uuid overflows its field or its NUL")
	}
}

// kernelWalkLoad reads a DM_TABLE_LOAD payload as the kernel's populate_table does: the first
// spec at data_start, each next relative to the current spec and 8-aligned, parameters
// NUL-terminated inside the buffer.
func kernelWalkLoad(t *testing.T, buf []byte, count int) []Target {
	t.Helper()
	var out []Target
	spec, next := 0, kHeader
	for i := range count {
		if next%8 != 0 {
			t.Fatalf("target %d: next %d not 8-aligned", i, next)
		}
		if len(buf)-spec-40 <= next {
			t.Fatalf("target %d: spec extends beyond the buffer", i)
		}
		spec += next
		params := buf[spec+40:]
		end := bytes.IndexByte(params, 0)
		if end < 0 {
			t.Fatalf("target %d: parameters not NUL-terminated", i)
		}
		out = append(out, Target{
			Start:  le.Uint64(buf[spec:]),
			Length: le.Uint64(buf[spec+8:]),
			Type:   cstr(buf[spec+24 : spec+40]),
			Params: string(params[:end]),
		})
		next = int(le.Uint32(buf[spec+20:]))
	}
	return out
}

func TestTableLoadPayloadRoundTripsThroughTheKernelsWalk(t *testing.T) {
	tests := []struct {
		name  string
		table []Target
	}{
		{"one linear target", []Target{{0, 2048, "linear", "7:0 0"}}},
		{"parameters that fill the 8-byte padding exactly", []Target{{0, 8, "error", "1234567"}, {8, 8, "zero", ""}}},
		{"thin pool with features", []Target{{0, 2097152, "thin-pool", "7:1 7:2 128 0 1 skip_block_zeroing"}}},
		{"three targets of odd sizes", []Target{{0, 1, "linear", "7:0 0"}, {1, 100, "linear", "7:0 12345"}, {101, 7, "error", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validateTable(tt.table); err != nil {
				t.Fatal(err)
			}
			payload := encodeTargets(tt.table)
			if len(payload)%8 != 0 {
				t.Errorf("payload of %d bytes is not a whole number of 8-byte units", len(payload))
			}
			buf := encodeRequest(kHeader+len(payload), header{name: "d", targetCount: uint32(len(tt.table))}, payload)
			if got := kernelWalkLoad(t, buf, len(tt.table)); !reflect.DeepEqual(got, tt.table) {
				t.Errorf("kernel reads %+v, want %+v", got, tt.table)
			}
		})
	}
}

func TestTableLoadPayloadByteLayout(t *testing.T) {
	got := encodeTargets([]Target{{Start: 0, Length: 16, Type: "linear", Params: "7:0 0"}})
	want := make([]byte, 48) // 40-byte spec + "7:0 0\0" padded to 8
	le.PutUint64(want[8:], 16)
	le.PutUint32(want[20:], 48)
	copy(want[24:], "linear")
	copy(want[40:], "7:0 0")
	if !bytes.Equal(got, want) {
		t.Errorf("payload\n got %x\nwant %x", got, want)
	}
}

// statusPayload lays out a DM_TABLE_STATUS reply as the kernel's retrieve_status does: specs
// with their strings, 8-aligned, next counted from the first spec.
func statusPayload(table []Target) []byte {
	var b []byte
	for _, t := range table {
		spec := make([]byte, 40)
		le.PutUint64(spec, t.Start)
		le.PutUint64(spec[8:], t.Length)
		copy(spec[24:], t.Type)
		b = append(b, spec...)
		b = append(b, t.Params...)
		b = append(b, 0)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		le.PutUint32(b[len(b)-align8(40+len(t.Params)+1)+20:], uint32(len(b)))
	}
	return b
}

func TestStatusReplyDecodes(t *testing.T) {
	many := make([]Target, 1100)
	for i := range many {
		many[i] = Target{uint64(i) * 8, 8, "linear", fmt.Sprintf("7:0 %d", i*8)}
	}
	tests := []struct {
		name  string
		table []Target
	}{
		{"no live table", nil},
		{"thin pool status", []Target{{0, 2097152, "thin-pool", "1 11/1024 0/16384 - rw discard_passdown queue_if_no_space - 256 "}}},
		{"a target with an empty status", []Target{{0, 8, "error", ""}, {8, 8, "linear", "7:0 0"}}},
		{"1100 targets", many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kernelReply(unix.DM_ACTIVE_PRESENT_FLAG, uint32(len(tt.table)), statusPayload(tt.table))
			data, err := r.data()
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeTargets(data, r.info().TargetCount)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.table) || len(got) > 0 && !reflect.DeepEqual(got, tt.table) {
				t.Errorf("decoded %d targets %+v, want %+v", len(got), got, tt.table)
			}
		})
	}
}

func TestStatusReplyMalformedIsAnErrorNotAPanic(t *testing.T) {
	good := statusPayload([]Target{{0, 8, "linear", "7:0 0"}, {8, 8, "linear", "7:0 8"}})
	tests := []struct {
		name  string
		data  []byte
		count uint32
	}{
		{"more targets than data", good, 3},
		{"truncated spec", good[:30], 1},
		{"unterminated parameters", good[:45], 1},
		{"next pointing backwards", func() []byte {
			b := bytes.Clone(good)
			le.PutUint32(b[20:], 0)
			return b
		}(), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeTargets(tt.data, tt.count); err == nil {
				t.Error("no error")
			}
		})
	}
}

// nameListPayload lays out a DM_LIST_DEVICES reply as the kernel's list_devices does (with
// DM_UUID_FLAG), or, with old set, as kernels before event numbers did.
func nameListPayload(devs []Device, old bool) []byte {
	var b []byte
	prev := -1
	for _, d := range devs {
		start := len(b)
		if prev >= 0 {
			le.PutUint32(b[prev+8:], uint32(start-prev))
		}
		rec := make([]byte, 12)
		le.PutUint64(rec, d.Dev)
		b = append(b, rec...)
		b = append(b, d.Name...)
		b = append(b, 0)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		if !old {
			var tail [8]byte
			le.PutUint32(tail[:], d.EventNr)
			flag := uint32(unix.DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID)
			if d.UUID != "" {
				flag = unix.DM_NAME_LIST_FLAG_HAS_UUID
			}
			le.PutUint32(tail[4:], flag)
			b = append(b, tail[:]...)
			if d.UUID != "" {
				b = append(b, d.UUID...)
				b = append(b, 0)
				for len(b)%8 != 0 {
					b = append(b, 0)
				}
			}
		}
		prev = start
	}
	return b
}

func TestDeviceListDecodes(t *testing.T) {
	many := make([]Device, 1100)
	for i := range many {
		many[i] = Device{Name: fmt.Sprintf("pool-thin-%05d", i), UUID: fmt.Sprintf("NVMEOF-%032x", i), Dev: unix.Mkdev(253, uint32(i)), EventNr: uint32(i % 3)}
	}
	tests := []struct {
		name string
		devs []Device
		old  bool
	}{
		{"no devices", nil, false},
		{"with and without uuid", []Device{
			{Name: "a", UUID: "NVMEOF-1", Dev: unix.Mkdev(253, 0), EventNr: 2},
			{Name: "name-of-seven", Dev: unix.Mkdev(253, 1)},
			{Name: strings.Repeat("x", 127), UUID: strings.Repeat("u", 128), Dev: unix.Mkdev(253, 300), EventNr: 1},
		}, false},
		{"old kernel without event numbers", []Device{{Name: "a", Dev: unix.Mkdev(253, 0)}, {Name: "bcdefghijk", Dev: unix.Mkdev(253, 1)}}, true},
		{"1100 devices", many, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kernelReply(0, 0, nameListPayload(tt.devs, tt.old))
			data, err := r.data()
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeNameList(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.devs) || len(got) > 0 && !reflect.DeepEqual(got, tt.devs) {
				t.Errorf("decoded %+v, want %+v", got, tt.devs)
			}
		})
	}
}

func TestDeviceListMalformedIsAnErrorNotAPanic(t *testing.T) {
	good := nameListPayload([]Device{{Name: "a", Dev: 1}, {Name: "b", Dev: 2}}, false)
	tests := map[string][]byte{
		"next beyond the data": func() []byte { b := bytes.Clone(good); le.PutUint32(b[8:], 4096); return b }(),
		"name not terminated": func() []byte {
			b := bytes.Clone(good[:16])
			le.PutUint32(b[8:], 0)
			copy(b[12:], "abcd")
			return b
		}(),
		"short record": {1, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeNameList(data); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestTargetVersionsDecode(t *testing.T) {
	var b []byte
	for i, v := range []struct {
		name string
		ver  [3]uint32
	}{{"thin-pool", [3]uint32{1, 23, 0}}, {"linear", [3]uint32{1, 4, 0}}, {"thin", [3]uint32{1, 23, 0}}} {
		rec := make([]byte, align8(16+len(v.name)+1))
		if i < 2 {
			le.PutUint32(rec, uint32(len(rec)))
		}
		for j, x := range v.ver {
			le.PutUint32(rec[4+4*j:], x)
		}
		copy(rec[16:], v.name)
		b = append(b, rec...)
	}
	got, err := decodeVersions(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Version{"thin-pool": {1, 23, 0}, "linear": {1, 4, 0}, "thin": {1, 23, 0}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestReplyHeaderBecomesDeviceInfo(t *testing.T) {
	r := kernelReply(unix.DM_SUSPEND_FLAG|unix.DM_ACTIVE_PRESENT_FLAG|unix.DM_INACTIVE_PRESENT_FLAG|unix.DM_READONLY_FLAG, 1, nil)
	le.PutUint32(r[kOpenCount:], 2)
	le.PutUint32(r[kEventNr:], 7)
	le.PutUint64(r[kDev:], unix.Mkdev(253, 1025))
	copy(r[kName:], "pool")
	copy(r[kUUID:], "NVMEOF-pool")
	want := DeviceInfo{Name: "pool", UUID: "NVMEOF-pool", Dev: unix.Mkdev(253, 1025), Major: 253, Minor: 1025,
		Suspended: true, LiveTable: true, InactiveTable: true, ReadOnly: true, OpenCount: 2, EventNr: 7, TargetCount: 1}
	if got := r.info(); got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got := r.version(); got != (Version{4, 48, 0}) {
		t.Errorf("version %v", got)
	}
}

func TestReplyDataBounds(t *testing.T) {
	r := kernelReply(0, 0, []byte("abc"))
	le.PutUint32(r[kDataSize:], uint32(len(r)+1))
	if _, err := r.data(); err == nil {
		t.Error("data_size beyond the buffer: no error")
	}
	le.PutUint32(r[kDataSize:], 305) // offsetof(struct dm_ioctl, data): no payload
	if d, err := r.data(); err != nil || len(d) != 0 {
		t.Errorf("no payload: %q, %v", d, err)
	}
}

func TestMessagePayloadLayout(t *testing.T) {
	got := encodeMessage(2048, "create_thin 5")
	want := append(binary.NativeEndian.AppendUint64(nil, 2048), "create_thin 5\x00"...)
	if !bytes.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
