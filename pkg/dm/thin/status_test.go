package thin

import "testing"

func TestParsePoolStatusEveryForm(t *testing.T) {
	tests := []struct {
		name string
		line string
		want PoolStatus
	}{
		{"a fresh pool (6.12 writes a trailing space)", "0 11/1024 0/16384 - rw discard_passdown queue_if_no_space - 256 ",
			PoolStatus{Mode: PoolWrite, UsedMetadataBlocks: 11, TotalMetadataBlocks: 1024, TotalDataBlocks: 16384,
				Discards: DiscardPassdown, MetadataLowWatermark: 256}},
		{"held metadata root, errors when full", "42 90/1024 100/16384 17 rw no_discard_passdown error_if_no_space - 256",
			PoolStatus{Mode: PoolWrite, TransactionID: 42, UsedMetadataBlocks: 90, TotalMetadataBlocks: 1024, UsedDataBlocks: 100,
				TotalDataBlocks: 16384, HeldMetadataRoot: 17, Discards: NoDiscardPassdown, ErrorIfNoSpace: true, MetadataLowWatermark: 256}},
		{"read-only needing a check", "7 1024/1024 5/10 - ro ignore_discard queue_if_no_space needs_check 256",
			PoolStatus{Mode: PoolReadOnly, TransactionID: 7, UsedMetadataBlocks: 1024, TotalMetadataBlocks: 1024, UsedDataBlocks: 5,
				TotalDataBlocks: 10, Discards: IgnoreDiscard, NeedsCheck: true, MetadataLowWatermark: 256}},
		{"out of data space", "3 20/1024 16384/16384 - out_of_data_space discard_passdown queue_if_no_space - 256",
			PoolStatus{Mode: PoolOutOfDataSpace, TransactionID: 3, UsedMetadataBlocks: 20, TotalMetadataBlocks: 1024,
				UsedDataBlocks: 16384, TotalDataBlocks: 16384, Discards: DiscardPassdown, MetadataLowWatermark: 256}},
		{"kernel before 4.19: no metadata low watermark", "1 2/3 4/5 - rw discard_passdown queue_if_no_space -",
			PoolStatus{Mode: PoolWrite, TransactionID: 1, UsedMetadataBlocks: 2, TotalMetadataBlocks: 3, UsedDataBlocks: 4,
				TotalDataBlocks: 5, Discards: DiscardPassdown}},
		{"a field a newer kernel adds is ignored", "1 2/3 4/5 - rw discard_passdown queue_if_no_space - 6 future",
			PoolStatus{Mode: PoolWrite, TransactionID: 1, UsedMetadataBlocks: 2, TotalMetadataBlocks: 3, UsedDataBlocks: 4,
				TotalDataBlocks: 5, Discards: DiscardPassdown, MetadataLowWatermark: 6}},
		{"failed pool", "Fail", PoolStatus{Mode: PoolFail}},
		{"metadata unreadable", "Error", PoolStatus{Mode: PoolError}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePoolStatus(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParsePoolStatusRefusesMalformed(t *testing.T) {
	for _, line := range []string{
		"",
		"fail",
		"0 11/1024 0/16384 - rw discard_passdown queue_if_no_space",
		"x 11/1024 0/16384 - rw discard_passdown queue_if_no_space - 256",
		"0 11-1024 0/16384 - rw discard_passdown queue_if_no_space - 256",
		"0 11/1024 0/x - rw discard_passdown queue_if_no_space - 256",
		"0 11/1024 0/16384 root rw discard_passdown queue_if_no_space - 256",
		"0 11/1024 0/16384 - wr discard_passdown queue_if_no_space - 256",
		"0 11/1024 0/16384 - rw passdown queue_if_no_space - 256",
		"0 11/1024 0/16384 - rw discard_passdown wait_if_no_space - 256",
		"0 11/1024 0/16384 - rw discard_passdown queue_if_no_space check 256",
		"0 11/1024 0/16384 - rw discard_passdown queue_if_no_space - x",
	} {
		if got, err := ParsePoolStatus(line); err == nil {
			t.Errorf("ParsePoolStatus(%q) = %+v, want an error", line, got)
		}
	}
}

func TestParseThinStatusEveryForm(t *testing.T) {
	tests := []struct {
		line string
		want ThinStatus
	}{
		{"0 -", ThinStatus{HighestMappedSector: -1}},
		{"2048 2047", ThinStatus{MappedSectors: 2048, HighestMappedSector: 2047}},
		{"256 1048575 ", ThinStatus{MappedSectors: 256, HighestMappedSector: 1048575}},
		{"Fail", ThinStatus{Fail: true, HighestMappedSector: -1}},
		{"Error", ThinStatus{Error: true, HighestMappedSector: -1}},
		{"-", ThinStatus{Error: true, HighestMappedSector: -1}},
	}
	for _, tt := range tests {
		got, err := ParseThinStatus(tt.line)
		if err != nil || got != tt.want {
			t.Errorf("ParseThinStatus(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
	for _, line := range []string{"", "1", "x -", "1 y", "1 -5", "1 2 3"} {
		if got, err := ParseThinStatus(line); err == nil {
			t.Errorf("ParseThinStatus(%q) = %+v, want an error", line, got)
		}
	}
}
