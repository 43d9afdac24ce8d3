package thin

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Sentinel errors of Pool's methods. They wrap the *dm.Error (and so the errno) they come
// from; test with errors.Is.
var (
	// ErrIDExists: create_thin or create_snap of an id the pool already has (EEXIST).
	ErrIDExists = rpcerr.Sentinel(rpcerr.ErrExists, "thin device id already exists")
	// ErrIDNotFound: the pool has no thin device of that id (ENODATA): delete, the origin
	// of create_snap, activation.
	ErrIDNotFound = rpcerr.Sentinel(rpcerr.ErrNotFound, "no thin device of that id")
	// ErrTransactionID: set_transaction_id named a current id that is not the pool's
	// (EINVAL).
	ErrTransactionID = rpcerr.Sentinel(rpcerr.ErrPrecondition, "transaction id does not match the pool's")
	// ErrPoolReadOnly: the pool takes no messages because its metadata cannot change: it is
	// read-only, out of metadata space or failed (EOPNOTSUPP).
	ErrPoolReadOnly = rpcerr.Sentinel(rpcerr.ErrPrecondition, "pool metadata is read-only")
)

// Pool sends messages to the thin pool whose dm device is Name. Like dm.Control, it may be
// used from many goroutines; callers order what must be ordered (messages about one id, a
// snapshot and the suspension of its origin).
type Pool struct {
	Control *dm.Control
	Name    string
}

// CreateThin creates an empty thin device id. An id in use: ErrIDExists.
func (p Pool) CreateThin(id uint32) error {
	if err := checkID(id); err != nil {
		return err
	}
	return p.send(CreateThinMessage(id), errClass{unix.EEXIST, ErrIDExists})
}

// CreateSnap creates thin device id as a snapshot of thin device origin. If the origin is
// active, suspend its dm device around the call (see the package documentation). An id in
// use: ErrIDExists; no origin: ErrIDNotFound.
func (p Pool) CreateSnap(id, origin uint32) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := checkID(origin); err != nil {
		return err
	}
	return p.send(CreateSnapMessage(id, origin), errClass{unix.EEXIST, ErrIDExists}, errClass{unix.ENODATA, ErrIDNotFound})
}

// Delete deletes thin device id, which must not be active (dm.ErrBusy). No such id:
// ErrIDNotFound.
func (p Pool) Delete(id uint32) error {
	if err := checkID(id); err != nil {
		return err
	}
	return p.send(DeleteMessage(id), errClass{unix.ENODATA, ErrIDNotFound})
}

// SetTransactionID changes the pool's transaction id from current to next. A pool whose id is
// not current: ErrTransactionID.
func (p Pool) SetTransactionID(current, next uint64) error {
	return p.send(SetTransactionIDMessage(current, next), errClass{unix.EINVAL, ErrTransactionID})
}

// ReserveMetadataSnap takes the pool's metadata snapshot for userspace tools; its block is
// PoolStatus.HeldMetadataRoot. One already held: dm.ErrBusy.
func (p Pool) ReserveMetadataSnap() error { return p.send(ReserveMetadataSnapMessage) }

// ReleaseMetadataSnap drops the metadata snapshot. None held: dm.ErrInvalid.
func (p Pool) ReleaseMetadataSnap() error { return p.send(ReleaseMetadataSnapMessage) }

// errClass says which sentinel an errno means for one message.
type errClass struct {
	errno unix.Errno
	err   error
}

// send sends msg to the pool and wraps the sentinel of the first class whose errno the
// failure carries (EOPNOTSUPP is ErrPoolReadOnly for every message).
func (p Pool) send(msg string, classes ...errClass) error {
	_, err := p.Control.Message(p.Name, 0, msg)
	return classify(err, append(classes, errClass{unix.EOPNOTSUPP, ErrPoolReadOnly})...)
}

func classify(err error, classes ...errClass) error {
	if err == nil {
		return nil
	}
	for _, c := range classes {
		if errors.Is(err, c.errno) {
			return fmt.Errorf("%w: %w", c.err, err)
		}
	}
	return err
}

// Status returns the pool's status. With noFlush the pool does not commit its metadata
// first: cheaper, and the numbers may lag the last I/O.
func (p Pool) Status(noFlush bool) (PoolStatus, error) {
	table, err := p.Control.Status(p.Name, noFlush)
	if err != nil {
		return PoolStatus{}, err
	}
	if len(table) != 1 || table[0].Type != PoolTargetType {
		return PoolStatus{}, fmt.Errorf("thin: %s is not a thin pool (%d targets)", p.Name, len(table))
	}
	return ParsePoolStatus(table[0].Params)
}

// Activate makes thin device id of the pool a live dm device called name, of sectors, and
// returns its info (Dev for dm.EnsureNode). A name in use: dm.ErrExists; no such id:
// ErrIDNotFound; the pool suspended: dm.ErrInvalid (the kernel refuses). An id already active
// under another name is activated again (see the package documentation).
func (p Pool) Activate(name, uuid string, id uint32, sectors uint64, readOnly bool) (dm.DeviceInfo, error) {
	pool, err := p.Control.Info(p.Name)
	if err != nil {
		return dm.DeviceInfo{}, err
	}
	t, err := ThinTable{PoolDev: dm.FormatDev(pool.Dev), ID: id}.Target(sectors)
	if err != nil {
		return dm.DeviceInfo{}, err
	}
	info, err := p.Control.CreateAndLoad(name, uuid, []dm.Target{t}, readOnly)
	return info, classify(err, errClass{unix.ENODATA, ErrIDNotFound})
}
