// Package nvmet drives the Linux kernel NVMe-oF target (nvmet) through configfs directly, one
// object at a time: mkdir, rmdir, symlink, unlink and single attribute writes. It never writes
// a "whole configuration", so work on one subsystem cannot clobber another
// (democratic-csi#504 lost subsystems by rewriting a shared config file).
//
// # Ownership
//
// A Target shares the kernel target with whatever else runs on the node, and only touches what
// it owns:
//
//   - Subsystems: ours exactly when the NQN starts with Target.Prefix. Anything else is foreign:
//     List skips it and every mutating call refuses it with ErrForeign.
//   - Port links: the entry ports/<id>/subsystems/<nqn> belongs to the subsystem it names. We
//     create entries named after our NQNs (as nvmetcli does) and remove only those; entries of
//     foreign subsystems are never touched, whatever port they are in.
//   - Ports: shared objects. A port is ours when the operator configured its ID for the agent;
//     only EnsurePort, RemovePort and SetANAState create or change ports, and the agent calls
//     them only for its configured IDs. EnsureSubsystem never creates a port: it links to ports
//     that must already exist (ErrNotFound otherwise). A port whose address differs from the
//     requested one is updated only while no subsystem (ours or foreign) is linked to it;
//     otherwise EnsurePort fails with ErrPortConflict.
//   - Hosts: hosts/<hostnqn> objects are shared by every subsystem that allows the host. They are
//     created on demand. After removing one of our allowed_hosts links, the host object is
//     removed too unless it is still linked by any subsystem (the kernel refuses the rmdir with
//     EBUSY, which is the check, atomic in the kernel) or it carries a DH-HMAC-CHAP key (set by
//     EnsureHost; such hosts are removed only by RemoveHost, so a key is never silently dropped
//     and recreated without one). A host object no one links is thus collected only when we
//     drop the last link ourselves; one left over by a crash stays until RemoveHost.
//
// # ANA
//
// Every port has ANA group 1, created by the kernel in the optimized state. Namespaces go into
// group 1 unless Namespace.ANAGroupID says otherwise; EnsureSubsystem creates a missing group on
// each listed port in the optimized state (the kernel would create it inaccessible) and never
// changes an existing group's state. SetANAState changes a group's state on one port, which is
// how one path is made non-optimized or inaccessible for multipath.
//
// # Concurrency
//
// Calls for different subsystems may run in parallel; calls for the same subsystem must be
// serialized by the caller. The shared directories are safe to use in parallel: each port link
// and each allowed host is its own configfs entry, the Target serializes creating and collecting
// host objects internally, and EnsurePort/RemovePort exclude link changes while they run. A
// Target must not be copied after first use.
//
// # Idempotency
//
// Every call is idempotent: EnsureSubsystem and EnsurePort converge configfs to the requested
// state and write only what differs (a repeat does no writes at all); RemoveSubsystem,
// RemovePort, RemoveHost and DisallowHost treat an absent object as success. configfs is wiped
// by a reboot, so callers keep their desired state elsewhere and re-apply it.
//
// # configfs semantics relied on
//
// mkdir creates an object together with its attribute files and default subdirectories; rmdir
// removes it with them but fails with ENOTEMPTY while it has children or links, and with EBUSY
// while it is the target of a link; attribute files cannot be created or unlinked; device_path,
// device_uuid and device_nguid can be written only while the namespace is disabled (EBUSY);
// addr_* of a port cannot be written while a subsystem is linked to it (EACCES); linking a
// subsystem to a port enables (binds) the port. Package nvmettest provides an in-memory FS with
// these semantics and a check that the kernel and the fake agree.
package nvmet
