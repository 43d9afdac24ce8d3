package thintools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tools' output is parsed as it streams: any input parses to an error or to extents that
// are non-empty, ascending, apart (coalesced) and of one block size.

func checkExtents(t *testing.T, parse func(Emit) (Superblock, error)) {
	var last Extent
	var bs uint64
	_, _ = parse(func(blockSectors uint64, e Extent) error {
		switch {
		case e.Length == 0 || e.End() < e.Begin:
			t.Fatalf("extent %+v", e)
		case last.Length != 0 && e.Begin <= last.End():
			t.Fatalf("extent %+v after %+v: not ascending and apart", e, last)
		case blockSectors == 0 || (bs != 0 && blockSectors != bs):
			t.Fatalf("block size %d after %d", blockSectors, bs)
		}
		last, bs = e, blockSectors
		return nil
	})
}

func addTestdata(f *testing.F, prefix string) {
	names, _ := filepath.Glob(filepath.Join("testdata", prefix+"*.xml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
}

func FuzzParseDelta(f *testing.F) {
	addTestdata(f, "delta")
	f.Add(`<superblock transaction="1" data_block_size="128"><diff left="1" right="2"><same begin="0" length="3"/><different begin="3" length="1"/><left_only begin="4" length="2"/></diff></superblock>`)
	f.Fuzz(func(t *testing.T, in string) {
		checkExtents(t, func(emit Emit) (Superblock, error) { return ParseDelta(strings.NewReader(in), 1, 2, emit) })
	})
}

func FuzzParseDump(f *testing.F) {
	addTestdata(f, "dump")
	f.Add(`<superblock transaction="1" data_block_size="128"><device dev_id="2"><range_mapping origin_begin="0" data_begin="7" length="3" time="0"/><single_mapping origin_block="3" data_block="1" time="0"/></device></superblock>`)
	f.Fuzz(func(t *testing.T, in string) {
		checkExtents(t, func(emit Emit) (Superblock, error) { return ParseDump(strings.NewReader(in), 2, emit) })
	})
}
