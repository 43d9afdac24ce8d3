// Package fakeagent is an in-memory storage-node agent for unit tests of the CSI controller
// and identity services: it implements agentapi.AgentClient with the agent API's documented
// semantics (IDs derived from names, idempotent calls, gRPC status codes), and lets a test
// inject errors and block calls.
package fakeagent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
)

// AllMethods is the SetError key that fails every call (an unreachable agent).
const AllMethods = "*"

// Agent is one fake storage node. The zero value is not usable; call New.
type Agent struct {
	mu        sync.Mutex
	name      string
	portals   []*agentapi.Portal
	dataBytes int64
	dataUsed  int64
	metaUsed  int64
	volumes   map[string]*agentapi.Volume
	snapshots map[string]*agentapi.Snapshot
	errs      map[string]error
	keys      map[string][2]string
	holds     map[string][]string // HoldWrites holds in force: their volumes
	hook      func(ctx context.Context, method string) error
	calls     []string
	clock     int64
}

var _ agentapi.AgentClient = (*Agent)(nil)

// New returns an agent called name whose pool holds dataBytes (no overcommit), with one TCP
// portal and one RDMA portal.
func New(name string, dataBytes int64) *Agent {
	return &Agent{
		name:      name,
		dataBytes: dataBytes,
		portals: []*agentapi.Portal{
			{Transport: agentapi.Transport_TRANSPORT_TCP, Address: "192.0.2.1", ServiceId: "4420"},
			{Transport: agentapi.Transport_TRANSPORT_TCP, Address: "192.0.2.2", ServiceId: "4420"},
			{Transport: agentapi.Transport_TRANSPORT_RDMA, Address: "198.51.100.1", ServiceId: "4420"},
		},
		volumes:   map[string]*agentapi.Volume{},
		snapshots: map[string]*agentapi.Snapshot{},
		errs:      map[string]error{},
		keys:      map[string][2]string{},
		clock:     time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano(),
	}
}

// HostKeys returns the DH-HMAC-CHAP host and controller keys last published for a host NQN.
func (a *Agent) HostKeys(nqn string) (host, ctrl string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := a.keys[nqn]
	return k[0], k[1]
}

// Name is the storage node's name.
func (a *Agent) Name() string { return a.name }

// SetUsage sets the thin pool's used data and metadata, in percent.
func (a *Agent) SetUsage(dataPercent, metadataPercent int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dataUsed, a.metaUsed = dataPercent, metadataPercent
}

// SetError makes method (e.g. "CreateVolume", or AllMethods) fail with err until cleared with
// a nil err.
func (a *Agent) SetError(method string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		delete(a.errs, method)
		return
	}
	a.errs[method] = err
}

// SetHook installs a function every call runs first, outside the agent's lock: it may block
// (on a channel the test controls) or return an error to fail the call.
func (a *Agent) SetHook(hook func(ctx context.Context, method string) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hook = hook
}

// Calls returns the methods called so far, in order.
func (a *Agent) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// Volume returns a copy of the volume with agent ID id.
func (a *Agent) Volume(id string) (*agentapi.Volume, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.volumes[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(v).(*agentapi.Volume), true
}

// Snapshot returns a copy of the snapshot with agent ID id.
func (a *Agent) Snapshot(id string) (*agentapi.Snapshot, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.snapshots[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(s).(*agentapi.Snapshot), true
}

// begin records the call, runs the hook, then takes the lock and applies injected errors. On
// success the caller holds a.mu and must release it.
func (a *Agent) begin(ctx context.Context, method string) error {
	a.mu.Lock()
	a.calls = append(a.calls, method)
	hook := a.hook
	a.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, method); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	a.mu.Lock()
	if err := a.errs[method]; err != nil {
		a.mu.Unlock()
		return err
	}
	if err := a.errs[AllMethods]; err != nil {
		a.mu.Unlock()
		return err
	}
	return nil
}

func (a *Agent) provisioned() int64 {
	var sum int64
	for _, v := range a.volumes {
		sum += v.SizeBytes
	}
	return sum
}

func (a *Agent) available() int64 { return max(a.dataBytes-a.provisioned(), 0) }

func uuidOf(id string) string {
	s := sha256.Sum256([]byte(id))
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// subsystemNQN names a volume's subsystem for one host, as the agent does: one per host.
func (a *Agent) subsystemNQN(volumeID, hostNQN string) string {
	s := sha256.Sum256([]byte(hostNQN))
	return fmt.Sprintf("nqn.2026-11.io.nvmeof-csi:%s:%s:h%x", a.name, volumeID, s[:8])
}

// Info implements agentapi.AgentClient.
func (a *Agent) Info(ctx context.Context, _ *agentapi.InfoRequest, _ ...grpc.CallOption) (*agentapi.InfoResponse, error) {
	if err := a.begin(ctx, "Info"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	return &agentapi.InfoResponse{NodeName: a.name, Portals: a.portals, Version: "fake"}, nil
}

// GetCapacity implements agentapi.AgentClient.
func (a *Agent) GetCapacity(ctx context.Context, req *agentapi.GetCapacityRequest, _ ...grpc.CallOption) (*agentapi.GetCapacityResponse, error) {
	if err := a.begin(ctx, "GetCapacity"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	const metaBytes = 1 << 30
	_, isVol := a.volumes[req.GetLookupId()]
	_, isSnap := a.snapshots[req.GetLookupId()]
	// As the agent: available is the headroom, at most the physical space below a 90% fill
	// level; the maximum volume size is the headroom, 0 at the fill level. Until SetUsage,
	// the physical cap is left out, so that tests of topology and overcommit read the
	// headroom alone.
	headroom, avail := a.available(), a.available()
	if a.dataUsed > 0 || a.metaUsed > 0 {
		avail = max(min(headroom, a.dataBytes/100*(90-a.dataUsed)), 0)
	}
	if a.dataUsed >= 90 || a.metaUsed >= 90 {
		headroom, avail = 0, 0
	}
	return &agentapi.GetCapacityResponse{
		LookupFound:        isVol || isSnap,
		DataBytes:          a.dataBytes,
		DataUsedBytes:      a.dataBytes / 100 * a.dataUsed,
		MetadataBytes:      metaBytes,
		MetadataUsedBytes:  metaBytes / 100 * a.metaUsed,
		ProvisionedBytes:   a.provisioned(),
		AvailableBytes:     avail,
		OvercommitRatio:    1,
		MaximumVolumeBytes: headroom,
	}, nil
}

// Cluster is a set of fake agents; it implements agentclient.Source.
type Cluster struct {
	agents map[string]*Agent
}

var _ agentclient.Source = (*Cluster)(nil)

// NewCluster returns a cluster of agents.
func NewCluster(agents ...*Agent) *Cluster {
	c := &Cluster{agents: map[string]*Agent{}}
	for _, a := range agents {
		c.agents[a.name] = a
	}
	return c
}

// Client implements agentclient.Source.
func (c *Cluster) Client(name string) (agentapi.AgentClient, error) {
	a, ok := c.agents[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", agentclient.ErrUnknownNode, name)
	}
	return a, nil
}

// Unavailable is the error of an unreachable agent.
var Unavailable = status.Error(codes.Unavailable, "connection refused")
