package nvmet

import "errors"

// Sentinel errors. Returned errors wrap them together with the configfs path or object
// concerned; test with errors.Is.
var (
	// ErrNotFound: the subsystem, namespace or port does not exist.
	ErrNotFound = errors.New("not found")
	// ErrPortConflict: the port exists with another address or transport and cannot be changed
	// because subsystems are linked to it, or it is still in use and cannot be removed.
	ErrPortConflict = errors.New("port conflict")
	// ErrForeign: the subsystem NQN does not start with the Target's prefix.
	ErrForeign = errors.New("foreign subsystem")
	// ErrInvalidNQN: a subsystem or host NQN is not a valid NVMe qualified name.
	ErrInvalidNQN = errors.New("invalid NQN")
	// ErrInvalid: any other invalid argument (port address, serial, UUID, device path...).
	ErrInvalid = errors.New("invalid argument")
)
