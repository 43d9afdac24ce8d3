package node

import (
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

// checkPath refuses a path the node must not act on: empty, with a NUL byte (the kernel
// would cut it short), relative (it would resolve under the plugin's working directory), or
// not clean ("..", "//"). Kubelet always sends absolute, clean paths. Empty and NUL are
// InvalidArgument; the others are of class notPath: InvalidArgument for the RPCs that act on
// the path, NotFound for those that look a volume up by it (no volume is published there).
func checkPath(field, p string, notPath error) error {
	switch {
	case p == "":
		return rpcerr.Invalidf("%s is required", field)
	case strings.IndexByte(p, 0) >= 0:
		return rpcerr.Invalidf("%s %q has a NUL byte", field, p)
	case !filepath.IsAbs(p):
		return rpcerr.Classf(notPath, "%s %q is not an absolute path", field, p)
	case filepath.Clean(p) != p:
		return rpcerr.Classf(notPath, "%s %q is not clean (want %q)", field, p, filepath.Clean(p))
	}
	return nil
}

// checkVolumePath validates the volume ID and path every per-path RPC carries (notPath as
// for checkPath); optional name, value pairs (e.g. staging_target_path of
// NodeExpandVolume) are checked when present.
func checkVolumePath(volumeID, field, path string, notPath error, optional ...string) error {
	if volumeID == "" {
		return rpcerr.Invalidf("volume_id is required")
	}
	if err := checkPath(field, path, notPath); err != nil {
		return err
	}
	for i := 0; i+1 < len(optional); i += 2 {
		if optional[i+1] == "" {
			continue
		}
		if err := checkPath(optional[i], optional[i+1], notPath); err != nil {
			return err
		}
	}
	return nil
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
			return target{}, rpcerr.Invalidf("publish_context key %q is missing (ControllerPublishVolume sets it)", k)
		}
	}
	if err := nvme.ValidNQN(t.subsysNQN); err != nil {
		return target{}, rpcerr.Invalidf("publish_context %s: %v", contract.PublishSubsysNQN, err)
	}
	if err := nvme.ValidUUID(t.nsUUID); err != nil {
		return target{}, rpcerr.Invalidf("publish_context %s: %v", contract.PublishNSUUID, err)
	}
	if _, err := agentapi.ParseTransport(t.transport); err != nil {
		return target{}, rpcerr.Invalidf("publish_context %s: %v", contract.PublishTransport, err)
	}
	ps, err := contract.ParsePortals(t.raw)
	if err != nil {
		return target{}, rpcerr.Invalidf("publish_context %s: %v", contract.PublishPortals, err)
	}
	t.portals = ps
	return t, nil
}

// stageRequest is a validated NodeStageVolumeRequest.
type stageRequest struct {
	volumeID    string
	stagingPath string
	cap         contract.Capability
	target      target
	params      contract.Params
	// keys are the node's DH-HMAC-CHAP secrets (empty: no authentication). Never log them.
	keys dhchapKeys
}

// dhchapKeys are a node's DH-HMAC-CHAP host key and the storage node's key.
type dhchapKeys struct {
	Host string `json:"host,omitempty"`
	Ctrl string `json:"ctrl,omitempty"`
}

// String keeps the keys out of any log or error that formats them.
func (k dhchapKeys) String() string { return "(DH-HMAC-CHAP keys not shown)" }

func parseStage(req *csi.NodeStageVolumeRequest, nodeName string) (stageRequest, error) {
	r := stageRequest{volumeID: req.GetVolumeId(), stagingPath: req.GetStagingTargetPath()}
	if r.volumeID == "" {
		return r, rpcerr.Invalidf("volume_id is required")
	}
	if err := checkPath("staging_target_path", r.stagingPath, rpcerr.ErrInvalid); err != nil {
		return r, err
	}
	var err error
	if r.cap, err = contract.ParseCapability(req.GetVolumeCapability()); err != nil {
		return r, err
	}
	if r.target, err = parsePublishContext(req.GetPublishContext()); err != nil {
		return r, err
	}
	if r.params, err = contract.ParseParams(req.GetVolumeContext()); err != nil {
		return r, rpcerr.Invalidf("volume_context: %v", err)
	}
	if r.keys.Host, r.keys.Ctrl, err = contract.DHCHAPKeys(req.GetSecrets(), nodeName); err != nil {
		return r, rpcerr.Preconditionf("%v", err)
	}
	if req.GetPublishContext()[contract.PublishDHCHAP] == "true" && r.keys.Host == "" {
		return r, rpcerr.Preconditionf("the storage node authenticates this node with DH-HMAC-CHAP, and NodeStageVolume got no " +
			"secrets: the StorageClass must name the same Secret as csi.storage.k8s.io/node-stage-secret-name and -namespace")
	}
	return r, nil
}

// publishRequest is a validated NodePublishVolumeRequest.
type publishRequest struct {
	volumeID    string
	stagingPath string
	targetPath  string
	cap         contract.Capability
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
		return r, rpcerr.Invalidf("volume_id is required")
	case r.stagingPath == "":
		return r, rpcerr.Invalidf("staging_target_path is required (the plugin stages volumes)")
	}
	if err := checkPath("staging_target_path", r.stagingPath, rpcerr.ErrInvalid); err != nil {
		return r, err
	}
	if err := checkPath("target_path", r.targetPath, rpcerr.ErrInvalid); err != nil {
		return r, err
	}
	var err error
	if r.cap, err = contract.ParseCapability(req.GetVolumeCapability()); err != nil {
		return r, err
	}
	r.readOnly = req.GetReadonly() || r.cap.ReadOnly
	return r, nil
}
