package dm

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Sentinel errors, each of an rpcerr class. Calls wrap them (and the kernel's errno), so test with errors.Is.
var (
	// ErrNotFound: no device of that name (ENXIO).
	ErrNotFound = rpcerr.Sentinel(rpcerr.ErrNotFound, "no such device")
	// ErrExists: the name or UUID is already taken by another device (EBUSY from
	// DM_DEV_CREATE), or a target refused to create something that exists (EEXIST, such as
	// create_thin of a thin device id in use).
	ErrExists = rpcerr.Sentinel(rpcerr.ErrExists, "already exists")
	// ErrBusy: the device is in use (EBUSY), such as Remove of a device that is open.
	ErrBusy = rpcerr.Sentinel(rpcerr.ErrPrecondition, "device or resource busy")
	// ErrInvalid: an argument was refused (EINVAL from the kernel, or a check before the
	// ioctl): a bad name, UUID, table or message.
	ErrInvalid = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid argument")
)

// Error is a failed device-mapper ioctl. It unwraps to Errno and, when the errno has a clear
// meaning for Op, to one of the sentinel errors.
type Error struct {
	// Op is the ioctl, as named in <linux/dm-ioctl.h>: "DM_DEV_CREATE", "DM_TARGET_MSG", ...
	Op string
	// Name is the device the ioctl addressed; empty for global ones (DM_LIST_DEVICES, ...).
	Name string
	// Detail is what was asked of the device, when there is more than its name: the target
	// message for DM_TARGET_MSG.
	Detail string
	// Errno is what the kernel returned.
	Errno unix.Errno
}

func (e *Error) Error() string {
	s := "dm: " + e.Op
	if e.Name != "" {
		s += " " + e.Name
	}
	if e.Detail != "" {
		s += fmt.Sprintf(" %q", e.Detail)
	}
	return s + ": " + e.Errno.Error()
}

// Unwrap returns the sentinel for the errno (if any) and the errno.
func (e *Error) Unwrap() []error {
	if s := sentinel(e.Op, e.Errno); s != nil {
		return []error{s, e.Errno}
	}
	return []error{e.Errno}
}

// sentinel maps an errno to what it means for the ioctl op.
func sentinel(op string, errno unix.Errno) error {
	switch errno {
	case unix.ENXIO:
		return ErrNotFound
	case unix.EBUSY:
		if op == opCreate {
			return ErrExists
		}
		return ErrBusy
	case unix.EEXIST:
		return ErrExists
	case unix.EINVAL:
		return ErrInvalid
	}
	return nil
}

// invalid is an argument refused before any ioctl.
func invalid(format string, args ...any) error {
	return fmt.Errorf("dm: %s: %w", fmt.Sprintf(format, args...), ErrInvalid)
}
