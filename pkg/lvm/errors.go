package lvm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Sentinel errors, each of an rpcerr class. Pool methods wrap them, so test with errors.Is.
var (
	// ErrNotFound: the LV is not a thin LV of this pool (absent, or not in the pool).
	ErrNotFound = rpcerr.Sentinel(rpcerr.ErrNotFound, "logical volume not found")
	// ErrExists: an LV of that name already exists in the volume group.
	ErrExists = rpcerr.Sentinel(rpcerr.ErrExists, "logical volume already exists")
	// ErrNoSpace: the volume group or the thin pool cannot fit the request.
	ErrNoSpace = rpcerr.Sentinel(rpcerr.ErrExhausted, "not enough space in the pool")
	// ErrShrink: the request would make the LV smaller.
	ErrShrink = rpcerr.Sentinel(rpcerr.ErrPrecondition, "logical volume would shrink")
	// ErrInUse: the LV's device is open (mounted, exported), so it cannot be removed or
	// deactivated.
	ErrInUse = rpcerr.Sentinel(rpcerr.ErrPrecondition, "logical volume is in use")
	// ErrInvalidName: the name breaks LVM's naming rules.
	ErrInvalidName = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid LVM name")
	// ErrInvalidTag: the tag breaks LVM's tag rules, or is not one EncodeTag made.
	ErrInvalidTag = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid LVM tag")
	// ErrInvalidSize: the size is not positive or too large.
	ErrInvalidSize = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid size")
)

// stderrClasses maps what lvm prints on failure to sentinels. It is the only place that reads
// lvm's human-readable messages, and only to classify a command that already failed; whether
// an LV exists is always decided by asking lvs, never by reading an error message.
var stderrClasses = []struct {
	substr string
	err    error
}{
	{"insufficient free space", ErrNoSpace},      // vgcreate/lvcreate: the VG is full
	{"insufficient suitable", ErrNoSpace},        // allocation cannot be satisfied
	{"reached threshold", ErrNoSpace},            // "Cannot create new thin volume, free space in thin pool ... reached threshold"
	{"out of data space", ErrNoSpace},            // the thin pool is full
	{"not larger than existing size", ErrShrink}, // lvextend to a smaller size
	{" in use", ErrInUse},                        // lvremove/lvchange -an of an open LV
}

// classify wraps a failed lvm command's error with the sentinel its standard error names, if
// any; other errors are returned as they are.
func classify(err error) error {
	var cerr *command.Error
	if !errors.As(err, &cerr) || cerr.ExitCode <= 0 {
		return err
	}
	msg := strings.ToLower(cerr.Stderr)
	for _, c := range stderrClasses {
		if strings.Contains(msg, c.substr) {
			return fmt.Errorf("%w: %w", c.err, err)
		}
	}
	return err
}
