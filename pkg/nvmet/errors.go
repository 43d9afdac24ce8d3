package nvmet

import "github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"

// Sentinel errors, each of an rpcerr class. Returned errors wrap them together with the configfs path or object
// concerned; test with errors.Is.
var (
	// ErrNotFound: the subsystem, namespace or port does not exist.
	ErrNotFound = rpcerr.Sentinel(rpcerr.ErrNotFound, "not found")
	// ErrPortConflict: the port exists with another address or transport and cannot be changed
	// because subsystems are linked to it, or it is still in use and cannot be removed.
	ErrPortConflict = rpcerr.Sentinel(rpcerr.ErrPrecondition, "port conflict")
	// ErrForeign: the subsystem NQN does not start with the Target's prefix.
	ErrForeign = rpcerr.Sentinel(rpcerr.ErrPrecondition, "foreign subsystem")
	// ErrInvalidNQN: a subsystem or host NQN is not a valid NVMe qualified name.
	ErrInvalidNQN = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid NQN")
	// ErrInvalid: any other invalid argument (port address, serial, UUID, device path...).
	ErrInvalid = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid argument")
)
