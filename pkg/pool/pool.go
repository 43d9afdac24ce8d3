// Package pool is the storage node's volume store: thin volumes, read-only thin snapshots and
// writable clones in one thin pool, each with the durable record the agent keeps about it
// (name, namespace UUID, content source, labels, published hosts).
//
// Two backends implement Pool and pass the same contract suite (pkg/pool/pooltest, run against
// the real kernel in the VM tier):
//
//   - pkg/pool/dmthin drives the kernel's dm-thin in-process with device-mapper ioctls and
//     keeps its records, crash-safe, on the pool's own metadata device: no subprocess per
//     operation, snapshots in milliseconds, several origins in one write-hold window.
//   - pkg/pool/lvmthin uses an LVM thin pool through lvm2 commands and JSON reports, with the
//     records in LVM tags: familiar to operators, one lvm process (and a VG metadata rewrite)
//     per operation.
//
// # Contract
//
// Every method is bounded by its context. Calls on the same ID must not overlap (the agent
// serializes them with per-ID locks); calls on different IDs may run in parallel. Everything
// a call acknowledged survives a crash (SIGKILL, power loss) of the process at any instant;
// an operation interrupted before it returned is, after Open, either complete or absent, never
// half there. Errors wrap the sentinels below (each of an rpcerr class).
package pool

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Sentinel errors of every backend.
var (
	// ErrNotFound: no volume or snapshot of that ID (or no such origin).
	ErrNotFound = rpcerr.Sentinel(rpcerr.ErrNotFound, "no such volume or snapshot in the pool")
	// ErrExists: the ID is taken. Create and Snapshot return the existing entry with it.
	ErrExists = rpcerr.Sentinel(rpcerr.ErrExists, "volume or snapshot already exists in the pool")
	// ErrNoSpace: the pool cannot hold it (data or metadata space, or device IDs).
	ErrNoSpace = rpcerr.Sentinel(rpcerr.ErrExhausted, "not enough space in the pool")
	// ErrInUse: the device is open (exported, mounted) and cannot be removed.
	ErrInUse = rpcerr.Sentinel(rpcerr.ErrPrecondition, "volume is in use")
	// ErrInvalid: a malformed ID, size or record.
	ErrInvalid = rpcerr.Sentinel(rpcerr.ErrInvalid, "invalid pool request")
	// ErrUnsupported: the backend cannot do this (e.g. group snapshots on LVM).
	ErrUnsupported = rpcerr.Sentinel(rpcerr.ErrPrecondition, "not supported by this pool backend")
)

// Host is one host a volume is published to.
type Host struct {
	// NQN is the host NQN the kernel target allows; NodeID the CSI node that presented it.
	NQN, NodeID string
	// ReadOnly: the host was given read-only access.
	ReadOnly bool
	// DHCHAPKey and DHCHAPCtrlKey are the host's and the storage node's DH-HMAC-CHAP secrets
	// ("DHHC-1:…"; empty: no authentication asked with this publication), KeysSetUnixNano
	// when they were given. The kernel keeps one key pair per host NQN: the newest pair among
	// a host's publications is the one in force. Secrets: never log them.
	DHCHAPKey, DHCHAPCtrlKey string
	KeysSetUnixNano          int64
}

// Record is everything kept about one thin device. The backend stores it with the device and
// returns it unchanged.
type Record struct {
	// ID is the agent's ID: "vol-…" for volumes and clones, "snap-…" for snapshots.
	ID string
	// SizeBytes is the virtual size, a multiple of the agent's extent size.
	SizeBytes int64
	// Name is the CSI name the ID was derived from.
	Name string
	// UUID is the NVMe namespace UUID (volumes).
	UUID string
	// Source is the ID this device was cloned or snapshotted from ("" for an empty volume).
	Source string
	// CreatedUnixNano is the creation time (snapshots).
	CreatedUnixNano int64
	// Labels are the CSI parameters kept with the volume.
	Labels map[string]string
	// Hosts are the hosts the volume is published to; Transports the transports in use.
	// Both are sets: backends need not keep their order.
	Hosts      []Host
	Transports []string
}

// Clone returns a deep copy.
func (r Record) Clone() Record {
	r.Labels = maps.Clone(r.Labels)
	r.Hosts = slices.Clone(r.Hosts)
	r.Transports = slices.Clone(r.Transports)
	return r
}

// Volume is a record with its device's state.
type Volume struct {
	Record
	// Path is the block device node while the device is active ("" otherwise).
	Path string
}

// Usage is the pool's physical capacity.
type Usage struct {
	// DataBytes is the size of the data device, DataUsedBytes how much of it holds blocks.
	DataBytes, DataUsedBytes int64
	// MetadataBytes and MetadataUsedBytes are the same for the thin metadata.
	MetadataBytes, MetadataUsedBytes int64
	// Health is "" for a healthy pool, else why it cannot take writes ("out of data space",
	// "metadata read only", "failed").
	Health string
}

// SnapshotSpec names one snapshot of a group: Record (its ID, size and record) of Origin.
type SnapshotSpec struct {
	Origin string
	Record Record
}

// UsedReporter is a Pool that can tell how much of the pool its active devices use.
type UsedReporter interface {
	// Used maps each active device among ids to the bytes the pool has allocated to it;
	// inactive devices (and unknown IDs) are absent.
	Used(ctx context.Context, ids []string) (map[string]int64, error)
}

// WriteHolder is a Pool that can hold writes to origins across calls, for a group snapshot
// whose members span storage nodes: phase one holds writes on every node, phase two makes
// each node's snapshots while its hold is intact.
type WriteHolder interface {
	// HoldWrites holds the writes to origins (all of which must exist) until the hold is
	// released, used, or timeout passes, whichever is first; the hold always ends by itself.
	// Until it ends, the origins take no other call (Delete, Resize, … wait for it).
	HoldWrites(ctx context.Context, origins []string, timeout time.Duration) (WriteHold, error)
}

// WriteHold is a hold of HoldWrites.
type WriteHold interface {
	// SnapshotGroup makes read-only snapshots of the hold's origins while the hold is intact,
	// then ends it. Either every snapshot is made or none; a hold that ended first is
	// ErrHoldEnded and nothing is made. A hold serves one SnapshotGroup.
	SnapshotGroup(ctx context.Context, specs []SnapshotSpec) ([]Volume, error)
	// Release ends the hold (idempotent). It reports whether the hold was intact until then.
	Release() bool
	// Expires is when the hold ends at the latest.
	Expires() time.Time
	// HoldDuration is how long writes were held, once the hold ended (0 before, and when
	// none of the origins could take writes).
	HoldDuration() time.Duration
}

// ErrHoldEnded: a write hold ended (timed out or released) before what was to be done under it.
var ErrHoldEnded = rpcerr.Sentinel(rpcerr.ErrAborted, "the write hold ended first")

// Range is a byte range of a device.
type Range struct{ Offset, Length int64 }

// BlockMapper is a Pool that can read from the thin pool's metadata which blocks of its
// devices hold data.
type BlockMapper interface {
	// MapBlocks calls emit, in ascending order, with the ranges of device id that are mapped
	// (base "") or that differ from device base (mapped in one and not the other, or mapped
	// to different data blocks), coalesced, each a multiple of the pool's block size
	// (blockSize, the same in every call). It stops at the first error emit returns.
	MapBlocks(ctx context.Context, id, base string, emit func(blockSize int64, r Range) error) error
}

// Pool is a thin pool of volumes. See the package documentation for the contract every
// method keeps.
type Pool interface {
	// Create makes an empty thin device of rec.SizeBytes with rec as its record. An ID in use
	// is ErrExists, returned with the existing volume; a full pool ErrNoSpace.
	Create(ctx context.Context, rec Record) (Volume, error)
	// Snapshot makes rec.ID a thin snapshot of origin, O(1) whatever the size: read-only for
	// a snapshot, writable for a clone. rec.SizeBytes may exceed the origin's size (a grown
	// clone), never undercut it (ErrInvalid). ErrExists (with the existing volume),
	// ErrNotFound for a missing origin.
	Snapshot(ctx context.Context, origin string, rec Record, readOnly bool) (Volume, error)
	// SnapshotGroup takes read-only snapshots of several origins at one instant: writes to
	// all of them are held for one short, bounded window, whatever happens. Either every
	// snapshot is made or none. Backends that cannot: ErrUnsupported.
	SnapshotGroup(ctx context.Context, specs []SnapshotSpec) ([]Volume, error)
	// Delete removes a device and its record. Snapshots and clones of it are unaffected.
	// ErrNotFound, or ErrInUse when its device is open.
	Delete(ctx context.Context, id string) error
	// Resize grows a device to sizeBytes; a smaller or equal size changes nothing.
	Resize(ctx context.Context, id string, sizeBytes int64) (Volume, error)
	// SetHosts replaces the record's hosts and transports, durably.
	SetHosts(ctx context.Context, id string, hosts []Host, transports []string) (Volume, error)
	// Activate makes the device's block node exist (idempotent) and returns the volume with
	// its Path.
	Activate(ctx context.Context, id string) (Volume, error)
	// Get returns one volume or snapshot, List all of them (by ID).
	Get(ctx context.Context, id string) (Volume, error)
	List(ctx context.Context) ([]Volume, error)
	// Usage reports the pool's physical capacity.
	Usage(ctx context.Context) (Usage, error)
	// Close releases what Open took (not the pool's devices, which stay active).
	Close() error
}
