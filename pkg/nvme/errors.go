package nvme

import "github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"

var (
	// ErrNotFound means the controller, namespace or device asked for does not exist (yet).
	ErrNotFound = rpcerr.Sentinel(rpcerr.ErrNotFound, "nvme: not found")
	// ErrInvalidOption means a caller-supplied value is malformed or could inject extra
	// options into a /dev/nvme-fabrics option string.
	ErrInvalidOption = rpcerr.Sentinel(rpcerr.ErrInvalid, "nvme: invalid option")
	// ErrStillConnected means a controller of the subsystem is still present in sysfs (after
	// Disconnect gave up waiting, or while the kernel is deleting it during a Connect).
	ErrStillConnected = rpcerr.Sentinel(rpcerr.ErrUnavailable, "nvme: still connected")
	// ErrWrongDevice means a device exists but is not the namespace it was expected to be
	// (other subsystem NQN or namespace UUID, or a hidden multipath path device).
	ErrWrongDevice = rpcerr.Sentinel(rpcerr.ErrPrecondition, "nvme: device identity mismatch")
	// ErrInvalidIdentity means /etc/nvme/hostnqn or /etc/nvme/hostid holds a malformed value.
	ErrInvalidIdentity = rpcerr.Sentinel(rpcerr.ErrPrecondition, "nvme: invalid host identity")
)
