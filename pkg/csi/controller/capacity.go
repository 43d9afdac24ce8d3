package controller

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// getCapacity reports what may still be provisioned for a StorageClass (its storageNodes
// parameter) in a topology segment: the sum of the available capacity of the storage nodes
// accessible from the segment (all nodes without a segment), and the largest single volume
// one of them can hold. Storage nodes that do not answer count as empty: capacity is a
// scheduling hint, and an unreachable node cannot take volumes.
func (c *Controller) getCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	_, allowed, err := c.storageClass(req.GetParameters())
	if err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) > 0 {
		if _, err := contract.ParseCapabilities(req.GetVolumeCapabilities()); err != nil {
			// Volumes with these capabilities cannot be created anywhere.
			return &csi.GetCapacityResponse{}, nil
		}
	}
	var nodes []agentclient.StorageNode
	for _, n := range allowed {
		if seg := req.GetAccessibleTopology(); seg == nil || accessibleFrom(n.Topology, seg.GetSegments()) {
			nodes = append(nodes, n)
		}
	}
	answers := fanOut(ctx, c, nodes, func(ctx context.Context, a agentapi.AgentClient) (*agentapi.GetCapacityResponse, error) {
		return a.GetCapacity(ctx, &agentapi.GetCapacityRequest{})
	})
	resp := &csi.GetCapacityResponse{MinimumVolumeSize: wrapperspb.Int64(SizeUnitBytes)}
	var answered bool
	var largest int64
	for _, a := range answers {
		if a.err != nil {
			logSkipped(ctx, a.node.Name, a.err, "GetCapacity")
			continue
		}
		answered = true
		resp.AvailableCapacity += a.val.GetAvailableBytes()
		largest = max(largest, roundDown(a.val.GetMaximumVolumeBytes()))
	}
	if answered {
		resp.MaximumVolumeSize = wrapperspb.Int64(largest)
	}
	return resp, nil
}
