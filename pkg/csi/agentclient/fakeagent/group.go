package fakeagent

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// Holds returns the IDs of the HoldWrites holds in force.
func (a *Agent) Holds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for id := range a.holds {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// HoldWrites implements agentapi.AgentClient. Holds never expire by themselves here: a test
// that needs an expired hold releases it (ReleaseWrites) or injects an error.
func (a *Agent) HoldWrites(ctx context.Context, req *agentapi.HoldWritesRequest, _ ...grpc.CallOption) (*agentapi.HoldWritesResponse, error) {
	if err := a.begin(ctx, "HoldWrites"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	if req.GetHoldId() == "" || len(req.GetVolumeIds()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "hold_id and volume_ids are required")
	}
	for _, v := range req.GetVolumeIds() {
		if _, ok := a.volumes[v]; !ok {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", v)
		}
	}
	if a.holds == nil {
		a.holds = map[string][]string{}
	}
	a.holds[req.GetHoldId()] = slices.Clone(req.GetVolumeIds())
	return &agentapi.HoldWritesResponse{ExpiresUnixNano: a.clock + req.GetTimeoutMs()*1e6}, nil
}

// ReleaseWrites implements agentapi.AgentClient.
func (a *Agent) ReleaseWrites(ctx context.Context, req *agentapi.ReleaseWritesRequest, _ ...grpc.CallOption) (*agentapi.ReleaseWritesResponse, error) {
	if err := a.begin(ctx, "ReleaseWrites"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	delete(a.holds, req.GetHoldId())
	return &agentapi.ReleaseWritesResponse{}, nil
}

// CreateGroupSnapshot implements agentapi.AgentClient with the agent's semantics: under the
// hold of hold_id (which it ends; unknown: Aborted) or a hold of its own; all members exist:
// returned; some: AlreadyExists.
func (a *Agent) CreateGroupSnapshot(ctx context.Context, req *agentapi.CreateGroupSnapshotRequest, _ ...grpc.CallOption) (*agentapi.CreateGroupSnapshotResponse, error) {
	if err := a.begin(ctx, "CreateGroupSnapshot"); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	var held []string
	if id := req.GetHoldId(); id != "" {
		var ok bool
		if held, ok = a.holds[id]; !ok {
			return nil, status.Errorf(codes.Aborted, "hold %q is not in force", id)
		}
		delete(a.holds, id)
	}
	resp := &agentapi.CreateGroupSnapshotResponse{HoldNanos: 1e6}
	var found int
	for _, m := range req.GetMembers() {
		if held != nil && !slices.Contains(held, m.GetSourceVolumeId()) {
			return nil, status.Errorf(codes.InvalidArgument, "%s is not held", m.GetSourceVolumeId())
		}
		if _, ok := a.volumes[m.GetSourceVolumeId()]; !ok {
			return nil, status.Errorf(codes.NotFound, "volume %s not found", m.GetSourceVolumeId())
		}
		if s, ok := a.snapshots[agentapi.SnapshotID(m.GetName())]; ok {
			if s.GroupId != req.GetGroupId() || s.SourceVolumeId != m.GetSourceVolumeId() {
				return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists in group %q", m.GetName(), s.GroupId)
			}
			found++
			resp.Snapshots = append(resp.Snapshots, proto.Clone(s).(*agentapi.Snapshot))
		}
	}
	switch found {
	case len(req.GetMembers()):
		return resp, nil
	case 0:
	default:
		return nil, status.Errorf(codes.AlreadyExists, "%d of the group's snapshots exist", found)
	}
	a.clock += int64(1e9)
	for _, m := range req.GetMembers() {
		v := a.volumes[m.GetSourceVolumeId()]
		s := &agentapi.Snapshot{Id: agentapi.SnapshotID(m.GetName()), Name: m.GetName(), SourceVolumeId: v.Id,
			SizeBytes: v.SizeBytes, CreationTimeUnixNano: a.clock, GroupId: req.GetGroupId()}
		a.snapshots[s.Id] = s
		resp.Snapshots = append(resp.Snapshots, proto.Clone(s).(*agentapi.Snapshot))
	}
	return resp, nil
}
