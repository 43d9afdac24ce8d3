package controller

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// deleteVolume deletes a volume. A volume that does not exist (malformed ID, storage node not
// configured, unknown to the agent) is already deleted: OK. A volume still published is
// FailedPrecondition (from the agent).
func (c *Controller) deleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, rpcerr.Invalidf("volume ID is required")
	}
	t, err := c.resolve(req.GetVolumeId(), kindVolume)
	if err != nil {
		klog.FromContext(ctx).Info("Deleting a volume that cannot exist: nothing to do", "volumeID", req.GetVolumeId(), "reason", err)
		return &csi.DeleteVolumeResponse{}, nil
	}
	_, err = t.agent.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: t.agentID})
	if err != nil && !rpcerr.IsCode(err, codes.NotFound) {
		return nil, fmt.Errorf("storage node %s: delete volume %s: %w", t.node.Name, t.agentID, err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// getAgentVolume fetches a volume by CSI ID; a missing one is NotFound.
func (c *Controller) getAgentVolume(ctx context.Context, id string) (target, *agentapi.Volume, error) {
	if id == "" {
		return target{}, nil, rpcerr.Invalidf("volume ID is required")
	}
	t, err := c.resolve(id, kindVolume)
	if err != nil {
		return target{}, nil, err
	}
	resp, err := t.agent.GetVolume(ctx, &agentapi.GetVolumeRequest{Id: t.agentID})
	if err != nil {
		return t, nil, fmt.Errorf("storage node %s: volume %s: %w", t.node.Name, t.agentID, err)
	}
	return t, resp.GetVolume(), nil
}

// expandVolume grows a volume to the requested size rounded up to whole extents. A volume
// already that large is left alone (idempotent; a smaller request never shrinks it).
// Filesystem volumes need NodeExpandVolume afterwards, block volumes do not.
func (c *Controller) expandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, rpcerr.Invalidf("volume ID is required")
	}
	r := req.GetCapacityRange()
	if r == nil {
		return nil, rpcerr.Invalidf("capacity range is required")
	}
	if r.GetRequiredBytes() <= 0 && r.GetLimitBytes() <= 0 {
		return nil, rpcerr.Invalidf("capacity range needs required_bytes or limit_bytes")
	}
	if c := req.GetVolumeCapability(); c != nil {
		if _, err := contract.ParseCapability(c); err != nil {
			return nil, err
		}
	}
	size, err := volumeSize(r, 0)
	if err != nil {
		return nil, err
	}
	t, vol, err := c.getAgentVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	nodeExpansion := req.GetVolumeCapability().GetBlock() == nil
	if vol.GetSizeBytes() >= size {
		if lim := r.GetLimitBytes(); lim > 0 && vol.GetSizeBytes() > lim {
			return nil, rpcerr.OutOfRangef("volume is %d bytes already, more than limit_bytes %d; volumes do not shrink", vol.GetSizeBytes(), lim)
		}
		return &csi.ControllerExpandVolumeResponse{CapacityBytes: vol.GetSizeBytes(), NodeExpansionRequired: nodeExpansion}, nil
	}
	resp, err := t.agent.ExpandVolume(ctx, &agentapi.ExpandVolumeRequest{Id: t.agentID, SizeBytes: size, LimitBytes: r.GetLimitBytes()})
	if err != nil {
		return nil, fmt.Errorf("storage node %s: expand volume %s to %d bytes: %w", t.node.Name, t.agentID, size, err)
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: resp.GetVolume().GetSizeBytes(), NodeExpansionRequired: nodeExpansion}, nil
}

// validateVolumeCapabilities confirms capabilities, parameters and volume context this
// driver supports for an existing volume; otherwise it answers unconfirmed with the reason.
func (c *Controller) validateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, rpcerr.Invalidf("volume ID is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, rpcerr.Invalidf("volume capabilities are required")
	}
	if _, _, err := c.getAgentVolume(ctx, req.GetVolumeId()); err != nil {
		return nil, err
	}
	unconfirmed := func(err error) (*csi.ValidateVolumeCapabilitiesResponse, error) {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if _, err := contract.ParseCapabilities(req.GetVolumeCapabilities()); err != nil {
		return unconfirmed(err)
	}
	if _, err := contract.ParseParams(req.GetParameters()); err != nil {
		return unconfirmed(fmt.Errorf("parameters: %w", err))
	}
	if _, err := contract.ParseParams(req.GetVolumeContext()); err != nil {
		return unconfirmed(fmt.Errorf("volume context: %w", err))
	}
	if len(req.GetMutableParameters()) > 0 {
		return unconfirmed(fmt.Errorf("mutable parameters are not supported"))
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// getVolume describes a volume with the nodes it is published to.
func (c *Controller) getVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	t, vol, err := c.getAgentVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: csiVolume(t.node, vol),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: publishedNodeIDs(vol)},
	}, nil
}
