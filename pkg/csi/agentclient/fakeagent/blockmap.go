package fakeagent

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// GetBlockMap implements agentapi.AgentClient.
func (a *Agent) GetBlockMap(context.Context, *agentapi.GetBlockMapRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[agentapi.GetBlockMapResponse], error) {
	return nil, status.Error(codes.Unimplemented, "fakeagent: GetBlockMap")
}
