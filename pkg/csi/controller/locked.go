package controller

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// This file is the concurrency policy and nothing else: each mutating RPC takes the try-lock
// of the name (Create*) or ID it works on and runs the lock-free logic; a busy key is
// codes.Aborted at once (the CO retries with back-off). Read-only RPCs run unlocked. Every
// error leaves through rpcerr.Result.

// Lock key namespaces: names and IDs of volumes and snapshots never collide.
const (
	keyVolumeName   = "volume-name/"
	keySnapshotName = "snapshot-name/"
	keyVolumeID     = "volume/"
	keySnapshotID   = "snapshot/"
)

// locked runs logic(ctx, req) holding the lock of prefix+id (see keylock.Do); an empty id
// takes no lock, the logic rejects it as a missing field.
func locked[Req, Resp any](ctx context.Context, c *Controller, prefix, id string, req Req, logic func(context.Context, Req) (Resp, error)) (Resp, error) {
	key := ""
	if id != "" {
		key = prefix + id
	}
	return rpcerr.Result(keylock.Do(ctx, &c.locks, key, func(ctx context.Context) (Resp, error) { return logic(ctx, req) }))
}

// CreateVolume implements csi.ControllerServer.
func (c *Controller) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	return locked(ctx, c, keyVolumeName, req.GetName(), req, c.createVolume)
}

// DeleteVolume implements csi.ControllerServer.
func (c *Controller) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	return locked(ctx, c, keyVolumeID, req.GetVolumeId(), req, c.deleteVolume)
}

// ControllerPublishVolume implements csi.ControllerServer.
func (c *Controller) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	return locked(ctx, c, keyVolumeID, req.GetVolumeId(), req, c.publishVolume)
}

// ControllerUnpublishVolume implements csi.ControllerServer.
func (c *Controller) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	return locked(ctx, c, keyVolumeID, req.GetVolumeId(), req, c.unpublishVolume)
}

// ControllerExpandVolume implements csi.ControllerServer.
func (c *Controller) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	return locked(ctx, c, keyVolumeID, req.GetVolumeId(), req, c.expandVolume)
}

// CreateSnapshot implements csi.ControllerServer.
func (c *Controller) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	return locked(ctx, c, keySnapshotName, req.GetName(), req, c.createSnapshot)
}

// DeleteSnapshot implements csi.ControllerServer.
func (c *Controller) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	return locked(ctx, c, keySnapshotID, req.GetSnapshotId(), req, c.deleteSnapshot)
}

// ValidateVolumeCapabilities implements csi.ControllerServer.
func (c *Controller) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	return rpcerr.Result(c.validateVolumeCapabilities(ctx, req))
}

// ListVolumes implements csi.ControllerServer.
func (c *Controller) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	return rpcerr.Result(c.listVolumes(ctx, req))
}

// ControllerGetVolume implements csi.ControllerServer.
func (c *Controller) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	return rpcerr.Result(c.getVolume(ctx, req))
}

// GetCapacity implements csi.ControllerServer.
func (c *Controller) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	return rpcerr.Result(c.getCapacity(ctx, req))
}

// ListSnapshots implements csi.ControllerServer.
func (c *Controller) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	return rpcerr.Result(c.listSnapshots(ctx, req))
}

// GetSnapshot implements csi.ControllerServer.
func (c *Controller) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	return rpcerr.Result(c.getSnapshot(ctx, req))
}

// ControllerGetVolumeHealth implements csi.ControllerServer.
func (c *Controller) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	return rpcerr.Result(c.getVolumeHealth(ctx, req))
}

// ControllerListVolumeHealth implements csi.ControllerServer.
func (c *Controller) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	return rpcerr.Result(c.listVolumeHealth(ctx, req))
}
