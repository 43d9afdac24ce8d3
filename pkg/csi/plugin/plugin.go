// Package plugin assembles the CSI plugin process: the identity service always, the controller
// service (talking to the storage-node agents) and/or the node service (connecting and mounting
// on this host), served on one CSI endpoint.
package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/controller"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/identity"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/node"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/server"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mounter"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// Modes of the plugin.
const (
	ModeController = "controller"
	ModeNode       = "node"
	ModeAll        = "all"
)

// Options configure the plugin process.
type Options struct {
	// Mode is controller, node or all.
	Mode string
	// Endpoint is the CSI endpoint, unix:///path or tcp://host:port.
	Endpoint string

	// StorageNodes is the controller's storage-node configuration file.
	StorageNodes string
	// AgentTimeout bounds each agent call; ProbeTimeout bounds Probe's agent checks.
	AgentTimeout, ProbeTimeout time.Duration

	// NodeName is this worker's Kubernetes node name.
	NodeName string
	// IdentityDir holds the host's NVMe identity (hostnqn, hostid); default /etc/nvme.
	IdentityDir string
	// Topology are this worker's accessible topology segments.
	Topology map[string]string
	// MaxVolumesPerNode is reported by NodeGetInfo (0: no limit reported).
	MaxVolumesPerNode int64
	// StateDir keeps what NodeUnstageVolume needs; default node.DefaultStateDir.
	StateDir string
}

// Run serves the plugin until ctx ends.
func Run(ctx context.Context, o Options) error {
	logger := klog.FromContext(ctx)
	logger.Info("Starting nvmeof-csi", "version", version.Version, "mode", o.Mode, "endpoint", o.Endpoint)
	withController := o.Mode == ModeController || o.Mode == ModeAll
	withNode := o.Mode == ModeNode || o.Mode == ModeAll
	if !withController && !withNode {
		return fmt.Errorf("mode %q: want controller, node or all", o.Mode)
	}

	var services []func(*grpc.Server)
	idOpts := identity.Options{Controller: withController}
	if withController {
		cfg, err := agentclient.LoadConfig(o.StorageNodes)
		if err != nil {
			return err
		}
		agents, err := agentclient.NewPool(cfg)
		if err != nil {
			return err
		}
		defer func() { _ = agents.Close() }()
		ctl := controller.New(controller.Options{StorageNodes: cfg.StorageNodes, Agents: agents, QueryTimeout: o.AgentTimeout})
		idOpts.Ready = identity.AgentsReady(cfg.StorageNodes, agents, o.ProbeTimeout)
		services = append(services, func(s *grpc.Server) { csi.RegisterControllerServer(s, ctl) })
	}
	if withNode {
		n, err := newNode(o)
		if err != nil {
			return err
		}
		services = append(services, func(s *grpc.Server) { csi.RegisterNodeServer(s, n) })
	}
	ids := identity.New(idOpts)
	return server.Serve(ctx, o.Endpoint, func(s *grpc.Server) {
		csi.RegisterIdentityServer(s, ids)
		for _, register := range services {
			register(s)
		}
	})
}

func newNode(o Options) (*node.Node, error) {
	if o.IdentityDir == "" {
		o.IdentityDir = nvme.DefaultIdentityDir
	}
	id, err := nvme.LoadOrCreateIdentity(o.IdentityDir)
	if err != nil {
		return nil, err
	}
	return node.New(node.Options{
		NodeName:          o.NodeName,
		Identity:          id,
		Connector:         &nvme.Initiator{},
		Mounter:           mounter.New(mounter.Options{}),
		Topology:          o.Topology,
		MaxVolumesPerNode: o.MaxVolumesPerNode,
		StateDir:          o.StateDir,
	})
}
