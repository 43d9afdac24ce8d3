package agent

import (
	"context"
	"slices"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// ListExports implements agentapi.AgentServer: every subsystem of ours as configfs has it,
// each marked orphan when no record wants it, and the host objects no subsystem allows.
func (s *Server) ListExports(ctx context.Context, _ *agentapi.ListExportsRequest) (*agentapi.ListExportsResponse, error) {
	subs, err := s.target.List(ctx)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	unused, err := s.target.UnusedHosts(ctx)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	resp := &agentapi.ListExportsResponse{UnusedHosts: unused}
	for _, sub := range subs {
		e := &agentapi.Export{SubsystemNqn: sub.NQN, VolumeId: s.volumeOfNQN(sub.NQN), HostNqns: sub.Hosts}
		for _, p := range sub.Ports {
			e.PortIds = append(e.PortIds, uint32(p))
		}
		e.Orphan = !s.wanted(sub.NQN)
		resp.Exports = append(resp.Exports, e)
	}
	return resp, nil
}

// wanted reports whether a record wants subsystem nqn: its volume is published to the host
// whose subsystem it is.
func (s *Server) wanted(nqn string) bool {
	id := s.volumeOfNQN(nqn)
	rec, ok := s.idx.get(id)
	if !ok {
		return false
	}
	return slices.ContainsFunc(rec.Hosts, func(h pool.Host) bool { return s.hostSubsystemNQN(id, h.NQN) == nqn })
}

// RemoveOrphans implements agentapi.AgentServer. A subsystem goes by reconciling its volume
// under the volume's lock (which removes exactly the subsystems its record does not want); a
// host object by RemoveHost, which the kernel refuses while a subsystem allows the host.
func (s *Server) RemoveOrphans(ctx context.Context, req *agentapi.RemoveOrphansRequest) (*agentapi.RemoveOrphansResponse, error) {
	for _, nqn := range append(slices.Clone(req.GetSubsystemNqns()), req.GetHostNqns()...) {
		if err := nvmet.ValidateNQN(nqn); err != nil {
			return nil, rpcerr.Status(rpcerr.Invalidf("%q: %v", nqn, err))
		}
	}
	resp := &agentapi.RemoveOrphansResponse{}
	log := klog.FromContext(ctx)
	var ids []string
	for _, nqn := range req.GetSubsystemNqns() {
		if id := s.volumeOfNQN(nqn); id != "" && !s.wanted(nqn) && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if err := s.reconcileVolume(ctx, id, nil); err != nil {
			return resp, rpcerr.Status(err)
		}
	}
	have, err := s.target.NQNs(ctx)
	if err != nil {
		return resp, rpcerr.Status(err)
	}
	for _, nqn := range req.GetSubsystemNqns() {
		if slices.Contains(ids, s.volumeOfNQN(nqn)) && !slices.Contains(have, nqn) {
			log.Info("Removed an orphan subsystem", "nqn", nqn)
			resp.RemovedSubsystems = append(resp.RemovedSubsystems, nqn)
		}
	}
	for _, nqn := range req.GetHostNqns() {
		removed, err := s.removeUnusedHost(ctx, nqn)
		if err != nil {
			return resp, rpcerr.Status(err)
		}
		if removed {
			log.Info("Removed an unused host object", "hostNQN", nqn)
			resp.RemovedHosts = append(resp.RemovedHosts, nqn)
		}
	}
	return resp, nil
}

// removeUnusedHost removes host object nqn if no subsystem allows it and no publication
// names it, under the host's lock: a publication being exported to it holds the lock from
// its keys to its subsystem, so it never finds its host object gone half-way.
func (s *Server) removeUnusedHost(ctx context.Context, nqn string) (bool, error) {
	ctx, unlock, err := s.lockHost(ctx, nqn)
	if err != nil {
		return false, err
	}
	defer unlock()
	if len(s.idx.nodesOf(nqn)) > 0 {
		return false, nil
	}
	unused, err := s.target.UnusedHosts(ctx)
	if err != nil || !slices.Contains(unused, nqn) {
		return false, err
	}
	if err := s.target.RemoveHost(ctx, nqn); err != nil {
		klog.FromContext(ctx).Info("Kept a host object that is in use again", "hostNQN", nqn, "err", err)
		return false, nil
	}
	return true, nil
}
