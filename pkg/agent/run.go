package agent

import (
	"context"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

// Run is the agent process: it wires the real LVM pool and nvmet target, brings configfs back
// to the durable state, and serves the API until ctx ends, reconciling periodically.
func Run(ctx context.Context, cfg Config) error {
	logger := klog.FromContext(ctx).WithValues("node", cfg.NodeName)
	ctx = klog.NewContext(ctx, logger)
	logger.Info("Starting nvmeof-agent", "version", version.Version, "listen", cfg.Listen,
		"pool", cfg.Pool.VolumeGroup+"/"+cfg.Pool.ThinPool, "portals", len(cfg.Portals))

	pool := &lvm.Pool{
		VG:          cfg.Pool.VolumeGroup,
		ThinPool:    cfg.Pool.ThinPool,
		Runner:      command.Exec{},
		ExtraConfig: cfg.LVMConfigString(),
	}
	if err := lvm.CheckTargets(ctx, command.Exec{}); err != nil {
		return err
	}
	target := &nvmet.Target{Root: cfg.ConfigfsRoot, Prefix: cfg.NQNPrefix()}
	srv := New(cfg, pool, target)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	go srv.RunReconciler(ctx)
	return Serve(ctx, cfg, srv)
}
