// Package agent implements the storage-node agent: volumes, snapshots and clones in one thin
// pool (pkg/pool: the dm-thin or the LVM backend), exported per volume through the kernel NVMe
// target, behind the gRPC API of pkg/agentapi.
//
// Durable state is the pool's: each thin device's record (name, namespace UUID, content
// source, labels, the hosts a volume is published to and their transports) survives crashes
// and reboots with the pool itself. configfs is only ever a projection of it, rebuilt by the
// reconciler at start and periodically. The agent answers lookups, listings, capacity
// admission and host-identity checks from an in-memory index of those records (see index), so
// no call lists the pool and no call's cost grows with the number of volumes.
//
// Concurrency: calls on the same volume or snapshot are serialized with per-ID locks
// (waiting, bounded by the request context); calls on different IDs run in parallel, creations
// included: capacity is reserved atomically, so the overcommit limit holds however many race.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Target is the kernel NVMe target; *nvmet.Target implements it.
type Target interface {
	EnsurePort(ctx context.Context, p nvmet.Port) error
	EnsureSubsystem(ctx context.Context, s nvmet.Subsystem) error
	RemoveSubsystem(ctx context.Context, nqn string) error
	NQNs(ctx context.Context) ([]string, error)
	List(ctx context.Context) ([]nvmet.Subsystem, error)
	UnusedHosts(ctx context.Context) ([]string, error)
	RemoveHost(ctx context.Context, nqn string) error
	EnsureHost(ctx context.Context, h nvmet.Host) error
	HostHasKey(ctx context.Context, nqn string) (bool, error)
	AllowHost(ctx context.Context, nqn, host string) error
	DisallowHost(ctx context.Context, nqn, host string) error
	RevalidateNamespace(ctx context.Context, nqn string, nsid uint32) error
}

// Size granularities: volume sizes are rounded up to their backend's. LVM allocates whole
// extents (4 MiB, its default); dm-thin takes any number of sectors, and keeps whole MiB, as
// the controller asks.
const (
	lvmExtentBytes = 4 << 20
	dmthinSizeUnit = 1 << 20
)

// Server implements agentapi.AgentServer.
type Server struct {
	agentapi.UnimplementedAgentServer

	cfg    Config
	pool   pool.Pool
	target Target

	locks keylock.Locks
	// idx is the in-memory view of the pool's records, loaded by Start.
	idx *index
	// usage is the pool's last known usage and when it was read (Start, Reconcile,
	// GetCapacity, and admission when it is older than usageMaxAge).
	usage atomic.Pointer[usageAt]

	metrics *agentMetrics
	// holds are the HoldWrites holds in force (groups.go).
	holds holds

	newUUID func() string
	now     func() time.Time
}

// New returns an agent for a validated configuration; Start loads the pool's records.
func New(cfg Config, p pool.Pool, target Target) *Server {
	return &Server{cfg: cfg, pool: p, target: target, idx: newIndex(nil), metrics: newMetrics(), newUUID: randomUUID, now: time.Now}
}

// lock takes the locks of ids in a fixed order (so two calls never wait on each other); the
// returned function releases them, once work that outlived the call has ended (keylock).
func (s *Server) lock(ctx context.Context, ids ...string) (context.Context, func(), error) {
	ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "" })
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var releases []func()
	release := func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}
	for _, id := range ids {
		var r func()
		var err error
		if ctx, r, err = s.locks.Hold(ctx, id); err != nil {
			release()
			return ctx, nil, err
		}
		releases = append(releases, r)
	}
	return ctx, release, nil
}

// hostSubsystemNQN is the NQN of the subsystem that exports a volume to one host:
// <prefix><volume ID>:h<16 hex digits of the SHA-256 of the host NQN>. A volume has one
// subsystem per host it is published to, each allowing that host alone, so that revoking a
// host removes its subsystem, which ends that host's controllers at once and no other host's
// (the kernel keeps a live controller of a host merely removed from allowed_hosts, and
// unlinking a shared subsystem from its ports would cut every host).
func (s *Server) hostSubsystemNQN(volumeID, hostNQN string) string {
	sum := sha256.Sum256([]byte(hostNQN))
	return s.cfg.NQNPrefix() + volumeID + ":h" + hex.EncodeToString(sum[:8])
}

// volumeOfNQN returns the ID of the volume a subsystem of ours exports ("" for an NQN that is
// not ours). The per-volume subsystems of earlier releases, <prefix><volume ID>, map to
// their volume too, so that the reconciler replaces them.
func (s *Server) volumeOfNQN(nqn string) string {
	rest, ok := strings.CutPrefix(nqn, s.cfg.NQNPrefix())
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, ":")
	return id
}

// portIDs are the configured ports of the given transports.
func (s *Server) portIDs(transports []string) []uint16 {
	var ids []uint16
	for _, p := range s.cfg.Portals {
		if slices.Contains(transports, p.Transport) {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// portals are the configured portals of a transport, as the API describes them.
func (s *Server) portals(transport string) []*agentapi.Portal {
	var out []*agentapi.Portal
	for _, p := range s.cfg.Portals {
		if transport != "" && p.Transport != transport {
			continue
		}
		t, _ := agentapi.ParseTransport(p.Transport)
		out = append(out, &agentapi.Portal{Transport: t, Address: p.Address, ServiceId: itoa(p.Port)})
	}
	return out
}

// granularity is the size granularity of this agent's backend.
func (s *Server) granularity() int64 {
	if s.cfg.Pool.Backend == BackendLVM {
		return lvmExtentBytes
	}
	return dmthinSizeUnit
}

// sizeFor rounds size up to the backend's granularity, within limit when limit is positive.
func (s *Server) sizeFor(size, limit int64) (int64, error) {
	g := s.granularity()
	if size > math.MaxInt64-g {
		return 0, rpcerr.OutOfRangef("%d bytes is too large", size)
	}
	rounded := (size + g - 1) / g * g
	if limit > 0 && rounded > limit {
		return 0, rpcerr.OutOfRangef("%d bytes round up to %d, this storage node's %d-byte granularity, above limit_bytes %d",
			size, rounded, g, limit)
	}
	return rounded, nil
}
