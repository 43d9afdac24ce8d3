package thin

import (
	"strings"
	"testing"
)

// Tables and status lines come from the kernel: any line parses to an error or to values
// that make a table the kernel would accept again.

func FuzzParsePoolTable(f *testing.F) {
	f.Add("253:1 253:2 128 32768 1 skip_block_zeroing")
	f.Add("253:1 253:2 128 0 3 skip_block_zeroing error_if_no_space no_discard_passdown")
	f.Add("a b c d 99")
	f.Fuzz(func(t *testing.T, params string) {
		pt, err := ParsePoolTable(params)
		if err != nil {
			return
		}
		if tgt, err := pt.Target(1 << 20); err == nil {
			if _, err := ParsePoolTable(tgt.Params); err != nil {
				t.Fatalf("ParsePoolTable(%q) = %+v, whose table %q does not parse: %v", params, pt, tgt.Params, err)
			}
		}
	})
}

func FuzzParseThinTable(f *testing.F) {
	f.Add("253:3 7")
	f.Add("253:3 16777215 7:0")
	f.Add("x 99999999999")
	f.Fuzz(func(t *testing.T, params string) {
		tt, err := ParseThinTable(params)
		if err != nil {
			return
		}
		if tt.ID > MaxDevID {
			t.Fatalf("ParseThinTable(%q) accepted device id %d", params, tt.ID)
		}
		if tgt, err := tt.Target(8); err == nil {
			back, err := ParseThinTable(tgt.Params)
			if err != nil || back != tt {
				t.Fatalf("ParseThinTable(%q) = %+v; its table %q parses to %+v, %v", params, tt, tgt.Params, back, err)
			}
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add("1 279/4161600 0/38912 - rw no_discard_passdown queue_if_no_space - 1024")
	f.Add("Fail")
	f.Add("0 0/0 0/0 - ro discard_passdown error_if_no_space needs_check")
	f.Add("1024 2047")
	f.Add("-")
	f.Fuzz(func(t *testing.T, line string) {
		if ps, err := ParsePoolStatus(line); err == nil && !strings.Contains(line, string(ps.Mode)) {
			t.Fatalf("ParsePoolStatus(%q) made up mode %q", line, ps.Mode)
		}
		_, _ = ParseThinStatus(line)
	})
}
