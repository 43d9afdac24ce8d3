package lvm

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"pvc-6f1c2a4e", true},
		{"a+b.c_d-e", true},
		{"x", true},
		{strings.Repeat("n", MaxNameLen), true},
		{"_leading-underscore", true},
		{"my.snapshot", true}, // reserved only as a prefix
		{"", false},
		{strings.Repeat("n", MaxNameLen+1), false},
		{"-leading-dash", false},
		{".", false},
		{"..", false},
		{"...", true},
		{"has space", false},
		{"slash/inside", false},
		{"colon:", false},
		{"ünïcode", false},
		{"snapshot-1", false},
		{"pvmove0", false},
		{"data_tdata", false},
		{"x_tmeta_y", false},
		{"x_cvol", false},
		{"x_vdata", false},
		{"x_imeta", false},
		{"lvol0_pmspare", false},
		{"x_rimage_0", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, not ErrInvalidName", tt.name, err)
		}
	}
}

func TestValidateInVGLimits(t *testing.T) {
	// lvm2 2.03.16 in the test VM: "nvmeof/" + 120 characters (127) failed with "Internal
	// error: LV name ... length 129 is not supported"; see testdata/stderr/fullname-127.txt.
	vg := "nvmeof"
	longest := strings.Repeat("n", maxFullNameLen-len(vg)-1)
	if err := validateInVG(vg, longest); err != nil {
		t.Errorf("longest name refused: %v", err)
	}
	if err := validateInVG(vg, longest+"n"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("one longer: %v, want ErrInvalidName", err)
	}
	// Every '-' is doubled in the device-mapper name; testdata/stderr/dmname-long.txt is what
	// lvm does with one that is too long.
	dashes := "a" + strings.Repeat("-", 59) + "b" // dm name: 6+1+1+118+1 = 127
	if err := validateInVG(vg, dashes); err != nil {
		t.Errorf("dm name of 127 characters refused: %v", err)
	}
	if err := validateInVG(vg, "a"+strings.Repeat("-", 60)+"b"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("dm name of 129 characters: %v, want ErrInvalidName", err)
	}
	if err := validateInVG("my-vg", "my-lv"); err != nil {
		t.Error(err)
	}
	if got := dmName("my-vg", "a-b"); got != "my--vg-a--b" {
		t.Errorf("dmName = %q", got)
	}
}
