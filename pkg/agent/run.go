package agent

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
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
	return Serve(ctx, cfg, srv)
}

// OpenPool opens the configured pool backend.
func OpenPool(ctx context.Context, cfg Config) (pool.Pool, error) {
	switch cfg.Pool.Backend {
	case BackendLVM:
		if err := lvm.CheckTargets(ctx, command.Exec{}); err != nil {
			return nil, err
		}
		return lvmthin.Open(ctx, lvmthin.Options{
			VolumeGroup: cfg.Pool.VolumeGroup, ThinPool: cfg.Pool.ThinPool, Config: cfg.LVMConfigString(),
		})
	case BackendDMThin:
		return openDMThin(ctx, cfg)
	}
	return nil, fmt.Errorf("pool.backend %q: want %s or %s", cfg.Pool.Backend, BackendDMThin, BackendLVM)
}

// openDMThin opens the dm-thin backend (wired once pkg/pool/dmthin lands).
func openDMThin(context.Context, Config) (pool.Pool, error) {
	return nil, fmt.Errorf("pool.backend %s is not available in this build", BackendDMThin)
}
