package agent

import (
	"context"
	"errors"
	"slices"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// PublishVolume allows a host NQN on a volume: recorded durably first, then projected into
// configfs (the volume's subsystem is created on its first publish). If the projection fails,
// the record is taken back, so nothing half-done remains.
func (s *Server) PublishVolume(ctx context.Context, req *agentapi.PublishVolumeRequest) (*agentapi.PublishVolumeResponse, error) {
	resp, err := s.publish(ctx, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return resp, nil
}

// checkPublish validates a publish request and returns its transport's name.
func (s *Server) checkPublish(req *agentapi.PublishVolumeRequest) (string, error) {
	if err := validateID(req.GetVolumeId(), volumePrefix); err != nil {
		return "", err
	}
	if err := nvmet.ValidateNQN(req.GetHostNqn()); err != nil {
		return "", rpcerr.Invalidf("host_nqn: %v", err)
	}
	if req.GetNodeId() == "" {
		return "", rpcerr.Invalidf("node_id is required")
	}
	transport := agentapi.TransportName(req.GetTransport())
	if transport == "" {
		return "", rpcerr.Invalidf("transport must be tcp or rdma")
	}
	if len(s.portIDs([]string{transport})) == 0 {
		return "", rpcerr.Preconditionf("storage node %s has no %s portal", s.cfg.NodeName, transport)
	}
	return transport, nil
}

func (s *Server) publish(ctx context.Context, req *agentapi.PublishVolumeRequest) (*agentapi.PublishVolumeResponse, error) {
	transport, err := s.checkPublish(req)
	if err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()

	lvs, err := s.pool.List(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(lvs, func(lv lvm.LV) bool { return lv.Name == id })
	if i < 0 {
		return nil, rpcerr.NotFoundf("volume %s", id)
	}
	lv := lvs[i]
	want := host{nqn: req.GetHostNqn(), nodeID: req.GetNodeId(), readOnly: req.GetReadOnly()}
	if other, ok := identityClash(lvs, want); ok {
		return nil, rpcerr.Preconditionf("host NQN %s is already used by node %q, and now node %q presents it: "+
			"every node needs its own /etc/nvme/hostnqn and hostid", want.nqn, other, want.nodeID)
	}

	for _, h := range hostsOf(lv) {
		if h.nqn == want.nqn && h.nodeID == want.nodeID && h.readOnly != want.readOnly {
			return nil, rpcerr.Existsf("volume %s is published to %s with read_only=%v", id, h.nqn, h.readOnly)
		}
	}
	var added []string
	if !slices.Contains(hostsOf(lv), want) {
		added = append(added, want.tag())
	}
	if !slices.Contains(transportsOf(lv), transport) {
		added = append(added, lvm.EncodeTag(tagTransport, transport))
	}
	if len(added) > 0 {
		if err := s.pool.AddTags(ctx, id, added...); err != nil {
			return nil, err
		}
		lv.Tags = append(lv.Tags, added...)
	}
	if err := s.export(ctx, lv); err != nil {
		if len(added) > 0 {
			// Take the record back and restore the previous projection.
			bg := context.WithoutCancel(ctx)
			if rerr := s.pool.DelTags(bg, id, added...); rerr != nil {
				return nil, errors.Join(err, rerr)
			}
			lv.Tags = slices.DeleteFunc(lv.Tags, func(t string) bool { return slices.Contains(added, t) })
			return nil, errors.Join(err, s.export(bg, lv))
		}
		return nil, err
	}
	return &agentapi.PublishVolumeResponse{
		SubsystemNqn:  s.subsystemNQN(id),
		Transport:     req.GetTransport(),
		Portals:       s.portals(transport),
		NamespaceUuid: tagOf(lv, tagUUID),
	}, nil
}

// identityClash finds a node other than h's that recorded h's NQN on any volume.
func identityClash(lvs []lvm.LV, h host) (string, bool) {
	for _, lv := range lvs {
		for _, other := range hostsOf(lv) {
			if other.nqn == h.nqn && other.nodeID != h.nodeID {
				return other.nodeID, true
			}
		}
	}
	return "", false
}

// UnpublishVolume removes a host NQN from a volume. Its controllers are cut off at once (the
// kernel keeps live controllers of a host removed from allowed_hosts, so the subsystem is
// unlinked from its ports and linked again; the remaining hosts reconnect). The subsystem goes
// with the last host. An unknown volume or host is not an error: there is nothing to revoke.
func (s *Server) UnpublishVolume(ctx context.Context, req *agentapi.UnpublishVolumeRequest) (*agentapi.UnpublishVolumeResponse, error) {
	if err := s.unpublish(ctx, req); err != nil {
		return nil, rpcerr.Status(err)
	}
	return &agentapi.UnpublishVolumeResponse{}, nil
}

func (s *Server) unpublish(ctx context.Context, req *agentapi.UnpublishVolumeRequest) error {
	id := req.GetVolumeId()
	if err := validateID(id, volumePrefix); err != nil {
		return nil
	}
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	lv, err := s.pool.Get(ctx, id)
	if errors.Is(err, lvm.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var removed []string
	var remaining []host
	for _, h := range hostsOf(lv) {
		if h.nqn == req.GetHostNqn() {
			removed = append(removed, h.tag())
		} else {
			remaining = append(remaining, h)
		}
	}
	if len(remaining) == 0 {
		for _, t := range transportsOf(lv) {
			removed = append(removed, lvm.EncodeTag(tagTransport, t))
		}
	}
	// Revoke in configfs first: if the record went first and configfs failed, a retry would
	// find nothing to revoke while the host still had access.
	lv.Tags = slices.DeleteFunc(slices.Clone(lv.Tags), func(t string) bool { return slices.Contains(removed, t) })
	if len(remaining) > 0 && len(removed) > 0 {
		if err := s.cutControllers(ctx, lv); err != nil {
			return err
		}
	}
	if err := s.export(ctx, lv); err != nil {
		return err
	}
	if len(removed) == 0 {
		return nil
	}
	return s.pool.DelTags(ctx, id, removed...)
}

// export projects a volume's recorded hosts into configfs: its subsystem with those hosts on
// the ports of its transports, or no subsystem when it has no host.
func (s *Server) export(ctx context.Context, lv lvm.LV) error {
	nqn := s.subsystemNQN(lv.Name)
	hosts := hostsOf(lv)
	if len(hosts) == 0 {
		return s.target.RemoveSubsystem(ctx, nqn)
	}
	if !lv.Active {
		if err := s.pool.Activate(ctx, lv.Name); err != nil {
			return err
		}
	}
	return s.target.EnsureSubsystem(ctx, s.subsystem(lv, hosts, s.portIDs(transportsOf(lv))))
}

// cutControllers unlinks the subsystem from every port, which makes the kernel drop all its
// controllers; the following export links it again.
func (s *Server) cutControllers(ctx context.Context, lv lvm.LV) error {
	return s.target.EnsureSubsystem(ctx, s.subsystem(lv, hostsOf(lv), nil))
}

func (s *Server) subsystem(lv lvm.LV, hosts []host, ports []uint16) nvmet.Subsystem {
	sub := nvmet.Subsystem{
		NQN:   s.subsystemNQN(lv.Name),
		Model: "nvmeof-csi",
		Namespace: nvmet.Namespace{
			ID:         1,
			DevicePath: lv.Path,
			UUID:       tagOf(lv, tagUUID),
			ANAGroupID: 1,
		},
		Ports: ports,
	}
	for _, h := range hosts {
		if !slices.Contains(sub.Hosts, h.nqn) {
			sub.Hosts = append(sub.Hosts, h.nqn)
		}
	}
	return sub
}
