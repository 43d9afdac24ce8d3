// Package plugin assembles the CSI plugin process: the identity service always, the controller
// service (talking to the storage-node agents) and/or the node service (connecting and mounting
// on this host), served on one CSI endpoint; optionally the kubelet plugin registration (node)
// and a /healthz endpoint, for clusters without the node-driver-registrar and livenessprobe
// sidecars.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/controller"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/healthz"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/identity"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/node"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/registration"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/snapmeta"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/grpcserver"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics"
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
	// HealInterval is how often the node repairs staged volumes' paths (Node.Heal); 0: never.
	HealInterval time.Duration
	// MetricsAddress, when set, is the host:port of GET /metrics (Prometheus). Empty: off.
	MetricsAddress string

	// RegistrationDir, when set, is the directory the kubelet watches for plugin registration
	// sockets (/var/lib/kubelet/plugins_registry on the host) as mounted in this container: the
	// node plugin registers itself with the kubelet there, in place of node-driver-registrar.
	// Node and all modes only. Empty: off.
	RegistrationDir string
	// KubeletRegistrationPath is the path of the CSI socket on the host, which the kubelet
	// dials; required with RegistrationDir.
	KubeletRegistrationPath string
	// HealthzAddress, when set, is the host:port of an HTTP server answering GET /healthz from
	// the identity service's Probe (bounded by ProbeTimeout), in place of livenessprobe. Empty:
	// off.
	HealthzAddress string
}

// Validate checks the options that need no I/O.
func (o Options) Validate() error {
	withNode := o.Mode == ModeNode || o.Mode == ModeAll
	if !withNode && o.Mode != ModeController {
		return fmt.Errorf("mode %q: want controller, node or all", o.Mode)
	}
	switch {
	case o.RegistrationDir != "" && !withNode:
		return fmt.Errorf("--registration-dir: kubelet plugin registration is for the node service; mode %q has none", o.Mode)
	case o.RegistrationDir != "" && o.KubeletRegistrationPath == "":
		return errors.New("--registration-dir needs --kubelet-registration-path, the CSI socket's path on the host")
	case o.RegistrationDir == "" && o.KubeletRegistrationPath != "":
		return errors.New("--kubelet-registration-path is used only with --registration-dir")
	}
	if o.RegistrationDir != "" {
		if err := o.registration().Validate(); err != nil {
			return err
		}
		if ep, err := grpcserver.ParseEndpoint(o.Endpoint); err != nil {
			return err
		} else if ep.Network != "unix" {
			return fmt.Errorf("--registration-dir: the kubelet reaches CSI drivers on unix sockets only; endpoint %q is not one", o.Endpoint)
		}
	}
	if o.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(o.MetricsAddress); err != nil {
			return fmt.Errorf("--metrics-address %q: want host:port or :port: %w", o.MetricsAddress, err)
		}
	}
	if o.HealInterval < 0 {
		return fmt.Errorf("--heal-interval %v: must be 0 (off) or positive", o.HealInterval)
	}
	if o.HealthzAddress != "" {
		if _, _, err := net.SplitHostPort(o.HealthzAddress); err != nil {
			return fmt.Errorf("--healthz-address %q: want host:port or :port: %w", o.HealthzAddress, err)
		}
	}
	return nil
}

func (o Options) registration() registration.Options {
	return registration.Options{Dir: o.RegistrationDir, DriverName: contract.DriverName, Endpoint: o.KubeletRegistrationPath}
}

// Run serves the plugin until ctx ends.
func Run(ctx context.Context, o Options) error {
	logger := klog.FromContext(ctx)
	logger.Info("Starting nvmeof-csi", "version", version.Version, "mode", o.Mode, "endpoint", o.Endpoint)
	if err := o.Validate(); err != nil {
		return err
	}
	withController := o.Mode == ModeController || o.Mode == ModeAll
	withNode := o.Mode == ModeNode || o.Mode == ModeAll

	var services []func(*grpc.Server)
	idOpts := identity.Options{Controller: withController}
	if withController {
		cfg, err := agentclient.LoadConfig(o.StorageNodes)
		if err != nil {
			return err
		}
		agents, err := agentclient.NewPool(cfg, agentclient.CallTimeout(o.AgentTimeout))
		if err != nil {
			return err
		}
		defer func() { _ = agents.Close() }()
		ctl := controller.New(controller.Options{StorageNodes: cfg.StorageNodes, Agents: agents})
		idOpts.Ready = agentclient.Ready(cfg.StorageNodes, agents, o.ProbeTimeout)
		services = append(services, func(s *grpc.Server) {
			csi.RegisterControllerServer(s, ctl)
			csi.RegisterGroupControllerServer(s, controller.NewGroup(ctl))
			csi.RegisterSnapshotMetadataServer(s, snapmeta.New(cfg.StorageNodes, agents))
		})
	}
	reg := metrics.NewRegistry()
	var healer *node.Node
	if withNode {
		n, err := newNode(o)
		if err != nil {
			return err
		}
		services = append(services, func(s *grpc.Server) { csi.RegisterNodeServer(s, n) })
		reg.MustRegister(n)
		if o.HealInterval > 0 {
			healer = n
		}
	}
	ids := identity.New(idOpts)
	// Listen before registering with the kubelet: it calls NodeGetInfo as soon as it has the
	// registration, and connections wait in the backlog until the server accepts them.
	l, err := grpcserver.Listen(o.Endpoint)
	if err != nil {
		return err
	}
	tasks := []task{{"CSI server", func(ctx context.Context) error {
		return grpcserver.ServeListener(ctx, l, func(s *grpc.Server) {
			csi.RegisterIdentityServer(s, ids)
			for _, register := range services {
				register(s)
			}
		}, metrics.CSIOperations(reg, contract.DriverName))
	}}}
	if o.MetricsAddress != "" {
		tasks = append(tasks, task{"metrics endpoint", func(ctx context.Context) error {
			return metrics.Serve(ctx, o.MetricsAddress, reg)
		}})
	}
	if o.RegistrationDir != "" {
		tasks = append(tasks, task{"kubelet plugin registration", func(ctx context.Context) error {
			return registration.Serve(ctx, o.registration())
		}})
	}
	if healer != nil {
		tasks = append(tasks, task{"path healer", func(ctx context.Context) error {
			healer.RunHealer(ctx, o.HealInterval)
			return nil
		}})
	}
	if o.HealthzAddress != "" {
		tasks = append(tasks, task{"health endpoint", func(ctx context.Context) error {
			return healthz.Serve(ctx, o.HealthzAddress, ids, o.ProbeTimeout)
		}})
	}
	return runAll(ctx, tasks)
}

// A task serves until its context ends (then returns nil) or it fails.
type task struct {
	name string
	run  func(context.Context) error
}

// runAll runs the tasks until ctx ends or one of them stops, then stops the others and waits
// for them all. It returns the errors of the tasks, and an error for a task that stopped
// without one before ctx ended.
func runAll(ctx context.Context, tasks []task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, t := range tasks {
		wg.Go(func() {
			defer cancel()
			err := t.run(ctx)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("%s: %w", t.name, err)
			case ctx.Err() == nil:
				errs[i] = fmt.Errorf("%s stopped", t.name)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
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
