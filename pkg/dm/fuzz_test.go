package dm

import "testing"

// The kernel's ioctl replies are decoded from raw bytes: whatever they hold, decoding returns
// an error or values inside the buffer, never a panic or a huge allocation.

func FuzzDecodeTargets(f *testing.F) {
	f.Add(encodeTargets([]Target{{Start: 0, Length: 8, Type: "thin-pool", Params: "1:2 3:4 128 0"}}), uint32(1))
	f.Add(encodeTargets([]Target{{Length: 8, Type: "linear", Params: "7:0 0"}, {Start: 8, Length: 8, Type: "zero"}}), uint32(2))
	f.Add([]byte{}, uint32(4294967295))
	f.Fuzz(func(t *testing.T, data []byte, count uint32) {
		table, err := decodeTargets(data, count)
		if err == nil && len(table) != int(count) {
			t.Fatalf("%d targets decoded, count %d", len(table), count)
		}
	})
}

func FuzzDecodeNameList(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'a', 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		devs, err := decodeNameList(data)
		if err == nil && len(devs) > len(data) {
			t.Fatalf("%d devices from %d bytes", len(devs), len(data))
		}
	})
}

func FuzzDecodeVersions(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 24))
	f.Fuzz(func(t *testing.T, data []byte) {
		vs, err := decodeVersions(data)
		if err == nil && len(vs) > len(data) {
			t.Fatalf("%d versions from %d bytes", len(vs), len(data))
		}
	})
}
