package node

import (
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// Supported file systems; the first is the default.
var fsTypes = []string{"ext4", "xfs"}

// volumeCap is a validated volume capability.
type volumeCap struct {
	block    bool
	fsType   string   // filesystem volumes: "ext4" or "xfs"
	flags    []string // filesystem volumes: mount flags from the capability
	readOnly bool     // the access mode only allows reading
	// singleWriter: SINGLE_NODE_SINGLE_WRITER allows one publication on the node.
	singleWriter bool
}

func parseCapability(c *csi.VolumeCapability) (volumeCap, error) {
	if c == nil {
		return volumeCap{}, invalidf("volume_capability is required")
	}
	var vc volumeCap
	mode := c.GetAccessMode().GetMode()
	switch mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER:
		vc.singleWriter = true
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		vc.readOnly = true
	case csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		if c.GetBlock() == nil {
			return volumeCap{}, invalidf("access mode %s needs a block volume: ext4 and xfs are not cluster file systems", mode)
		}
	default:
		return volumeCap{}, invalidf("access mode %s is not supported", mode)
	}
	switch at := c.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		vc.block = true
	case *csi.VolumeCapability_Mount:
		vc.fsType = strings.ToLower(at.Mount.GetFsType())
		if vc.fsType == "" {
			vc.fsType = fsTypes[0]
		}
		if !slices.Contains(fsTypes, vc.fsType) {
			return volumeCap{}, invalidf("file system %q is not supported (want one of %s)", vc.fsType, strings.Join(fsTypes, ", "))
		}
		for _, f := range at.Mount.GetMountFlags() {
			if f == "" || strings.ContainsAny(f, " \t\n") {
				return volumeCap{}, invalidf("mount flag %q is malformed", f)
			}
			vc.flags = append(vc.flags, f)
		}
	default:
		return volumeCap{}, invalidf("volume_capability needs an access type (block or mount)")
	}
	return vc, nil
}

// target is where a volume's namespace is served, from publish_context.
type target struct {
	subsysNQN string
	nsUUID    string
	transport string
	portals   []contract.Portal
	raw       string // publish_context's portals as given, for the stash
}

func parsePublishContext(pc map[string]string) (target, error) {
	t := target{
		subsysNQN: pc[contract.PublishSubsysNQN],
		nsUUID:    pc[contract.PublishNSUUID],
		transport: pc[contract.PublishTransport],
		raw:       pc[contract.PublishPortals],
	}
	for _, k := range []string{contract.PublishSubsysNQN, contract.PublishNSUUID, contract.PublishTransport, contract.PublishPortals} {
		if pc[k] == "" {
			return target{}, invalidf("publish_context key %q is missing (ControllerPublishVolume sets it)", k)
		}
	}
	if err := nvme.ValidNQN(t.subsysNQN); err != nil {
		return target{}, invalidf("publish_context %s: %v", contract.PublishSubsysNQN, err)
	}
	if err := nvme.ValidUUID(t.nsUUID); err != nil {
		return target{}, invalidf("publish_context %s: %v", contract.PublishNSUUID, err)
	}
	if t.transport != nvme.TransportTCP && t.transport != nvme.TransportRDMA {
		return target{}, invalidf("publish_context %s=%q: want %s or %s", contract.PublishTransport, t.transport, nvme.TransportTCP, nvme.TransportRDMA)
	}
	ps, err := contract.ParsePortals(t.raw)
	if err != nil {
		return target{}, invalidf("publish_context %s: %v", contract.PublishPortals, err)
	}
	t.portals = ps
	return t, nil
}

// stageRequest is a validated NodeStageVolumeRequest.
type stageRequest struct {
	volumeID    string
	stagingPath string
	cap         volumeCap
	target      target
	params      contract.Params
}

func parseStage(req *csi.NodeStageVolumeRequest) (stageRequest, error) {
	r := stageRequest{volumeID: req.GetVolumeId(), stagingPath: req.GetStagingTargetPath()}
	if r.volumeID == "" {
		return r, invalidf("volume_id is required")
	}
	if r.stagingPath == "" {
		return r, invalidf("staging_target_path is required")
	}
	var err error
	if r.cap, err = parseCapability(req.GetVolumeCapability()); err != nil {
		return r, err
	}
	if r.target, err = parsePublishContext(req.GetPublishContext()); err != nil {
		return r, err
	}
	if r.params, err = contract.ParseParams(req.GetVolumeContext()); err != nil {
		return r, invalidf("volume_context: %v", err)
	}
	return r, nil
}

// publishRequest is a validated NodePublishVolumeRequest.
type publishRequest struct {
	volumeID    string
	stagingPath string
	targetPath  string
	cap         volumeCap
	readOnly    bool
}

func parsePublish(req *csi.NodePublishVolumeRequest) (publishRequest, error) {
	r := publishRequest{
		volumeID:    req.GetVolumeId(),
		stagingPath: req.GetStagingTargetPath(),
		targetPath:  req.GetTargetPath(),
	}
	switch {
	case r.volumeID == "":
		return r, invalidf("volume_id is required")
	case r.stagingPath == "":
		return r, invalidf("staging_target_path is required (the plugin stages volumes)")
	case r.targetPath == "":
		return r, invalidf("target_path is required")
	}
	var err error
	if r.cap, err = parseCapability(req.GetVolumeCapability()); err != nil {
		return r, err
	}
	r.readOnly = req.GetReadonly() || r.cap.readOnly
	return r, nil
}
