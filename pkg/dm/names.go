package dm

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Limits of the ioctl interface: the name and UUID fields of struct dm_ioctl hold
// NUL-terminated strings, and a target type name has 16 bytes with its NUL.
const (
	MaxNameLen = unix.DM_NAME_LEN - 1      // 127
	MaxUUIDLen = unix.DM_UUID_LEN - 1      // 128
	MaxTypeLen = unix.DM_MAX_TYPE_NAME - 1 // 15
)

// ValidateName checks a device name as the kernel will: 1 to 127 bytes, no '/' (the name is
// also a file name under /dev/mapper), not "control", "." or "..", and no NUL byte.
func ValidateName(name string) error {
	switch {
	case name == "":
		return invalid("empty device name")
	case len(name) > MaxNameLen:
		return invalid("device name %q is %d bytes, more than %d", name, len(name), MaxNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return invalid("device name %q contains '/' or a NUL byte", name)
	case name == unix.DM_CONTROL_NODE || name == "." || name == "..":
		return invalid("device name %q is reserved", name)
	}
	return nil
}

// ValidateUUID checks a device UUID: at most 128 bytes and no NUL byte. The kernel gives it
// no other meaning; empty means none.
func ValidateUUID(uuid string) error {
	switch {
	case len(uuid) > MaxUUIDLen:
		return invalid("device uuid %q is %d bytes, more than %d", uuid, len(uuid), MaxUUIDLen)
	case strings.ContainsRune(uuid, 0):
		return invalid("device uuid %q contains a NUL byte", uuid)
	}
	return nil
}
