package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// publishVolume is NodePublishVolume: bind-mount the staged file system onto the target
// directory, or the namespace's block device onto a target file.
func (n *Node) publishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	r, err := parsePublish(req)
	if err != nil {
		return nil, err
	}
	return &csi.NodePublishVolumeResponse{}, n.publish(ctx, r)
}

func (n *Node) publish(ctx context.Context, r publishRequest) error {
	log := klog.FromContext(ctx).WithValues("volumeID", r.volumeID, "targetPath", r.targetPath)
	source, err := n.publishSource(r)
	if err != nil {
		return err
	}
	mounted, err := n.opts.Mounter.IsMountPoint(r.targetPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if mounted {
		same, err := n.sameDevice(r.targetPath, source)
		if err != nil {
			return err
		}
		if !same {
			return rpcerr.Existsf("target path %s is already mounted from something else than volume %s", r.targetPath, r.volumeID)
		}
		log.V(2).Info("Volume already published")
		return nil
	}

	if r.cap.SingleWriter {
		if err := n.onlyPublication(r); err != nil {
			return err
		}
	}
	created, err := makeTarget(r.targetPath, r.cap.Block)
	if err != nil {
		return err
	}
	opts := []string{"bind"}
	if r.readOnly {
		opts = append(opts, "ro")
	}
	if !r.cap.Block {
		opts = append(opts, r.cap.MountFlags...)
	}
	if err := n.opts.Mounter.Mount(ctx, source, r.targetPath, "", opts); err != nil {
		// Leave nothing half-done: a bind remount ("ro") may have failed after the bind.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.CleanupTimeout)
		defer cancel()
		if uerr := n.opts.Mounter.Unmount(cctx, r.targetPath); uerr != nil {
			return fmt.Errorf("%w (and unmounting it again: %v)", err, uerr)
		}
		if created {
			_ = os.Remove(r.targetPath)
		}
		return err
	}
	log.Info("Published", "source", source, "readOnly", r.readOnly, "block", r.cap.Block)
	return nil
}

// publishSource is what gets bind-mounted: the staging mount for a filesystem volume, the
// namespace device for a block volume.
func (n *Node) publishSource(r publishRequest) (string, error) {
	if !r.cap.Block {
		mounted, err := n.opts.Mounter.IsMountPoint(r.stagingPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if !mounted {
			return "", rpcerr.Preconditionf("volume %s is not staged at %s", r.volumeID, r.stagingPath)
		}
		return r.stagingPath, nil
	}
	st, err := n.stash.load(r.volumeID)
	if err != nil {
		return "", err
	}
	if st == nil {
		return "", rpcerr.Preconditionf("volume %s is not staged on this node", r.volumeID)
	}
	if !st.Block {
		return "", rpcerr.Preconditionf("volume %s is staged as a filesystem volume, not a block volume", r.volumeID)
	}
	dev, err := n.opts.Connector.FindNamespace(st.SubsysNQN, st.NSUUID)
	if errors.Is(err, nvme.ErrNotFound) {
		return "", rpcerr.Unavailablef("volume %s is staged but its namespace is not connected: %v", r.volumeID, err)
	}
	if err != nil {
		return "", err
	}
	if err := n.opts.Connector.VerifyDevice(dev, st.SubsysNQN, st.NSUUID); err != nil {
		return "", err
	}
	return dev, nil
}

// makeTarget creates the publish target (a directory, or a file for a block device) and its
// parent, and reports whether it created the target itself.
func makeTarget(path string, file bool) (bool, error) {
	if _, err := os.Lstat(path); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return false, err
	}
	if !file {
		return true, os.Mkdir(path, 0o750)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return false, err
	}
	return true, f.Close()
}

// unpublishVolume is NodeUnpublishVolume: unmount the target and remove it. A target that
// does not exist or is not mounted is fine.
func (n *Node) unpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	volumeID, targetPath := req.GetVolumeId(), req.GetTargetPath()
	if err := checkVolumePath(volumeID, "target_path", targetPath, rpcerr.ErrInvalid); err != nil {
		return nil, err
	}
	if err := n.opts.Mounter.CleanupMountPoint(ctx, targetPath); err != nil {
		return nil, err
	}
	klog.FromContext(ctx).Info("Unpublished", "volumeID", volumeID, "targetPath", targetPath)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// onlyPublication fails with FailedPrecondition when a SINGLE_NODE_SINGLE_WRITER volume is
// already published at another target path on this node.
func (n *Node) onlyPublication(r publishRequest) error {
	st, err := n.stash.load(r.volumeID)
	if err != nil || st == nil {
		return err
	}
	dev, err := n.opts.Connector.FindNamespace(st.SubsysNQN, st.NSUUID)
	if err != nil {
		return err
	}
	mounts, err := n.opts.Mounter.DeviceMounts(dev)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m != r.stagingPath && m != r.targetPath {
			return rpcerr.Preconditionf("volume %s has access mode SINGLE_NODE_SINGLE_WRITER and is already published at %s", r.volumeID, m)
		}
	}
	return nil
}
