package thin

import "fmt"

// Messages a thin-pool target takes (dm.Control.Message to sector 0 of the pool). These only
// format; Pool's methods check the ids and classify the kernel's answer.
//
// The pool commits its metadata after each successful message. Version 6.12 has no "trim"
// message: a thin device grows by loading its table with a larger length and resuming it.

// CreateThinMessage creates thin device id, empty.
func CreateThinMessage(id uint32) string { return fmt.Sprintf("create_thin %d", id) }

// CreateSnapMessage creates thin device id as a snapshot of thin device origin (sharing all
// its blocks). An active origin must be suspended around it.
func CreateSnapMessage(id, origin uint32) string {
	return fmt.Sprintf("create_snap %d %d", id, origin)
}

// DeleteMessage deletes thin device id and frees the blocks no other device shares. The
// device must not be active.
func DeleteMessage(id uint32) string { return fmt.Sprintf("delete %d", id) }

// SetTransactionIDMessage changes the pool's transaction id from current to next; it fails
// unless the pool's id is current.
func SetTransactionIDMessage(current, next uint64) string {
	return fmt.Sprintf("set_transaction_id %d %d", current, next)
}

// Metadata snapshot messages: reserve a read-only copy of the metadata for userspace tools
// (thin_dump -m, thin_ls -m) on the live pool, and release it. Only one can be held.
const (
	ReserveMetadataSnapMessage = "reserve_metadata_snap"
	ReleaseMetadataSnapMessage = "release_metadata_snap"
)
