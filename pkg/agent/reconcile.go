package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
)

// Start ensures the configured ports exist and projects the durable state into configfs once.
// It fails when the pool or a port cannot be set up: the agent must not serve without them.
func (s *Server) Start(ctx context.Context) error {
	if _, err := s.pool.Usage(ctx); err != nil {
		return fmt.Errorf("thin pool %s/%s: %w", s.cfg.Pool.VolumeGroup, s.cfg.Pool.ThinPool, err)
	}
	if err := s.ensurePorts(ctx); err != nil {
		return err
	}
	return s.Reconcile(ctx)
}

func (s *Server) ensurePorts(ctx context.Context) error {
	for _, p := range s.cfg.Portals {
		port := nvmet.Port{ID: p.ID, Transport: p.Transport, Address: p.Address, ServiceID: itoa(p.Port)}
		if err := s.target.EnsurePort(ctx, port); err != nil {
			return fmt.Errorf("portal %d (%s %s:%d): %w", p.ID, p.Transport, p.Address, p.Port, err)
		}
	}
	return nil
}

// Reconcile makes configfs match the durable state: every volume with hosts has its subsystem
// with exactly those hosts and ports, and no other subsystem of ours exists. It is idempotent
// and excludes all other calls while it runs.
func (s *Server) Reconcile(ctx context.Context) error {
	s.state.Lock()
	defer s.state.Unlock()
	if err := s.ensurePorts(ctx); err != nil {
		return err
	}
	lvs, err := s.pool.List(ctx)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	var errs []error
	for _, lv := range lvs {
		if !isVolume(lv) || len(hostsOf(lv)) == 0 {
			continue
		}
		want[s.subsystemNQN(lv.Name)] = true
		if err := s.export(ctx, lv); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", lv.Name, err))
		}
	}
	have, err := s.target.List(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, sub := range have {
		if !want[sub.NQN] {
			klog.FromContext(ctx).Info("Removing stale subsystem", "nqn", sub.NQN)
			if err := s.target.RemoveSubsystem(ctx, sub.NQN); err != nil {
				errs = append(errs, fmt.Errorf("stale subsystem %s: %w", sub.NQN, err))
			}
		}
	}
	return errors.Join(errs...)
}

// RunReconciler calls Reconcile every interval until ctx ends, logging failures.
func (s *Server) RunReconciler(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReconcileInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Reconcile(ctx); err != nil {
				klog.FromContext(ctx).Error(err, "Reconcile failed")
			}
		}
	}
}
