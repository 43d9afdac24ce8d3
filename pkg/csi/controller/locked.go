package controller

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file is the concurrency policy and nothing else: each mutating RPC takes the try-lock
// of the name (Create*) or ID it works on and runs the lock-free logic; a busy key is
// codes.Aborted at once (the CO retries with back-off). Read-only RPCs run unlocked. Every
// error leaves through toStatus.

// Lock key namespaces: names and IDs of volumes and snapshots never collide.
const (
	keyVolumeName   = "volume-name/"
	keySnapshotName = "snapshot-name/"
	keyVolumeID     = "volume/"
	keySnapshotID   = "snapshot/"
)

// locked runs fn holding the lock of prefix+id, or fails with Aborted if another call holds
// it. An empty id takes no lock: the logic rejects it as a missing field.
func locked[T any](c *Controller, prefix, id string, fn func() (T, error)) (T, error) {
	if id != "" {
		key := prefix + id
		if !c.locks.TryLock(key) {
			var zero T
			return zero, status.Errorf(codes.Aborted, "an operation on %s is already in progress", key)
		}
		defer c.locks.Unlock(key)
	}
	resp, err := fn()
	if err != nil {
		var zero T
		return zero, toStatus(err)
	}
	return resp, nil
}

// unlocked maps the error of a read-only call.
func unlocked[T any](resp T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, toStatus(err)
	}
	return resp, nil
}

// CreateVolume implements csi.ControllerServer.
func (c *Controller) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	return locked(c, keyVolumeName, req.GetName(), func() (*csi.CreateVolumeResponse, error) { return c.createVolume(ctx, req) })
}

// DeleteVolume implements csi.ControllerServer.
func (c *Controller) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	return locked(c, keyVolumeID, req.GetVolumeId(), func() (*csi.DeleteVolumeResponse, error) { return c.deleteVolume(ctx, req) })
}

// ControllerPublishVolume implements csi.ControllerServer.
func (c *Controller) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	return locked(c, keyVolumeID, req.GetVolumeId(), func() (*csi.ControllerPublishVolumeResponse, error) { return c.publishVolume(ctx, req) })
}

// ControllerUnpublishVolume implements csi.ControllerServer.
func (c *Controller) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	return locked(c, keyVolumeID, req.GetVolumeId(), func() (*csi.ControllerUnpublishVolumeResponse, error) { return c.unpublishVolume(ctx, req) })
}

// ControllerExpandVolume implements csi.ControllerServer.
func (c *Controller) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	return locked(c, keyVolumeID, req.GetVolumeId(), func() (*csi.ControllerExpandVolumeResponse, error) { return c.expandVolume(ctx, req) })
}

// CreateSnapshot implements csi.ControllerServer.
func (c *Controller) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	return locked(c, keySnapshotName, req.GetName(), func() (*csi.CreateSnapshotResponse, error) { return c.createSnapshot(ctx, req) })
}

// DeleteSnapshot implements csi.ControllerServer.
func (c *Controller) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	return locked(c, keySnapshotID, req.GetSnapshotId(), func() (*csi.DeleteSnapshotResponse, error) { return c.deleteSnapshot(ctx, req) })
}

// ValidateVolumeCapabilities implements csi.ControllerServer.
func (c *Controller) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	return unlocked(c.validateVolumeCapabilities(ctx, req))
}

// ListVolumes implements csi.ControllerServer.
func (c *Controller) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	return unlocked(c.listVolumes(ctx, req))
}

// ControllerGetVolume implements csi.ControllerServer.
func (c *Controller) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	return unlocked(c.getVolume(ctx, req))
}

// GetCapacity implements csi.ControllerServer.
func (c *Controller) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	return unlocked(c.getCapacity(ctx, req))
}

// ListSnapshots implements csi.ControllerServer.
func (c *Controller) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	return unlocked(c.listSnapshots(ctx, req))
}

// GetSnapshot implements csi.ControllerServer.
func (c *Controller) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	return unlocked(c.getSnapshot(ctx, req))
}

// ControllerGetVolumeHealth implements csi.ControllerServer.
func (c *Controller) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	return unlocked(c.getVolumeHealth(ctx, req))
}

// ControllerListVolumeHealth implements csi.ControllerServer.
func (c *Controller) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	return unlocked(c.listVolumeHealth(ctx, req))
}
