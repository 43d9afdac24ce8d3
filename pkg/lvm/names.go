package lvm

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest LV or VG name LVM accepts on its own.
const MaxNameLen = 127

// Limits LVM puts on the names it derives from an LV name (measured with lvm2 2.03.16): the
// full name "<vg>/<lv>" (lvcreate fails with "Internal error: LV name ... length N is not
// supported" once it is longer than maxFullNameLen), and the device-mapper name "<vg>-<lv>"
// with each '-' doubled (longer than maxDMNameLen, lvcreate writes the LV's metadata and
// then fails to activate it).
const (
	maxFullNameLen = 125
	maxDMNameLen   = 127
)

// reservedPrefixes and reservedSubstrings are the names LVM keeps for its own LVs (lvm2
// lib/misc/lvm-string.c and later releases' additions).
var (
	reservedPrefixes   = []string{"snapshot", "pvmove"}
	reservedSubstrings = []string{
		"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig", "_mimage", "_mlog",
		"_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
	}
)

// ValidateName checks an LV name against LVM's rules before any lvm command sees it: 1 to
// MaxNameLen characters from [a-zA-Z0-9+_.-], not starting with '-', not "." or "..", no
// reserved prefix ("snapshot", "pvmove") and no reserved infix such as "_tdata". The error
// wraps ErrInvalidName.
func ValidateName(name string) error {
	if err := validateVGName(name); err != nil {
		return err
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("%w: %q: names starting with %q are reserved", ErrInvalidName, name, p)
		}
	}
	for _, s := range reservedSubstrings {
		if strings.Contains(name, s) {
			return fmt.Errorf("%w: %q: names containing %q are reserved", ErrInvalidName, name, s)
		}
	}
	return nil
}

// validateVGName checks the rules LV and VG names share.
func validateVGName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %q is longer than %d characters", ErrInvalidName, name, MaxNameLen)
	case name[0] == '-':
		return fmt.Errorf("%w: %q starts with '-'", ErrInvalidName, name)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return fmt.Errorf("%w: %q contains %q (allowed: a-z A-Z 0-9 + _ . -)", ErrInvalidName, name, name[i])
		}
	}
	return nil
}

func isNameChar(c byte) bool {
	return isAlnum(c) || c == '+' || c == '_' || c == '.' || c == '-'
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validateInVG checks that name is a valid LV name that also fits, with the VG's name, in
// the full and device-mapper names LVM builds from it.
func validateInVG(vg, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if n := len(vg) + 1 + len(name); n > maxFullNameLen {
		return fmt.Errorf("%w: %q: full name %s/%s is %d characters, more than %d", ErrInvalidName, name, vg, name, n, maxFullNameLen)
	}
	if n := len(dmName(vg, name)); n > maxDMNameLen {
		return fmt.Errorf("%w: %q: device-mapper name %s is %d characters, more than %d", ErrInvalidName, name, dmName(vg, name), n, maxDMNameLen)
	}
	return nil
}

// dmName is the device-mapper name of vg/lv: "<vg>-<lv>" with the dashes inside each doubled.
func dmName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}
