package agent

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/lvmthin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// Run is the agent process: it opens the pool (recovering what a crash left half-done),
// brings configfs back to the pool's records, and serves the API until ctx ends, reconciling
// periodically.
func Run(ctx context.Context, cfg Config) error {
	logger := klog.FromContext(ctx).WithValues("node", cfg.NodeName)
	ctx = klog.NewContext(ctx, logger)
	logger.Info("Starting nvmeof-agent", "version", version.Version, "listen", cfg.Listen,
		"backend", cfg.Pool.Backend, "portals", len(cfg.Portals))

	p, err := OpenPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }()
	target := &nvmet.Target{Root: cfg.ConfigfsRoot, Prefix: cfg.NQNPrefix()}
	srv := New(cfg, p, target)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	go srv.RunReconciler(ctx)
	reg := metrics.NewRegistry()
	reg.MustRegister(srv)
	if cfg.MetricsAddress != "" {
		go func() {
			if err := metrics.Serve(ctx, cfg.MetricsAddress, reg); err != nil {
				logger.Error(err, "The metrics endpoint stopped", "address", cfg.MetricsAddress)
			}
		}()
	}
	return Serve(ctx, cfg, srv, metrics.AgentOperations(reg))
}

// OpenPool opens the configured pool backend.
func OpenPool(ctx context.Context, cfg Config) (pool.Pool, error) {
	switch cfg.Pool.Backend {
	case BackendLVM:
		if err := lvm.CheckTargets(ctx, command.Exec{}); err != nil {
			return nil, err
		}
		p, err := lvmthin.Open(ctx, lvmthin.Options{
			VolumeGroup: cfg.Pool.VolumeGroup, ThinPool: cfg.Pool.ThinPool, Config: cfg.LVMConfigString(),
		})
		if err != nil {
			return nil, err
		}
		return p, nil
	case BackendDMThin:
		return openDMThin(ctx, cfg)
	}
	return nil, fmt.Errorf("pool.backend %q: want %s or %s", cfg.Pool.Backend, BackendDMThin, BackendLVM)
}

// openDMThin opens the dm-thin backend. Its device-mapper devices are named after the storage
// node ("nvmeof-<node>-pool", "nvmeof-<node>-<volume ID>"), its device nodes live in
// /dev/nvmeof/nvmeof-<node>/.
func openDMThin(ctx context.Context, cfg Config) (pool.Pool, error) {
	p, err := dmthin.Open(ctx, dmthin.Options{
		MetadataDevice: cfg.Pool.MetadataDevice,
		DataDevice:     cfg.Pool.DataDevice,
		Name:           "nvmeof-" + cfg.NodeName,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}
