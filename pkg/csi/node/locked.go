package node

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/keylock"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// This file is the concurrency policy and nothing else, as in the controller: each RPC that
// changes a volume's state on this node takes the volume's try-lock and runs the lock-free
// logic; a busy volume is codes.Aborted at once (kubelet retries). The lock stays held while
// work the call started goes on after it returned (a mkfs that could not be reaped, a
// connect the kernel has not answered; see keylock.Outlive). Read-only RPCs run unlocked.
// Every error leaves through rpcerr.Result.

// locked runs logic(ctx, req) holding the lock of volumeID; an empty ID takes no lock, the
// logic rejects it as a missing field.
func locked[Req, Resp any](ctx context.Context, n *Node, volumeID string, req Req, logic func(context.Context, Req) (Resp, error)) (Resp, error) {
	return rpcerr.Result(keylock.Do(ctx, &n.volumes, volumeID, func(ctx context.Context) (Resp, error) { return logic(ctx, req) }))
}

// NodeStageVolume implements csi.NodeServer.
func (n *Node) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	return locked(ctx, n, req.GetVolumeId(), req, n.stageVolume)
}

// NodeUnstageVolume implements csi.NodeServer.
func (n *Node) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	return locked(ctx, n, req.GetVolumeId(), req, n.unstageVolume)
}

// NodePublishVolume implements csi.NodeServer.
func (n *Node) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	return locked(ctx, n, req.GetVolumeId(), req, n.publishVolume)
}

// NodeUnpublishVolume implements csi.NodeServer.
func (n *Node) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	return locked(ctx, n, req.GetVolumeId(), req, n.unpublishVolume)
}

// NodeExpandVolume implements csi.NodeServer.
func (n *Node) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	return locked(ctx, n, req.GetVolumeId(), req, n.expandVolume)
}

// NodeGetVolumeStats implements csi.NodeServer. It takes no lock: it only reads.
func (n *Node) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	return rpcerr.Result(n.volumeStats(ctx, req))
}

// NodeGetVolumeHealth implements csi.NodeServer. It takes no lock: it only reads.
func (n *Node) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	return rpcerr.Result(n.volumeHealth(ctx, req))
}
