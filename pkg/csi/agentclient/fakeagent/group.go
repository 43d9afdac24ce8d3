package fakeagent

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// HoldWrites implements agentapi.AgentClient.
func (a *Agent) HoldWrites(context.Context, *agentapi.HoldWritesRequest, ...grpc.CallOption) (*agentapi.HoldWritesResponse, error) {
	return nil, status.Error(codes.Unimplemented, "fakeagent: HoldWrites")
}

// ReleaseWrites implements agentapi.AgentClient.
func (a *Agent) ReleaseWrites(context.Context, *agentapi.ReleaseWritesRequest, ...grpc.CallOption) (*agentapi.ReleaseWritesResponse, error) {
	return nil, status.Error(codes.Unimplemented, "fakeagent: ReleaseWrites")
}

// CreateGroupSnapshot implements agentapi.AgentClient.
func (a *Agent) CreateGroupSnapshot(context.Context, *agentapi.CreateGroupSnapshotRequest, ...grpc.CallOption) (*agentapi.CreateGroupSnapshotResponse, error) {
	return nil, status.Error(codes.Unimplemented, "fakeagent: CreateGroupSnapshot")
}
