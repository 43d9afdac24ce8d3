package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// volumeStats is NodeGetVolumeStats: bytes and inodes of a filesystem volume (statfs, no
// device I/O), the size of a block volume.
func (n *Node) volumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	volumeID, volumePath := req.GetVolumeId(), req.GetVolumePath()
	if err := checkVolumePath(volumeID, "volume_path", volumePath, rpcerr.ErrNotFound, "staging_target_path", req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	usage, err := n.usage(volumeID, volumePath)
	if err != nil {
		return nil, err
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: usage}, nil
}

func (n *Node) usage(volumeID, volumePath string) ([]*csi.VolumeUsage, error) {
	fi, err := os.Stat(volumePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, rpcerr.NotFoundf("volume path %s does not exist", volumePath)
	}
	if err != nil {
		return nil, err
	}
	mounted, err := n.opts.Mounter.IsMountPoint(volumePath)
	if err != nil {
		return nil, err
	}
	if !mounted {
		return nil, rpcerr.NotFoundf("volume %s is not published at %s", volumeID, volumePath)
	}
	if err := n.backs(volumeID, volumePath); err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		size, err := n.opts.Mounter.BlockDeviceSize(volumePath)
		if err != nil {
			return nil, rpcerr.Unavailablef("%v", err)
		}
		return []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}}, nil
	}
	s, err := n.opts.Mounter.FilesystemStats(volumePath)
	if err != nil {
		return nil, err
	}
	return []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: s.TotalBytes, Available: s.AvailableBytes, Used: s.UsedBytes},
		{Unit: csi.VolumeUsage_INODES, Total: s.TotalInodes, Available: s.AvailableInodes, Used: s.UsedInodes},
	}, nil
}

// backs checks that volumePath is a mount of volumeID's namespace on this node, so that stats
// are never reported for another volume's path: NotFound when the volume is not staged here
// or the path is backed by another device.
func (n *Node) backs(volumeID, volumePath string) error {
	st, err := n.stash.load(volumeID)
	if err != nil {
		return err
	}
	if st == nil {
		return rpcerr.NotFoundf("volume %s is not staged on this node", volumeID)
	}
	dev, err := n.opts.Connector.FindNamespace(st.SubsysNQN, st.NSUUID)
	if errors.Is(err, nvme.ErrNotFound) {
		return rpcerr.Unavailablef("volume %s: namespace %s of %s has no device on this node", volumeID, st.NSUUID, st.SubsysNQN)
	}
	if err != nil {
		return err
	}
	same, err := n.sameDevice(volumePath, dev)
	if err != nil {
		return err
	}
	if !same {
		return rpcerr.NotFoundf("%s is not a path of volume %s (its device is %s)", volumePath, volumeID, dev)
	}
	return nil
}

// Health reasons reported by NodeGetVolumeHealth.
const (
	ReasonNotConnected  = "NotConnected"
	ReasonNoLivePath    = "NoLivePath"
	ReasonPathDown      = "PathDown"
	ReasonPathMissing   = "PathMissing"
	ReasonNamespaceGone = "NamespaceGone"
	ReasonStaleMount    = "StaleMount"
)

// volumeHealth is NodeGetVolumeHealth, from this node's view of the volume: INACCESSIBLE
// when its subsystem has no controller or none is live, when the namespace device is gone, or
// when a given path is backed by another device than the namespace (a stale mount); DEGRADED
// when some of its paths are down. Volumes this node has no record of are NotFound.
func (n *Node) volumeHealth(_ context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	volumeID := req.GetVolumeId()
	if volumeID == "" {
		return nil, rpcerr.Invalidf("volume_id is required")
	}
	st, err := n.stash.load(volumeID)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, rpcerr.NotFoundf("volume %s is not staged on this node", volumeID)
	}
	entries, err := n.health(st, req.GetVolumePublishPath(), req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{VolumeId: volumeID, HealthStatuses: entries}}, nil
}

func (n *Node) health(st *volumeStash, paths ...string) ([]*csi.VolumeHealth_VolumeHealthEntry, error) {
	bad := func(status csi.VolumeHealthErrorType, reason, format string, a ...any) []*csi.VolumeHealth_VolumeHealthEntry {
		return []*csi.VolumeHealth_VolumeHealthEntry{{Status: status, Reason: reason, Message: fmt.Sprintf(format, a...)}}
	}
	ctrls, err := n.opts.Connector.Controllers(st.SubsysNQN)
	if err != nil {
		return nil, err
	}
	if len(ctrls) == 0 {
		return bad(csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNotConnected, "no controller of %s on this node", st.SubsysNQN), nil
	}
	var live int
	var down []string
	for _, c := range ctrls {
		if c.State == "live" {
			live++
		} else {
			down = append(down, fmt.Sprintf("%s (%s %s, %s)", c.Name, c.Transport, c.Address, c.State))
		}
	}
	if live == 0 {
		return bad(csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNoLivePath, "no live path to %s: %s", st.SubsysNQN, strings.Join(down, ", ")), nil
	}
	dev, err := n.opts.Connector.FindNamespace(st.SubsysNQN, st.NSUUID)
	if errors.Is(err, nvme.ErrNotFound) {
		return bad(csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNamespaceGone, "namespace %s of %s has no device", st.NSUUID, st.SubsysNQN), nil
	}
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if p == "" || (p == st.StagingPath && st.Block) {
			continue
		}
		if mounted, err := n.opts.Mounter.IsMountPoint(p); err != nil || !mounted {
			continue
		}
		if same, err := n.sameDevice(p, dev); err == nil && !same {
			return bad(csi.VolumeHealthErrorType_INACCESSIBLE, ReasonStaleMount,
				"%s is backed by another device than namespace %s (%s): restage the volume", p, st.NSUUID, dev), nil
		}
	}
	if len(down) > 0 {
		return bad(csi.VolumeHealthErrorType_DEGRADED, ReasonPathDown, "%d of %d paths down: %s", len(down), len(ctrls), strings.Join(down, ", ")), nil
	}
	if missing := n.missingPortals(st, ctrls); len(missing) > 0 {
		return bad(csi.VolumeHealthErrorType_DEGRADED, ReasonPathMissing, "no path to portal %s (the healer reconnects it once it answers)",
			strings.Join(missing, ", ")), nil
	}
	return nil, nil
}

// missingPortals lists the volume's portals that have no controller, with native multipath
// (without it one path is all a volume has).
func (n *Node) missingPortals(st *volumeStash, ctrls []nvme.Controller) []string {
	portals, err := contract.ParsePortals(st.Portals)
	if err != nil || !n.opts.Connector.MultipathEnabled() {
		return nil
	}
	var missing []string
	for _, p := range portals {
		if !slices.ContainsFunc(ctrls, func(c nvme.Controller) bool { return c.Address == p.Address && c.ServiceID == p.Port }) {
			missing = append(missing, net.JoinHostPort(p.Address, p.Port))
		}
	}
	return missing
}
