// Package dm drives the Linux device-mapper directly, with ioctls on /dev/mapper/control: no
// dmsetup or lvm processes and no udev. It is the foundation of the in-process dm-thin pool
// backend (see the thin subpackage for the thin-pool and thin targets).
//
// # Model
//
// A device-mapper device has a name (at most 127 bytes, no '/'), an optional UUID (at most 128
// bytes), a dev_t, and two table slots: the live table the device maps I/O with, and an
// inactive one. Create makes a device with no table; Load puts a table in the inactive slot;
// Resume swaps it in (suspending the device first if it runs) and lets I/O flow; Suspend holds
// new I/O until the next Resume; Remove destroys the device. CreateAndLoad does create, load
// and resume in one call and removes the device again if a later step fails. Devices are always
// addressed by name.
//
// # Device nodes
//
// The kernel creates no /dev/mapper/<name> entries (udev does that, and there is none where the
// agent runs). EnsureNode makes the block device node from the dev_t the kernel returned, and
// RemoveNode removes it; Remove does not touch nodes. Open creates /dev/mapper/control itself
// (mknod from /sys/class/misc/device-mapper/dev) when it is missing. Tables can refer to
// devices as "major:minor" (FormatDev), so building stacks needs no nodes at all.
//
// # Errors
//
// A failed ioctl is an *Error naming the ioctl, the device and (for target messages) the
// message. It wraps the kernel's errno (errors.Is(err, unix.EBUSY)) and, where the errno has a
// clear meaning for that ioctl, one of the sentinels ErrNotFound (ENXIO), ErrExists (EBUSY on
// create: the name or UUID is taken; EEXIST from a target), ErrBusy (EBUSY otherwise, such as
// removing an open device) and ErrInvalid (EINVAL). Arguments are checked before any ioctl;
// those failures wrap ErrInvalid too. The kernel writes its reason for EINVAL only to the
// kernel log (dmesg), so the error cannot carry it.
//
// # Buffers
//
// Every call builds its own buffer: a struct dm_ioctl header followed by the payload. Replies
// of variable size (List, TargetVersions, Table, Status) are retried with a buffer twice as
// large while the kernel sets DM_BUFFER_FULL_FLAG, up to 16 MiB. A target message is never
// sent twice: if its reply does not fit, the error says the message was delivered.
//
// # Concurrency
//
// A Control may be used from any number of goroutines: each call is one ioctl (two or three for
// the convenience calls) on its own buffer, and the kernel serializes them. Callers serialize
// what must be ordered, such as the suspend, message and resume of one snapshot. Calls block
// for as long as the kernel does: a Suspend that flushes waits for in-flight I/O, which on a
// thin pool that is out of space and queueing can be until its no_space_timeout.
//
// # Interface version
//
// Every ioctl asks for interface version 4.0.0, which any 4.x kernel accepts; the kernel
// rejects a request for a newer minor version than its own (golang.org/x/sys carries the
// newest header's DM_VERSION_MINOR, newer than many running kernels). Version reports what the
// kernel speaks.
package dm
