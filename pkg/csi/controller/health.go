package controller

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// Volume health, as the controller sees it: a thin pool running out of data or metadata space
// makes writes to unallocated blocks fail (DEGRADED), and a storage node whose agent does not
// answer cannot publish, expand or snapshot the volume (DEGRADED: the data path may still
// work, the controller cannot tell).

// PoolFullPercent is the thin-pool data or metadata usage from which its volumes are reported
// DEGRADED.
const PoolFullPercent = 95

// Health reasons (CamelCase, for machines).
const (
	ReasonPoolDataFull     = "ThinPoolDataNearlyFull"
	ReasonPoolMetadataFull = "ThinPoolMetadataNearlyFull"
	ReasonAgentUnreachable = "StorageNodeAgentUnreachable"
)

// poolHealth is the health every volume of a pool shares.
func poolHealth(node string, cap *agentapi.GetCapacityResponse) []*csi.VolumeHealth_VolumeHealthEntry {
	var out []*csi.VolumeHealth_VolumeHealthEntry
	check := func(used, total int64, reason, what string) {
		if total > 0 && used*100 >= total*PoolFullPercent {
			out = append(out, &csi.VolumeHealth_VolumeHealthEntry{
				Status:  csi.VolumeHealthErrorType_DEGRADED,
				Reason:  reason,
				Message: fmt.Sprintf("the thin pool of storage node %s has used %d%% of its %s; writes to unallocated blocks may fail", node, used*100/total, what),
			})
		}
	}
	check(cap.GetDataUsedBytes(), cap.GetDataBytes(), ReasonPoolDataFull, "data space")
	check(cap.GetMetadataUsedBytes(), cap.GetMetadataBytes(), ReasonPoolMetadataFull, "metadata space")
	return out
}

func unreachable(node string, err error) []*csi.VolumeHealth_VolumeHealthEntry {
	return []*csi.VolumeHealth_VolumeHealthEntry{{
		Status:  csi.VolumeHealthErrorType_DEGRADED,
		Reason:  ReasonAgentUnreachable,
		Message: fmt.Sprintf("the agent of storage node %s does not answer (%v): the volume cannot be published, expanded or snapshotted; I/O of connected nodes may continue", node, err),
	}}
}

// getVolumeHealth reports one volume's health. An unknown volume is NotFound; a volume whose
// agent does not answer is reported, not failed.
func (c *Controller) getVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	t, _, err := c.getAgentVolume(ctx, req.GetVolumeId())
	health := &csi.VolumeHealth{VolumeId: req.GetVolumeId()}
	switch {
	case rpcerr.IsCode(err, codes.Unavailable) || rpcerr.IsCode(err, codes.DeadlineExceeded):
		health.HealthStatuses = unreachable(t.node.Name, err)
		return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: health}, nil
	case err != nil:
		return nil, err
	}
	if capResp, err := t.agent.GetCapacity(ctx, &agentapi.GetCapacityRequest{}); err == nil {
		health.HealthStatuses = poolHealth(t.node.Name, capResp)
	} else {
		logSkipped(ctx, t.node.Name, err, "GetCapacity")
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: health}, nil
}

// poolState is one storage node's volumes and pool usage.
type poolState struct {
	volumes []*agentapi.Volume
	cap     *agentapi.GetCapacityResponse
}

// listVolumeHealth lists the volumes with an adverse condition. Volumes of a storage node
// whose agent does not answer cannot be listed; they are left out (and logged).
func (c *Controller) listVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	if _, _, err := paginate[struct{}](nil, kindVolume, req.GetStartingToken(), req.GetMaxEntries()); err != nil {
		return nil, err
	}
	answers := fanOut(ctx, c, c.nodes, func(ctx context.Context, a agentapi.AgentClient) (poolState, error) {
		capResp, err := a.GetCapacity(ctx, &agentapi.GetCapacityRequest{})
		if err != nil {
			return poolState{}, err
		}
		vols, err := listVolumesOf(ctx, a)
		return poolState{volumes: vols, cap: capResp}, err
	})
	var entries []keyed[*csi.VolumeHealth]
	for _, a := range answers {
		if a.err != nil {
			logSkipped(ctx, a.node.Name, a.err, "volume health")
			continue
		}
		entries = append(entries, unhealthy(a.node, a.val)...)
	}
	page, next, err := paginate(entries, kindVolume, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	return &csi.ControllerListVolumeHealthResponse{Entries: page, NextToken: next}, nil
}

func unhealthy(node agentclient.StorageNode, p poolState) []keyed[*csi.VolumeHealth] {
	statuses := poolHealth(node.Name, p.cap)
	if len(statuses) == 0 {
		return nil
	}
	var out []keyed[*csi.VolumeHealth]
	for _, v := range p.volumes {
		id := contract.ObjectID(node.Name, v.GetId())
		out = append(out, keyed[*csi.VolumeHealth]{
			key: sortKey(node.Name, v.GetId()),
			id:  id,
			val: &csi.VolumeHealth{VolumeId: id, HealthStatuses: statuses},
		})
	}
	return out
}
