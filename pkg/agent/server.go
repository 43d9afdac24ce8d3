// Package agent implements the storage-node agent: volumes, snapshots and clones in one LVM
// thin pool, exported per volume through the kernel NVMe target, behind the gRPC API of
// pkg/agentapi.
//
// Durable state lives in LVM tags on each LV (name, namespace UUID, content source, labels,
// the hosts a volume is published to and their transports): it survives crashes and reboots
// with the volume group itself. configfs is only ever a projection of it, rebuilt by the
// reconciler at start and periodically.
//
// Concurrency: calls on the same volume or snapshot are serialized with per-ID locks (waiting,
// bounded by the request context); calls on different IDs run in parallel. Capacity checks
// and the creations they admit are serialized so overcommit cannot be exceeded by racing
// calls. The reconciler excludes all calls while it compares state, which takes one lvs call.
package agent

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// Pool is the volume store; *lvm.Pool implements it. Same-name calls are serialized by the
// agent; different names may run in parallel.
type Pool interface {
	Create(ctx context.Context, name string, sizeBytes int64, tags []string) (lvm.LV, error)
	Snapshot(ctx context.Context, origin, name string, readOnly bool, tags []string) (lvm.LV, error)
	Remove(ctx context.Context, name string) error
	Extend(ctx context.Context, name string, sizeBytes int64) (lvm.LV, error)
	Get(ctx context.Context, name string) (lvm.LV, error)
	List(ctx context.Context) ([]lvm.LV, error)
	AddTags(ctx context.Context, name string, tags ...string) error
	DelTags(ctx context.Context, name string, tags ...string) error
	Usage(ctx context.Context) (lvm.Usage, error)
	Activate(ctx context.Context, name string) error
}

// Target is the kernel NVMe target; *nvmet.Target implements it.
type Target interface {
	EnsurePort(ctx context.Context, p nvmet.Port) error
	EnsureSubsystem(ctx context.Context, s nvmet.Subsystem) error
	RemoveSubsystem(ctx context.Context, nqn string) error
	List(ctx context.Context) ([]nvmet.Subsystem, error)
	RevalidateNamespace(ctx context.Context, nqn string, nsid uint32) error
}

// extentBytes is LVM's default extent size: sizes are rounded up to it.
const extentBytes = 4 << 20

// Server implements agentapi.AgentServer.
type Server struct {
	agentapi.UnimplementedAgentServer

	cfg    Config
	pool   Pool
	target Target

	locks keylock.Locks
	// state is held shared by every call and exclusively by the reconciler.
	state sync.RWMutex
	// provision serializes capacity checks with the creations and expansions they admit.
	provision sync.Mutex

	newUUID func() string
	now     func() time.Time
}

// New returns an agent for a validated configuration.
func New(cfg Config, pool Pool, target Target) *Server {
	return &Server{cfg: cfg, pool: pool, target: target, newUUID: randomUUID, now: time.Now}
}

// lock takes the locks of ids in a fixed order (so two calls never wait on each other) and
// the shared state lock; the returned function releases them.
func (s *Server) lock(ctx context.Context, ids ...string) (func(), error) {
	ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "" })
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var held []string
	release := func() {
		for _, id := range held {
			s.locks.Unlock(id)
		}
	}
	for _, id := range ids {
		if err := s.locks.Lock(ctx, id); err != nil {
			release()
			return nil, err
		}
		held = append(held, id)
	}
	s.state.RLock()
	return func() {
		s.state.RUnlock()
		release()
	}, nil
}

// subsystemNQN is the NQN of a volume's subsystem.
func (s *Server) subsystemNQN(volumeID string) string { return s.cfg.NQNPrefix() + volumeID }

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
		out = append(out, &agentapi.Portal{
			Transport: t, Address: p.Address, ServiceId: itoa(p.Port),
		})
	}
	return out
}

func roundUp(n int64) int64 { return (n + extentBytes - 1) / extentBytes * extentBytes }
