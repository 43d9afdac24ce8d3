// Package dmthin is the fast pool backend: the kernel's dm-thin driven in-process with
// device-mapper ioctls (packages dm and dm/thin), no subprocess in any volume operation
// (only the block maps of changed-block tracking run thin_dump and thin_delta), and its own
// crash-safe records on the pool's own two devices. A volume is created with one pool message
// and two small journal writes; a snapshot of an active volume holds its writes for the few
// milliseconds of one message.
//
// Everything needed to rebuild the pool lives on its two devices: reinstall the operating
// system, or move the disks to another server, and Open finds every volume, snapshot and
// clone with its full record (nothing in /etc or /var).
//
// # Devices
//
// The operator names two block devices (Options). Open formats them only when both carry no
// signature at all; it refuses, naming the device and what it found, any device that holds
// an LVM2 label, a LUKS header, an ext2/3/4, XFS, btrfs or ISO 9660 file system, an MBR or GPT
// partition table, a swap area, an MD RAID or bcache superblock, or dm-thin metadata (magic
// bytes checked in Go, as blkid would, in the first 256 KiB). A device with this package's
// header must be paired with the device of the same pool UUID, in the other role.
//
// # On-disk format (version 1)
//
// All integers are little-endian. Offsets are in bytes.
//
// Metadata device:
//
//	0          header, copy 0 (4 KiB)
//	4096       header, copy 1 (identical)
//	1 MiB      checkpoint slot 0  (SlotBytes)
//	+SlotBytes checkpoint slot 1  (SlotBytes)
//	+SlotBytes journal ring       (JournalBytes = 2 × SlotBytes)
//	ThinOff    dm-thin metadata, to the end of the device (at most 15.9 GiB are used)
//
// SlotBytes is 1/32 of the metadata device, rounded down to a MiB, from 1 to 64 MiB: the
// record store takes 1/8 of the device, the thin metadata the rest. The dm-thin metadata is
// the kernel's own format, untouched: thin_check, thin_dump, thin_ls and thin_repair work on
// it (ThinMetadataRange says where it is; losetup --offset --sizelimit makes a device of it).
//
// Data device:
//
//	0          header, copy 0 (4 KiB)
//	4096       header, copy 1
//	DataOff    data (1 MiB), in whole blocks of BlockSectors × 512 bytes to the end
//
// Header (one 4 KiB block; both devices, copies identical; the layout fields are the same on
// both devices, so either one describes the pool):
//
//	0    [8]  magic "NVMEOFTP"
//	8    u32  format version (1)
//	12   u32  role: 1 metadata device, 2 data device
//	16   [16] pool UUID (random, version 4)
//	32   i64  creation time, Unix nanoseconds
//	40   u32  data block size, sectors (BlockSectors)
//	44   u32  flags (0)
//	48   i64  SlotBytes
//	56   i64  offset of checkpoint slot 0
//	64   i64  offset of checkpoint slot 1
//	72   i64  journal offset
//	80   i64  JournalBytes
//	88   i64  ThinOff
//	96   i64  DataOff
//	104  [64] pool name when formatted (informational, NUL-padded)
//	4092 u32  CRC-32C (Castagnoli) of bytes 0 to 4091
//
// A header copy is valid if its magic, checksum, version, role and layout are. The first valid
// copy wins.
//
// # Record store
//
// The records are a state: every thin device (its pool.Record, its 24-bit thin id, whether it
// is read-only), the pending intents, the transaction id the thin metadata has committed at
// least, and the next thin id to try. The state changes only by journal entries, applied in
// order; a checkpoint is the whole state at one entry.
//
// Journal entry (a whole number of 4 KiB blocks; the rest of the last block is zero):
//
//	0   [8]  magic "NVMEOFJ1"
//	8   [16] pool UUID
//	24  u64  sequence number (1, 2, ... one more than the entry before)
//	32  u32  kind: 1 change, 2 wrap (no payload; the next entry is at the start of the ring)
//	36  u32  length in 4 KiB blocks
//	40  u32  payload length
//	44  u32  CRC-32C of bytes 0 to 63 (with these four as zero) and the payload
//	48  [16] zero
//	64       payload: one change, JSON
//
// Entries are written at increasing logical positions; logical position L is at journal
// offset + L mod JournalBytes. An entry never straddles the end of the ring: a wrap entry
// fills the rest. Entries are written one at a time with O_DIRECT and O_DSYNC, each durable
// before the next is written and before the change is acknowledged, so a torn write can only
// damage the last entry, which then fails its checksum (and was never acknowledged).
//
// A change (the payload) has exactly one of these members:
//
//	{"intent": {"seq": N, "op": "create"|"snapshot"|"clone"|"group"|"delete"|"expand",
//	            "new": [record...], "origins": [thin id...],
//	            "id": ID, "thin": thin id, "size": bytes, "old_size": bytes}}
//	{"settle": {"intent": N, "commit": true|false, "txid": T}}
//	{"put": record}                                   (a record's new version: SetHosts)
//	{"txid": T}                                       (the thin metadata is at T at least)
//
// where a record is
//
//	{"id": ID, "thin": thin id, "size": bytes, "ro": bool, "name": ..., "uuid": ...,
//	 "source": ..., "created": Unix ns, "labels": {...},
//	 "hosts": [{"nqn": ..., "node": ..., "ro": bool}], "transports": [...]}
//
// An intent's seq is its own entry's sequence number. A settle ends the intent: with commit,
// its change is applied (new records added, a deleted record dropped, an expanded record's
// size set); without, it is dropped. The transaction id of the state is the highest one any
// settle or txid entry named.
//
// Checkpoint (at the start of a slot; a whole number of 4 KiB blocks):
//
//	0   [8]  magic "NVMEOFC1"
//	8   [16] pool UUID
//	24  u64  generation (1 at format; slot = generation mod 2)
//	32  u64  sequence number of the last entry it includes
//	40  u64  logical journal position of the entry after it
//	48  u64  payload length
//	56  u32  CRC-32C of bytes 0 to 63 (with these four as zero) and the payload
//	64       payload: {"txid": T, "next_thin": N, "volumes": [record...], "intents": [intent...]}
//
// Reading the store: take the valid checkpoint of the highest generation (a torn or damaged
// one fails its checksum, and the other slot is used), then apply the journal entries from its
// position, as long as each is the next sequence number of this pool and intact; the first
// that is not marks where the next entry goes. A checkpoint is written in the background each
// time the journal has grown by a quarter of the ring since the last one; the ring is reused
// only behind the older of the two checkpoints, so the journal after either one is always
// complete. The per-operation cost is one or two 4 KiB writes whatever the number of volumes;
// a change that would not fit in a checkpoint slot is refused (pool.ErrNoSpace).
//
// # Devices in the kernel
//
// All the pool's device-mapper devices carry a UUID "NVMEOF-<pool uuid, 32 hex digits>-<role>"
// and are found by it, whatever their names:
//
//	<Name>-pool_tmeta  linear, metadata device from ThinOff     role "tmeta"
//	<Name>-pool_tdata  linear, data device from DataOff         role "tdata"
//	<Name>-pool        thin-pool over the two, BlockSectors, block zeroing on   role "pool"
//	<Name>-<ID>        thin <pool> <thin id>, the record's size, read-only for snapshots
//	                                                            role "thin-<thin id>"
//
// The kernel refuses a second device with a UUID in use, so one thin id can never be active
// under two dm devices (which the kernel would otherwise allow). Device nodes are made with
// mknod (no udev) at NodeDir/<Name>/<ID>.
//
// # Operations and the transaction id
//
// Every change of the thin metadata is announced by an intent before it is sent to the kernel
// and settled after. The pool's messages commit the thin metadata themselves; after each
// change the pool's transaction id is moved one on (set_transaction_id, another commit), and
// the settle records it. So the records' transaction id is a lower bound of the thin
// metadata's: Open refuses (ErrStale) thin metadata whose transaction id is lower, which means
// it was rolled back or replaced.
//
//	Create:        intent → create_thin → set_transaction_id → settle
//	Snapshot/clone: intent → suspend the origin if it is active and writable (no flush) →
//	               create_snap → resume → set_transaction_id → settle
//	SnapshotGroup: intent → suspend every active origin → create_snap each → resume all →
//	               set_transaction_id → settle
//	Delete:        remove the dm device (open: ErrInUse, nothing changed) → intent → delete →
//	               set_transaction_id → settle
//	Resize:        intent → load the longer table, suspend (no flush), resume (if active) →
//	               settle
//	SetHosts:      one put entry
//
// A snapshot's write hold is bounded by HoldTimeout: past it (or when the call's context
// ends) the origins are resumed whatever the operation is doing, and the snapshots are
// deleted again. A kernel refusal ends an operation at once with the intent settled as not
// done (the kernel changed nothing).
//
// # Recovery
//
// Open, after loading the records and building or re-attaching the stack:
//
//  1. Every device of the pool left suspended is resumed (after dropping any table loaded
//     and not swapped in); a thin device with no live table (an activation cut short), or
//     whose thin id has no record, is removed.
//  2. The thin metadata's transaction id must be at least the records' (else ErrStale).
//  3. Every pending intent is ended, in sequence order:
//     create, snapshot, clone, group: never acknowledged, so rolled back: each new thin id is
//     deleted if the pool has it, and the intent settled as not done;
//     delete: finished: the thin id deleted if still there, the record dropped;
//     expand: completed: an active device gets the new size, then the record.
//     An intent that cannot be ended now (its device is open, the pool is read-only) stays
//     pending and is logged: its IDs refuse other operations (a pending delete is finished by
//     the next Delete), the next Open tries again, and the pool opens all the same, so that
//     its volumes are still served.
//  4. The records take the pool's transaction id.
//
// One process at a time opens a pool: Open takes an exclusive flock on the metadata device
// (ErrPoolBusy), released when the process dies.
//
// So after a crash at any instant nothing acknowledged is lost, no thin id is left without a
// record, and no device is left suspended.
//
// # Repair by hand
//
// With the pool inactive (Shutdown): read a header copy for the layout; read both checkpoints
// and replay the journal as above to get the records; run thin_check (and thin_repair if
// needed) on the thin metadata region; thin_ls lists the thin ids, which must be exactly the
// records' plus those of pending creating intents (which recovery deletes). If the thin
// metadata had to be restored from an older copy, Open refuses it (its transaction id is
// lower than the records'): once the records and the thin ids agree again (records of
// volumes the old copy lacks removed by appending settle or put entries, or thin devices
// recreated), raise its transaction id to the records' with thin_dump, an edit of the
// superblock's transaction attribute, and thin_restore.
//
// # What the kernel does that this package relies on (Linux 6.12)
//
//   - DM_DEV_CREATE refuses a UUID in use (EBUSY): the only guard against one thin id active
//     under two dm devices, which the thin target itself allows.
//   - Every pool message commits the thin metadata; set_transaction_id needs the current id
//     and takes any new one (this package only ever adds one).
//   - create_snap of an active origin needs the origin suspended; the suspend is done
//     without flush, so bios the pool holds back (a full pool queueing writes) are requeued
//     for after the resume instead of waited for, and a full pool cannot stretch the hold.
//   - A thin device cannot be activated while its pool is suspended: the pool is never
//     suspended, and a pool left suspended is resumed by Open.
//   - A table's size is checked only when Resume swaps it in; a failed swap leaves the device
//     suspended with its old table (resumed again here).
//   - A thin-pool status with flush commits the metadata: Usage and the checks use noflush;
//     a snapshot's hold is preceded by one status with flush, so that its create_snap
//     commits have little to write.
//   - Removing a dm device takes about 20 ms under emulation and leaves its node: nodes are
//     removed here.
//   - A pool out of data space goes back to writing by itself once blocks are freed.
//
// # Concurrency
//
// Operations on different IDs run in parallel; an operation holds the locks of the IDs it
// touches (the origin of a snapshot included), not a global one. The short sections that are
// serialized: one journal write at a time, thin id allocation, and set_transaction_id. Get,
// List and Usage read memory and one status ioctl (without a metadata commit). An operation
// runs in its own goroutine: the call returns when its context ends, while an operation that
// has started changing the kernel goes on to a consistent end (keeping its locks, and the
// caller's through keylock.Outlive). Ioctls cannot be interrupted: a suspend that waits for
// I/O in flight returns late, and resumes its device then if its hold already ended.
package dmthin
