// Package node implements the CSI Node service of nvmeof-csi: it connects this host to a
// volume's NVMe-oF subsystem, finds the namespace by subsystem NQN and namespace UUID,
// formats and mounts it at the staging path (filesystem volumes) and bind-mounts it into pods.
//
// # Dependencies
//
// A Node is built once by New from Options: the node name and NVMe host identity (loaded by
// main from the host's /etc/nvme, never baked into an image), a Connector (*nvme.Initiator in
// production), a mounter.Interface, topology segments and limits. The package itself runs no
// programs and reads no sysfs: those live behind the two seams.
//
// # Concurrency
//
// Each RPC that changes a volume takes that volume's try-lock first and answers
// codes.Aborted at once when another call holds it; the logic underneath is lock-free.
// Connecting and disconnecting a subsystem are further serialized per subsystem NQN (waiting,
// bounded by the request's context), as package nvme requires.
//
// # The stash
//
// NodeStageVolume records what NodeUnstageVolume, NodeExpandVolume and NodeGetVolumeStats
// need (subsystem NQN, namespace UUID, portals, access type) as a small JSON file in
// Options.StateDir, named after the SHA-256 of the volume ID, written atomically (temporary
// file, fsync, rename). Not inside the staging path: that is where the file system gets
// mounted, so the file would land in (or be hidden by) the volume's own file system. Not in
// the staging path's parent either: kubelet owns that directory (vol_data.json) and fails to
// remove it when it holds a file it does not know. The stash is written BEFORE connecting
// (an intent record), so that an Unstage after a crash mid-stage still knows which subsystem
// to disconnect, and removed only once Unstage has confirmed the controllers are gone.
//
// # Error codes and kubelet
//
// kubelet treats Aborted, Unavailable, DeadlineExceeded, Canceled and ResourceExhausted from
// NodeStageVolume as "maybe in progress" and keeps the volume's staging state uncertain, so it
// will call NodeUnstageVolume before giving up on it; any other code tells it nothing was left
// behind. A failed stage therefore undoes what it did (unmount, disconnect a subsystem this
// call connected, forget the stash); when something must stay (the subsystem was connected
// before the call, an undo step failed, or the staging path is mounted from a device that is
// not the volume's namespace) the error is Unavailable, so that kubelet retries and eventually
// unstages. NodeUnstageVolume never reports success while a controller of the subsystem is
// still present in sysfs (tns-csi#204).
package node
