// Package nvme is the host-side NVMe-oF initiator used by the CSI node plugin.
//
// It talks to the Linux kernel only through its stable interfaces: option strings written to
// /dev/nvme-fabrics to connect, and sysfs (/sys/class/nvme, /sys/class/nvme-subsystem,
// /sys/class/block) to find controllers and namespaces, to rescan and to disconnect. It never
// runs or parses nvme-cli, whose output format has changed between releases.
//
// Namespaces are found by identity — subsystem NQN plus namespace UUID — never by device name
// or model, and VerifyDevice re-checks that identity right before a caller formats a device.
// With native NVMe multipath (the kernel default) the usable device is the namespace head
// nvmeXnY; the hidden per-path devices nvmeXcYnZ are never returned.
//
// # Concurrency
//
// An Initiator holds no mutable state; its methods may be called concurrently. The kernel
// serializes nothing across calls, though, so Connect, Disconnect and Rescan of the SAME
// subsystem must be serialized by the caller (for example with a per-volume lock): a Connect
// racing a Disconnect of the same subsystem may leave either outcome. Concurrent Connects with
// identical options are tolerated (the loser sees the winner's controller), but are not the
// intended use.
//
// # Errors
//
// Errors wrap the sentinels below (ErrNotFound, ErrInvalidOption, ErrStillConnected,
// ErrWrongDevice, ErrInvalidIdentity), a context error, or the kernel's errno (a
// syscall.Errno), so callers classify them with errors.Is. Error texts never contain
// DH-HMAC-CHAP secrets.
package nvme
