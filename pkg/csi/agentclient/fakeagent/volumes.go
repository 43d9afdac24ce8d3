package fakeagent

import (
	"context"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// CreateVolume implements agentapi.AgentClient.
func (a *Agent) CreateVolume(ctx context.Context, req *agentapi.CreateVolumeRequest, _ ...grpc.CallOption) (*agentapi.CreateVolumeResponse, error) {
	if err := a.begin(ctx, "CreateVolume"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	if len(req.GetName()) == 0 || len(req.GetName()) > 128 || req.GetSizeBytes() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "bad name %q or size %d", req.GetName(), req.GetSizeBytes())
	}
	id := agentapi.VolumeID(req.GetName())
	if v, ok := a.volumes[id]; ok {
		if v.SizeBytes != req.GetSizeBytes() || !proto.Equal(v.Source, req.GetSource()) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with size %d and source %v", req.GetName(), v.SizeBytes, v.Source)
		}
		return &agentapi.CreateVolumeResponse{Volume: proto.Clone(v).(*agentapi.Volume)}, nil
	}
	var srcSize int64
	switch {
	case req.GetSource().GetSnapshotId() != "":
		s, ok := a.snapshots[req.GetSource().GetSnapshotId()]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", req.GetSource().GetSnapshotId())
		}
		srcSize = s.SizeBytes
	case req.GetSource().GetVolumeId() != "":
		v, ok := a.volumes[req.GetSource().GetVolumeId()]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetSource().GetVolumeId())
		}
		srcSize = v.SizeBytes
	}
	if req.GetSizeBytes() < srcSize {
		return nil, status.Errorf(codes.OutOfRange, "size %d is smaller than the source (%d)", req.GetSizeBytes(), srcSize)
	}
	if req.GetSizeBytes() > a.available() {
		return nil, status.Errorf(codes.ResourceExhausted, "%d bytes requested, %d available", req.GetSizeBytes(), a.available())
	}
	v := &agentapi.Volume{
		Id: id, Name: req.GetName(), SizeBytes: req.GetSizeBytes(), Uuid: uuidOf(id),
		Source: proto.Clone(req.GetSource()).(*agentapi.ContentSource), Labels: maps.Clone(req.GetLabels()),
	}
	if req.GetSource() == nil {
		v.Source = nil
	}
	a.volumes[id] = v
	return &agentapi.CreateVolumeResponse{Volume: proto.Clone(v).(*agentapi.Volume)}, nil
}

// DeleteVolume implements agentapi.AgentClient. A published volume is refused with
// FailedPrecondition.
func (a *Agent) DeleteVolume(ctx context.Context, req *agentapi.DeleteVolumeRequest, _ ...grpc.CallOption) (*agentapi.DeleteVolumeResponse, error) {
	if err := a.begin(ctx, "DeleteVolume"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	v, ok := a.volumes[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetId())
	}
	if len(v.Hosts) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is published to %d hosts", req.GetId(), len(v.Hosts))
	}
	delete(a.volumes, req.GetId())
	return &agentapi.DeleteVolumeResponse{}, nil
}

// ExpandVolume implements agentapi.AgentClient.
func (a *Agent) ExpandVolume(ctx context.Context, req *agentapi.ExpandVolumeRequest, _ ...grpc.CallOption) (*agentapi.ExpandVolumeResponse, error) {
	if err := a.begin(ctx, "ExpandVolume"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	v, ok := a.volumes[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetId())
	}
	if req.GetSizeBytes() < v.SizeBytes {
		return nil, status.Errorf(codes.InvalidArgument, "cannot shrink %s from %d to %d", req.GetId(), v.SizeBytes, req.GetSizeBytes())
	}
	if req.GetSizeBytes()-v.SizeBytes > a.available() {
		return nil, status.Errorf(codes.ResourceExhausted, "not enough space to grow %s", req.GetId())
	}
	v.SizeBytes = req.GetSizeBytes()
	return &agentapi.ExpandVolumeResponse{Volume: proto.Clone(v).(*agentapi.Volume)}, nil
}

// GetVolume implements agentapi.AgentClient.
func (a *Agent) GetVolume(ctx context.Context, req *agentapi.GetVolumeRequest, _ ...grpc.CallOption) (*agentapi.GetVolumeResponse, error) {
	if err := a.begin(ctx, "GetVolume"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	v, ok := a.volumes[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetId())
	}
	return &agentapi.GetVolumeResponse{Volume: proto.Clone(v).(*agentapi.Volume)}, nil
}

// ListVolumes implements agentapi.AgentClient. The order is deliberately unspecified (map
// order), like an agent that lists LVs.
// With usage asked for, a published (so active) volume reports a quarter of its size used.
func (a *Agent) ListVolumes(ctx context.Context, req *agentapi.ListVolumesRequest, _ ...grpc.CallOption) (*agentapi.ListVolumesResponse, error) {
	if err := a.begin(ctx, "ListVolumes"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	resp := &agentapi.ListVolumesResponse{}
	for _, v := range a.volumes {
		c := proto.Clone(v).(*agentapi.Volume)
		if req.GetWithUsage() && len(c.GetHosts()) > 0 {
			used := c.GetSizeBytes() / 4
			c.UsedBytes = &used
		}
		resp.Volumes = append(resp.Volumes, c)
	}
	return resp, nil
}

// PublishVolume implements agentapi.AgentClient.
func (a *Agent) PublishVolume(ctx context.Context, req *agentapi.PublishVolumeRequest, _ ...grpc.CallOption) (*agentapi.PublishVolumeResponse, error) {
	if err := a.begin(ctx, "PublishVolume"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	v, ok := a.volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	for _, other := range a.volumes {
		for _, h := range other.Hosts {
			if h.Nqn == req.GetHostNqn() && h.NodeId != req.GetNodeId() {
				return nil, status.Errorf(codes.FailedPrecondition, "host NQN %s belongs to node %s", h.Nqn, h.NodeId)
			}
		}
	}
	var portals []*agentapi.Portal
	for _, p := range a.portals {
		if p.Transport == req.GetTransport() {
			portals = append(portals, proto.Clone(p).(*agentapi.Portal))
		}
	}
	if len(portals) == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "no %v portal", req.GetTransport())
	}
	if req.GetDhchapHostKey() != "" {
		a.keys[req.GetHostNqn()] = [2]string{req.GetDhchapHostKey(), req.GetDhchapCtrlKey()}
	}
	i := slices.IndexFunc(v.Hosts, func(h *agentapi.Host) bool { return h.Nqn == req.GetHostNqn() })
	if i >= 0 && v.Hosts[i].ReadOnly != req.GetReadOnly() {
		return nil, status.Errorf(codes.AlreadyExists, "published to %s with read_only=%v", req.GetHostNqn(), v.Hosts[i].ReadOnly)
	}
	if i < 0 {
		v.Hosts = append(v.Hosts, &agentapi.Host{Nqn: req.GetHostNqn(), NodeId: req.GetNodeId(), ReadOnly: req.GetReadOnly()})
	}
	return &agentapi.PublishVolumeResponse{
		SubsystemNqn: a.subsystemNQN(v.Id, req.GetHostNqn()), Transport: req.GetTransport(), Portals: portals, NamespaceUuid: v.Uuid,
	}, nil
}

// UnpublishVolume implements agentapi.AgentClient.
func (a *Agent) UnpublishVolume(ctx context.Context, req *agentapi.UnpublishVolumeRequest, _ ...grpc.CallOption) (*agentapi.UnpublishVolumeResponse, error) {
	if err := a.begin(ctx, "UnpublishVolume"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	v, ok := a.volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	v.Hosts = slices.DeleteFunc(v.Hosts, func(h *agentapi.Host) bool { return h.Nqn == req.GetHostNqn() })
	return &agentapi.UnpublishVolumeResponse{}, nil
}

// HostNodes implements agentapi.AgentClient.
func (a *Agent) HostNodes(ctx context.Context, req *agentapi.HostNodesRequest, _ ...grpc.CallOption) (*agentapi.HostNodesResponse, error) {
	if err := a.begin(ctx, "HostNodes"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	var ids []string
	for _, v := range a.volumes {
		for _, h := range v.Hosts {
			if h.Nqn == req.GetHostNqn() && !slices.Contains(ids, h.NodeId) {
				ids = append(ids, h.NodeId)
			}
		}
	}
	slices.Sort(ids)
	return &agentapi.HostNodesResponse{NodeIds: ids}, nil
}

// ListExports implements agentapi.AgentClient: the fake has no kernel target, so no exports.
func (a *Agent) ListExports(ctx context.Context, _ *agentapi.ListExportsRequest, _ ...grpc.CallOption) (*agentapi.ListExportsResponse, error) {
	if err := a.begin(ctx, "ListExports"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	return &agentapi.ListExportsResponse{}, nil
}

// RemoveOrphans implements agentapi.AgentClient: nothing is an orphan in the fake.
func (a *Agent) RemoveOrphans(ctx context.Context, _ *agentapi.RemoveOrphansRequest, _ ...grpc.CallOption) (*agentapi.RemoveOrphansResponse, error) {
	if err := a.begin(ctx, "RemoveOrphans"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	return &agentapi.RemoveOrphansResponse{}, nil
}
