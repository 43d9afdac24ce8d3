package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
)

// reconcileStepTimeout bounds the reconciler's work on one volume, lock wait included: one
// stuck volume never stalls the others.
const reconcileStepTimeout = 30 * time.Second

// rollbackTimeout bounds undoing a failed publish, which runs even when the request's context
// has ended.
const rollbackTimeout = 30 * time.Second

// Start loads the pool's records into the index, ensures the configured ports exist and
// projects the records into configfs once. It fails when the pool or a port cannot be set up:
// the agent must not serve without them.
func (s *Server) Start(ctx context.Context) error {
	vols, err := s.pool.List(ctx)
	if err != nil {
		return fmt.Errorf("listing the pool: %w", err)
	}
	s.idx = newIndex(vols)
	if err := s.refreshCapacity(ctx); err != nil {
		return err
	}
	if err := s.ensurePorts(ctx); err != nil {
		return err
	}
	return s.Reconcile(ctx)
}

func (s *Server) refreshCapacity(ctx context.Context) error {
	u, err := s.pool.Usage(ctx)
	if err != nil {
		return fmt.Errorf("thin pool usage: %w", err)
	}
	s.storeUsage(u)
	return nil
}

func (s *Server) ensurePorts(ctx context.Context) error {
	for _, p := range s.cfg.Portals {
		port := nvmet.Port{ID: p.ID, Transport: p.Transport, Address: p.Address, ServiceID: itoa(p.Port), ANAState: nvmet.ANAState(p.ANAState)}
		if err := s.target.EnsurePort(ctx, port); err != nil {
			return fmt.Errorf("portal %d (%s %s:%d): %w", p.ID, p.Transport, p.Address, p.Port, err)
		}
	}
	return nil
}

// Reconcile makes configfs match the records: every volume with hosts has one subsystem per
// host with that host and the volume's ports, and no other subsystem of ours exists. It is
// idempotent, takes each volume's lock in turn (bounded by reconcileStepTimeout) and never
// holds a lock over more than one volume, so API calls on other volumes go on meanwhile.
func (s *Server) Reconcile(ctx context.Context) error {
	var errs []error
	if err := s.ensurePorts(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.refreshCapacity(ctx); err != nil {
		errs = append(errs, err)
	}
	have, err := s.target.NQNs(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	ids := s.idx.exported()
	for _, nqn := range have {
		if id := s.volumeOfNQN(nqn); id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if err := s.reconcileVolume(ctx, id, have); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", id, err))
		}
	}
	if after, err := s.target.NQNs(ctx); err == nil {
		s.metrics.repaired.Add(float64(drift(have, after)))
	}
	err = errors.Join(errs...)
	if err != nil {
		s.metrics.reconciles.WithLabelValues("error").Inc()
	} else {
		s.metrics.reconciles.WithLabelValues("ok").Inc()
	}
	return err
}

// drift counts the subsystems in one of two listings but not in the other.
func drift(before, after []string) int {
	seen := map[string]int{}
	for _, x := range before {
		seen[x]++
	}
	for _, x := range after {
		seen[x]--
	}
	n := 0
	for _, v := range seen {
		if v != 0 {
			n++
		}
	}
	return n
}

// reconcileVolume projects one volume's record (or its absence) into configfs; have is as for
// export.
func (s *Server) reconcileVolume(ctx context.Context, id string, have []string) error {
	ctx, cancel := context.WithTimeout(ctx, reconcileStepTimeout)
	defer cancel()
	ctx, unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	rec, ok := s.idx.get(id)
	if !ok {
		klog.FromContext(ctx).Info("Removing the subsystems of a volume that has no record", "volumeID", id)
		rec = pool.Record{ID: id}
	}
	return s.export(ctx, rec, have)
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
