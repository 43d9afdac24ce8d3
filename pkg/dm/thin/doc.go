// Package thin speaks the kernel's dm-thin targets through package dm: it builds and parses
// the tables of thin-pool and thin targets, parses their status lines, formats the pool's
// messages, and sends them (Pool) with their failures mapped to sentinel errors. The format is
// the kernel's Documentation/admin-guide/device-mapper/thin-provisioning.rst, checked against
// Linux 6.12.
//
// # A pool without LVM
//
// A pool is a dm device with one thin-pool target over a metadata device and a data device.
// Zero the first 4 KiB of a new metadata device: the kernel formats metadata whose superblock
// is all zeroes, and otherwise opens what is there (a pool reloaded over the same two devices
// finds its thin devices and transaction id again). Thin devices are numbered by the caller
// (24-bit ids, 0 to MaxDevID) and exist only in the pool's metadata until activated: a dm
// device with one thin target naming the pool and the id (Pool.Activate). The kernel does not
// stop one id from being active under two dm devices at once (both map the same data, and
// Delete then fails with dm.ErrBusy until both are gone): keeping to one is the caller's job.
//
// # Snapshots of active devices
//
// create_snap of an origin that is active must be sent while the origin's dm device is
// suspended (so that no write is in flight while the kernel shares its mappings):
//
//	c.Suspend(origin, false)
//	err := pool.CreateSnap(snapID, originID)
//	c.Resume(origin) // always, whatever err is
//
// Several origins can be suspended together for one consistent group snapshot. Do not suspend
// the pool itself for this: a thin device cannot be activated while its pool is suspended, and
// suspending the pool suspends every thin device on it.
//
// # Transaction id
//
// The pool's metadata holds a 64-bit transaction id that only set_transaction_id changes,
// committed with the metadata. A caller that keeps its own records can tie each change to it:
// record the intent, change the pool, set the transaction id from n to n+1, settle the record;
// after a crash the id says whether the change was committed.
package thin
