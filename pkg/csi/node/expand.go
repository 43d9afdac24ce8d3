package node

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// expandVolume is NodeExpandVolume: make the kernel re-read the namespace size, wait until
// the device reaches the requested size, then grow the file system online (a block volume only
// needs the rescan). It returns the device's size.
func (n *Node) expandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	volumeID, volumePath := req.GetVolumeId(), req.GetVolumePath()
	if err := checkVolumePath(volumeID, "volume_path", volumePath, rpcerr.ErrNotFound, "staging_target_path", req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	var block *bool
	if c := req.GetVolumeCapability(); c != nil {
		vc, err := contract.ParseCapability(c)
		if err != nil {
			return nil, err
		}
		block = &vc.Block
	}
	size, err := n.expand(ctx, volumeID, volumePath, req.GetStagingTargetPath(), req.GetCapacityRange().GetRequiredBytes(), block)
	if err != nil {
		return nil, err
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

func (n *Node) expand(ctx context.Context, volumeID, volumePath, stagingPath string, required int64, block *bool) (int64, error) {
	log := klog.FromContext(ctx).WithValues("volumeID", volumeID)
	st, err := n.stash.load(volumeID)
	if err != nil {
		return 0, err
	}
	if st == nil {
		return 0, rpcerr.NotFoundf("volume %s is not staged on this node", volumeID)
	}
	if _, err := os.Stat(volumePath); errors.Is(err, fs.ErrNotExist) {
		return 0, rpcerr.NotFoundf("volume path %s does not exist", volumePath)
	} else if err != nil {
		return 0, err
	}
	if block != nil && *block != st.Block {
		return 0, rpcerr.Invalidf("volume %s is staged with block=%t, the request says block=%t", volumeID, st.Block, *block)
	}
	dev, err := n.opts.Connector.FindNamespace(st.SubsysNQN, st.NSUUID)
	if errors.Is(err, nvme.ErrNotFound) {
		return 0, rpcerr.Unavailablef("the namespace of volume %s is not connected: %v", volumeID, err)
	}
	if err != nil {
		return 0, err
	}
	if err := n.opts.Connector.Rescan(dev); err != nil {
		return 0, err
	}
	size, err := n.waitForSize(ctx, dev, required)
	if err != nil {
		return 0, err
	}
	if st.Block {
		log.Info("Expanded block volume", "device", dev, "size", size)
		return size, nil
	}
	mountPath := volumePath
	if stagingPath != "" {
		if mounted, _ := n.opts.Mounter.IsMountPoint(stagingPath); mounted {
			mountPath = stagingPath
		}
	}
	if err := n.growFilesystem(ctx, dev, mountPath); err != nil {
		return 0, err
	}
	log.Info("Expanded filesystem volume", "device", dev, "size", size, "mountPath", mountPath)
	return size, nil
}

// waitForSize polls the device's size until it reaches required (after a rescan the kernel
// updates it asynchronously), bounded by ctx and GrowTimeout.
func (n *Node) waitForSize(ctx context.Context, dev string, required int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, n.opts.GrowTimeout)
	defer cancel()
	t := time.NewTicker(n.opts.PollInterval)
	defer t.Stop()
	for {
		size, err := n.opts.Connector.DeviceSize(dev)
		if err != nil {
			return 0, err
		}
		if size >= required {
			return size, nil
		}
		select {
		case <-ctx.Done():
			return 0, rpcerr.Unavailablef("%s is %d bytes, not the requested %d (has the volume been expanded on the storage node?): %v", dev, size, required, ctx.Err())
		case <-t.C:
		}
	}
}

// growFilesystem grows the file system on dev, mounted at mountPath, to the device's size
// when its tools say it may be smaller.
func (n *Node) growFilesystem(ctx context.Context, dev, mountPath string) error {
	need, err := n.opts.Mounter.NeedResize(ctx, dev, mountPath)
	if err != nil || !need {
		return err
	}
	if _, err := n.opts.Mounter.Resize(ctx, dev, mountPath); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Grew the file system to the device", "device", dev, "mountPath", mountPath)
	return nil
}
