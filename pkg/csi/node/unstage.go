package node

import (
	"context"
	"errors"
	"io/fs"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// unstageVolume is NodeUnstageVolume: unmount the staging path, then disconnect the volume's
// subsystem and confirm in sysfs that its controllers are gone. It fails (so that kubelet
// retries) as long as any step is not done; a volume already unstaged is fine.
func (n *Node) unstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	volumeID, stagingPath := req.GetVolumeId(), req.GetStagingTargetPath()
	if err := checkVolumePath(volumeID, "staging_target_path", stagingPath, rpcerr.ErrInvalid); err != nil {
		return nil, err
	}
	return &csi.NodeUnstageVolumeResponse{}, n.unstage(ctx, volumeID, stagingPath)
}

func (n *Node) unstage(ctx context.Context, volumeID, stagingPath string) error {
	log := klog.FromContext(ctx).WithValues("volumeID", volumeID)
	ctx = klog.NewContext(ctx, log)
	st, err := n.stash.load(volumeID)
	if err != nil {
		return err
	}
	// Unmount whatever is at the staging path (nothing for block volumes). The directory
	// itself belongs to kubelet, which removes it.
	if err := n.opts.Mounter.Unmount(ctx, stagingPath); err != nil {
		return err
	}
	if st == nil {
		log.V(2).Info("No stash: nothing staged or already unstaged", "stagingPath", stagingPath)
		return nil
	}
	if st.StagingPath != stagingPath {
		log.Info("Unstaging from another path than the stash records", "stagingPath", stagingPath, "stashed", st.StagingPath)
	}
	if err := n.checkUnused(st); err != nil {
		return err
	}
	if err := n.disconnect(ctx, st.SubsysNQN); err != nil {
		return err
	}
	if err := n.stash.remove(volumeID); err != nil {
		return err
	}
	log.Info("Unstaged", "subsysNQN", st.SubsysNQN, "stagingPath", stagingPath)
	return nil
}

// checkUnused refuses to disconnect a namespace that is still mounted somewhere (a publish
// bind mount not yet removed): the kernel would drop its I/O.
func (n *Node) checkUnused(st *volumeStash) error {
	dev, err := n.opts.Connector.FindNamespace(st.SubsysNQN, st.NSUUID)
	if errors.Is(err, nvme.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	refs, err := n.opts.Mounter.DeviceMounts(dev)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(refs) > 0 {
		return rpcerr.Preconditionf("%s (volume %s) is still mounted at %s: unpublish it first; not disconnecting",
			dev, st.VolumeID, strings.Join(refs, ", "))
	}
	return nil
}
