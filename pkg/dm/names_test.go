package dm

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"pool", true},
		{"nvmeof-pool-thin-00000001", true},
		{strings.Repeat("a", 127), true},
		{".hidden", true},
		{"", false},
		{strings.Repeat("a", 128), false},
		{"a/b", false},
		{"nul\x00inside", false},
		{"control", false},
		{".", false},
		{"..", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, not ErrInvalid", tt.name, err)
		}
	}
}

func TestValidateUUID(t *testing.T) {
	tests := []struct {
		uuid string
		ok   bool
	}{
		{"", true},
		{"NVMEOF-6f1c2a9e-8d4b-4c1e-9a7f-0b2d3e4f5a6b", true},
		{strings.Repeat("u", 128), true},
		{strings.Repeat("u", 129), false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		if err := ValidateUUID(tt.uuid); (err == nil) != tt.ok {
			t.Errorf("ValidateUUID(%q) = %v, want ok=%v", tt.uuid, err, tt.ok)
		}
	}
}

func TestValidateTableRefusesWhatTheKernelWouldRefuse(t *testing.T) {
	tests := []struct {
		name  string
		table []Target
		ok    bool
	}{
		{"one target", []Target{{0, 8, "zero", ""}}, true},
		{"contiguous targets", []Target{{0, 8, "zero", ""}, {8, 16, "error", ""}}, true},
		{"type of 15 bytes", []Target{{0, 8, strings.Repeat("t", 15), ""}}, true},
		{"empty", nil, false},
		{"not starting at 0", []Target{{8, 8, "zero", ""}}, false},
		{"gap", []Target{{0, 8, "zero", ""}, {9, 8, "zero", ""}}, false},
		{"overlap", []Target{{0, 8, "zero", ""}, {4, 8, "zero", ""}}, false},
		{"zero length", []Target{{0, 0, "zero", ""}}, false},
		{"wraps past 2^64", []Target{{0, 1<<64 - 1, "zero", ""}, {1<<64 - 1, 2, "zero", ""}}, false},
		{"no type", []Target{{0, 8, "", ""}}, false},
		{"type of 16 bytes", []Target{{0, 8, strings.Repeat("t", 16), ""}}, false},
		{"NUL in params", []Target{{0, 8, "linear", "7:0\x000"}}, false},
		{"larger than the buffer limit", []Target{{0, 8, "linear", strings.Repeat("p", maxBuffer)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateTable(tt.table)
			if (err == nil) != tt.ok {
				t.Fatalf("validateTable = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("%v is not ErrInvalid", err)
			}
		})
	}
}

func TestFormatDev(t *testing.T) {
	for _, tt := range []struct {
		major, minor uint32
		want         string
	}{{253, 0, "253:0"}, {7, 3, "7:3"}, {253, 1100, "253:1100"}, {259, 1 << 19, "259:524288"}} {
		if got := FormatDev(unix.Mkdev(tt.major, tt.minor)); got != tt.want {
			t.Errorf("FormatDev(%d, %d) = %q, want %q", tt.major, tt.minor, got, tt.want)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	tests := []struct {
		v, o Version
		want bool
	}{
		{Version{4, 48, 0}, Version{4, 45, 0}, true},
		{Version{4, 48, 0}, Version{4, 48, 0}, true},
		{Version{4, 48, 0}, Version{4, 48, 1}, false},
		{Version{1, 23, 0}, Version{1, 19, 0}, true},
		{Version{1, 23, 0}, Version{2, 0, 0}, false},
		{Version{5, 0, 0}, Version{4, 99, 99}, true},
	}
	for _, tt := range tests {
		if got := tt.v.AtLeast(tt.o); got != tt.want {
			t.Errorf("%v.AtLeast(%v) = %v", tt.v, tt.o, got)
		}
	}
	if s := (Version{4, 48, 0}).String(); s != "4.48.0" {
		t.Errorf("String() = %q", s)
	}
}
