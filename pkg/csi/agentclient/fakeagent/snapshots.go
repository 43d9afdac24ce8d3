package fakeagent

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// CreateSnapshot implements agentapi.AgentClient.
func (a *Agent) CreateSnapshot(ctx context.Context, req *agentapi.CreateSnapshotRequest, _ ...grpc.CallOption) (*agentapi.CreateSnapshotResponse, error) {
	if err := a.begin(ctx, "CreateSnapshot"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	if len(req.GetName()) == 0 || len(req.GetName()) > 128 {
		return nil, status.Errorf(codes.InvalidArgument, "bad name %q", req.GetName())
	}
	id := agentapi.SnapshotID(req.GetName())
	if s, ok := a.snapshots[id]; ok {
		if s.SourceVolumeId != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists with source %s", req.GetName(), s.SourceVolumeId)
		}
		return &agentapi.CreateSnapshotResponse{Snapshot: proto.Clone(s).(*agentapi.Snapshot)}, nil
	}
	v, ok := a.volumes[req.GetSourceVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetSourceVolumeId())
	}
	a.clock += int64(1e9)
	s := &agentapi.Snapshot{Id: id, Name: req.GetName(), SourceVolumeId: v.Id, SizeBytes: v.SizeBytes, CreationTimeUnixNano: a.clock}
	a.snapshots[id] = s
	return &agentapi.CreateSnapshotResponse{Snapshot: proto.Clone(s).(*agentapi.Snapshot)}, nil
}

// DeleteSnapshot implements agentapi.AgentClient.
func (a *Agent) DeleteSnapshot(ctx context.Context, req *agentapi.DeleteSnapshotRequest, _ ...grpc.CallOption) (*agentapi.DeleteSnapshotResponse, error) {
	if err := a.begin(ctx, "DeleteSnapshot"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	if _, ok := a.snapshots[req.GetId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "snapshot %s not found", req.GetId())
	}
	delete(a.snapshots, req.GetId())
	return &agentapi.DeleteSnapshotResponse{}, nil
}

// GetSnapshot implements agentapi.AgentClient.
func (a *Agent) GetSnapshot(ctx context.Context, req *agentapi.GetSnapshotRequest, _ ...grpc.CallOption) (*agentapi.GetSnapshotResponse, error) {
	if err := a.begin(ctx, "GetSnapshot"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	s, ok := a.snapshots[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "snapshot %s not found", req.GetId())
	}
	return &agentapi.GetSnapshotResponse{Snapshot: proto.Clone(s).(*agentapi.Snapshot)}, nil
}

// ListSnapshots implements agentapi.AgentClient (map order).
func (a *Agent) ListSnapshots(ctx context.Context, _ *agentapi.ListSnapshotsRequest, _ ...grpc.CallOption) (*agentapi.ListSnapshotsResponse, error) {
	if err := a.begin(ctx, "ListSnapshots"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	resp := &agentapi.ListSnapshotsResponse{}
	for _, s := range a.snapshots {
		resp.Snapshots = append(resp.Snapshots, proto.Clone(s).(*agentapi.Snapshot))
	}
	return resp, nil
}
