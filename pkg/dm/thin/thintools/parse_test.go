package thintools

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// collect parses with fn and returns the extents emitted and the block size they came with.
func collect(t *testing.T, fn func(Emit) (Superblock, error)) ([]Extent, Superblock, error) {
	t.Helper()
	var got []Extent
	var bs uint64
	sb, err := fn(func(blockSectors uint64, e Extent) error {
		if bs != 0 && blockSectors != bs {
			t.Fatalf("block size changed from %d to %d", bs, blockSectors)
		}
		bs = blockSectors
		got = append(got, e)
		return nil
	})
	if err == nil && len(got) > 0 && bs != sb.DataBlockSectors {
		t.Fatalf("emitted block size %d, superblock says %d", bs, sb.DataBlockSectors)
	}
	return got, sb, err
}

func open(t *testing.T, name string) io.Reader {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The testdata files are real output of thin_dump and thin_delta 0.9.0, over metadata made by
// thin_restore from testdata/restore-small.xml (device 1 and its snapshot 2).

func TestParseDumpCoalescesTheMappingsOfThinDump(t *testing.T) {
	got, sb, err := collect(t, func(emit Emit) (Superblock, error) { return ParseDump(open(t, "dump-dev2.xml"), 2, emit) })
	if err != nil {
		t.Fatal(err)
	}
	// range 0+2, single 2, single 3 → one extent of 4 (data blocks do not matter here).
	want := []Extent{{0, 4}, {10, 1}, {15, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("extents %v, want %v", got, want)
	}
	if sb != (Superblock{Transaction: 5, DataBlockSectors: 128}) {
		t.Fatalf("superblock %+v", sb)
	}
}

func TestParseDumpOfAMissingDeviceIsErrNoDevice(t *testing.T) {
	_, _, err := collect(t, func(emit Emit) (Superblock, error) { return ParseDump(open(t, "dump-nodev.xml"), 9, emit) })
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("err = %v, want ErrNoDevice", err)
	}
	_, _, err = collect(t, func(emit Emit) (Superblock, error) { return ParseDump(open(t, "dump-dev2.xml"), 3, emit) })
	if err == nil || errors.Is(err, ErrNoDevice) {
		t.Fatalf("a dump of device 2 read as device 3: err = %v", err)
	}
}

func TestParseDeltaEmitsWhatDiffersAndSkipsWhatIsShared(t *testing.T) {
	got, _, err := collect(t, func(emit Emit) (Superblock, error) { return ParseDelta(open(t, "delta-1-2.xml"), 1, 2, emit) })
	if err != nil {
		t.Fatal(err)
	}
	// different 2, left_only 12, right_only 15; same 0+2, 3 and 10 left out.
	want := []Extent{{2, 1}, {12, 1}, {15, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("extents %v, want %v", got, want)
	}
	if _, _, err := collect(t, func(emit Emit) (Superblock, error) { return ParseDelta(open(t, "delta-1-2.xml"), 2, 1, emit) }); err == nil {
		t.Fatal("a delta of 1 → 2 was read as one of 2 → 1")
	}
}

func TestParseDeltaCoalescesAdjacentChangesOfAnyKind(t *testing.T) {
	in := `<superblock uuid="" time="1" transaction="5" data_block_size="256" nr_data_blocks="1000">
  <diff left="4" right="7">
    <different begin="0" length="2"/>
    <left_only begin="2" length="1"/>
    <right_only begin="3" length="5"/>
    <same begin="8" length="1"/>
    <different begin="9" length="1"/>
  </diff>
</superblock>
`
	got, sb, err := collect(t, func(emit Emit) (Superblock, error) { return ParseDelta(strings.NewReader(in), 4, 7, emit) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []Extent{{0, 8}, {9, 1}}; !slices.Equal(got, want) {
		t.Fatalf("extents %v, want %v", got, want)
	}
	if sb.DataBlockSectors != 256 {
		t.Fatalf("block size %d", sb.DataBlockSectors)
	}
}

func TestParsersRefuseOutputTheyDoNotUnderstand(t *testing.T) {
	const sb = `<superblock uuid="" time="1" transaction="5" data_block_size="128" nr_data_blocks="1000">`
	delta := func(body string) string { return sb + `<diff left="1" right="2">` + body + `</diff></superblock>` }
	dump := func(body string) string { return sb + `<device dev_id="2">` + body + `</device></superblock>` }
	for name, c := range map[string]struct {
		in    string
		delta bool
	}{
		"empty":                   {"", true},
		"not xml":                 {"Unable to find mapping tree for snap2 (9)", true},
		"cut short":               {sb + `<diff left="1" right="2"><different begin="2" length="1"/>`, true},
		"verbose delta":           {delta(`<different><range begin="2" left_data_begin="2" right_data_begin="30" length="1"/></different>`), true},
		"unknown entry":           {delta(`<moved begin="2" length="1"/>`), true},
		"no length":               {delta(`<different begin="2"/>`), true},
		"zero length":             {delta(`<different begin="2" length="0"/>`), true},
		"negative":                {delta(`<different begin="-2" length="1"/>`), true},
		"overflow":                {delta(`<different begin="18446744073709551615" length="2"/>`), true},
		"out of order":            {delta(`<different begin="5" length="1"/><left_only begin="2" length="1"/>`), true},
		"overlap with same":       {delta(`<same begin="0" length="4"/><different begin="3" length="1"/>`), true},
		"two diffs":               {sb + `<diff left="1" right="2"></diff><diff left="1" right="2"></diff></superblock>`, true},
		"no diff":                 {sb + `</superblock>`, true},
		"text inside":             {delta(`oops`), true},
		"element after":           {delta(``) + `<superblock/>`, true},
		"zero block size":         {strings.Replace(delta(``), `"128"`, `"0"`, 1), true},
		"huge block size":         {strings.Replace(delta(``), `"128"`, `"4194304"`, 1), true},
		"no block size":           {`<superblock transaction="1"><diff left="1" right="2"></diff></superblock>`, true},
		"dump: two devices":       {sb + `<device dev_id="2"></device><device dev_id="2"></device></superblock>`, false},
		"dump: mappings unsorted": {dump(`<single_mapping origin_block="9" data_block="1" time="0"/><single_mapping origin_block="3" data_block="2" time="0"/>`), false},
		"dump: unknown mapping":   {dump(`<block_mapping origin_block="9" data_block="1"/>`), false},
		"dump: nested":            {dump(`<single_mapping origin_block="9" data_block="1"><x/></single_mapping>`), false},
		"dump: range overflow":    {dump(`<range_mapping origin_begin="18446744073709551615" data_begin="0" length="2" time="0"/>`), false},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			emit := func(uint64, Extent) error { return nil }
			if c.delta {
				_, err = ParseDelta(strings.NewReader(c.in), 1, 2, emit)
			} else {
				_, err = ParseDump(strings.NewReader(c.in), 2, emit)
			}
			if err == nil {
				t.Fatalf("accepted %q", c.in)
			}
		})
	}
}

func TestAnEmitErrorStopsTheParseAndIsReturnedAsIs(t *testing.T) {
	stop := errors.New("client went away")
	calls := 0
	_, err := ParseDelta(open(t, "delta-1-2.xml"), 1, 2, func(uint64, Extent) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("err = %v after %d calls, want the emit error itself after 1", err, calls)
	}
}
