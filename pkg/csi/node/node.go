package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mounter"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// Connector is the host-side NVMe-oF initiator the Node drives; *nvme.Initiator implements
// it, and the methods keep its contracts (idempotency, sentinel errors, context bounds).
type Connector interface {
	// Connect connects one path (portal) of a subsystem; an existing matching controller is
	// returned as is.
	Connect(ctx context.Context, opts nvme.ConnectOptions) (string, error)
	// Controllers lists the controllers (paths) of a subsystem.
	Controllers(subsysNQN string) ([]nvme.Controller, error)
	// Disconnect removes every controller of a subsystem and returns nil only once sysfs
	// shows none.
	Disconnect(ctx context.Context, subsysNQN string) error
	// FindNamespace returns the block device of a namespace, or an error wrapping
	// nvme.ErrNotFound.
	FindNamespace(subsysNQN, nsUUID string) (string, error)
	// WaitNamespace polls FindNamespace until the namespace appears or ctx ends.
	WaitNamespace(ctx context.Context, subsysNQN, nsUUID string, poll time.Duration) (string, error)
	// VerifyDevice re-checks a device's identity right before it is formatted or mounted.
	VerifyDevice(dev, subsysNQN, nsUUID string) error
	// Rescan asks the controllers behind a namespace device to rescan (after a resize).
	Rescan(dev string) error
	// DeviceSize returns a namespace device's size in bytes as the kernel sees it now.
	DeviceSize(dev string) (int64, error)
	// MultipathEnabled reports whether native NVMe multipath is on.
	MultipathEnabled() bool
	// DeleteControllers deletes the named controllers of a subsystem (dead or superseded
	// paths) and returns once they are gone.
	DeleteControllers(ctx context.Context, subsysNQN string, names []string) error
	// RescanSubsystem asks every live controller of a subsystem to rescan its namespaces.
	RescanSubsystem(subsysNQN string) error
}

var _ Connector = (*nvme.Initiator)(nil)

// Defaults of Options.
const (
	DefaultStateDir         = "/var/lib/kubelet/plugins/" + contract.DriverName + "/volumes"
	DefaultConnectTimeout   = 30 * time.Second
	DefaultNamespaceTimeout = 30 * time.Second
	DefaultGrowTimeout      = 60 * time.Second
	DefaultCleanupTimeout   = 60 * time.Second
	DefaultPollInterval     = 100 * time.Millisecond
)

// Options are the Node's dependencies and settings. NodeName, Identity, Connector and Mounter
// are required.
type Options struct {
	// NodeName is the Kubernetes node name; the CSI node ID is contract.NodeID(NodeName,
	// Identity.HostNQN).
	NodeName string
	// Identity is this host's NVMe identity (nvme.LoadOrCreateIdentity("/etc/nvme")).
	Identity nvme.Identity
	// Connector connects and finds namespaces (*nvme.Initiator).
	Connector Connector
	// Mounter formats, mounts and measures (mounter.New).
	Mounter mounter.Interface
	// Topology are the segments reported as this node's accessible topology; empty reports
	// none.
	Topology map[string]string
	// MaxVolumesPerNode is reported by NodeGetInfo; zero means no limit is reported.
	MaxVolumesPerNode int64
	// StateDir holds the per-volume stash files; empty means DefaultStateDir. It must persist
	// across plugin restarts (a hostPath).
	StateDir string
	// FabricsDev must exist when New runs; empty means nvme.DefaultFabricsDev.
	FabricsDev string
	// ConnectTimeout bounds connecting one portal; zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// NamespaceTimeout bounds the wait for the namespace after connecting; zero means
	// DefaultNamespaceTimeout.
	NamespaceTimeout time.Duration
	// GrowTimeout bounds NodeExpandVolume's wait for the device to reach the requested size;
	// zero means DefaultGrowTimeout.
	GrowTimeout time.Duration
	// CleanupTimeout bounds undoing a failed stage, which runs even when the request's
	// context has ended; zero means DefaultCleanupTimeout.
	CleanupTimeout time.Duration
	// PollInterval is how often waits re-check sysfs; zero means DefaultPollInterval.
	PollInterval time.Duration
}

// Node is the CSI Node service. Build it with New.
type Node struct {
	csi.UnimplementedNodeServer

	opts       Options
	stash      stashStore
	volumes    keylock.Locks
	subsystems keylock.Locks
	// repairs counts the healer's repairs by action.
	repairs *prometheus.CounterVec
}

// New checks opts and returns a Node. It fails when the fabrics device is missing: the
// plugin never loads kernel modules (modprobe fails where NVMe is built in, ceph-csi#6158),
// so the host must provide nvme-fabrics and the transport drivers, loaded or built in.
func New(opts Options) (*Node, error) {
	switch {
	case opts.NodeName == "":
		return nil, errors.New("node: a node name is required")
	case opts.Connector == nil || opts.Mounter == nil:
		return nil, errors.New("node: a connector and a mounter are required")
	}
	if err := nvme.ValidNQN(opts.Identity.HostNQN); err != nil {
		return nil, fmt.Errorf("node: host NQN: %w", err)
	}
	if err := nvme.ValidUUID(opts.Identity.HostID); err != nil {
		return nil, fmt.Errorf("node: host ID: %w", err)
	}
	if _, _, err := contract.ParseNodeID(contract.NodeID(opts.NodeName, opts.Identity.HostNQN)); err != nil {
		return nil, fmt.Errorf("node: node name %q and host NQN make no valid node ID: %w", opts.NodeName, err)
	}
	if opts.FabricsDev == "" {
		opts.FabricsDev = nvme.DefaultFabricsDev
	}
	if _, err := os.Stat(opts.FabricsDev); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("node: %s does not exist: the host kernel must provide NVMe over Fabrics "+
				"(load nvme-fabrics and nvme-tcp or nvme-rdma on the host, or build them in; this plugin never runs modprobe)", opts.FabricsDev)
		}
		return nil, fmt.Errorf("node: %w", err)
	}
	setDefault(&opts.StateDir, DefaultStateDir)
	setDefault(&opts.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&opts.NamespaceTimeout, DefaultNamespaceTimeout)
	setDefault(&opts.GrowTimeout, DefaultGrowTimeout)
	setDefault(&opts.CleanupTimeout, DefaultCleanupTimeout)
	setDefault(&opts.PollInterval, DefaultPollInterval)
	return &Node{opts: opts, stash: stashStore{dir: opts.StateDir}, repairs: newRepairs()}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// NodeID returns the CSI node ID this Node reports.
func (n *Node) NodeID() string { return contract.NodeID(n.opts.NodeName, n.opts.Identity.HostNQN) }

// NodeGetInfo implements csi.NodeServer.
func (n *Node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	segs := map[string]string{contract.TopologyNodeKey: n.opts.NodeName}
	for k, v := range n.opts.Topology {
		segs[k] = v
	}
	return &csi.NodeGetInfoResponse{
		NodeId:             n.NodeID(),
		MaxVolumesPerNode:  n.opts.MaxVolumesPerNode,
		AccessibleTopology: &csi.Topology{Segments: segs},
	}, nil
}

// NodeGetCapabilities implements csi.NodeServer.
func (n *Node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, c := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// lockSubsystem serializes connect and disconnect of one subsystem, waiting bounded by ctx.
// Work under the returned context keeps the lock held until it ends (keylock.Outlive).
func (n *Node) lockSubsystem(ctx context.Context, nqn string) (context.Context, func(), error) {
	ctx, release, err := n.subsystems.Hold(ctx, nqn)
	if err != nil {
		return ctx, nil, fmt.Errorf("waiting for another operation on subsystem %s: %w", nqn, err)
	}
	return ctx, release, nil
}
