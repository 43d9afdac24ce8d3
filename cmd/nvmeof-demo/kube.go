package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// kube plays the parts of the CSI sidecars (external-provisioner, -attacher, -snapshotter)
// and kubelet, over the plugin's CSI socket, with the requests they would send: names
// pvc-<uid> and snapshot-<uid>, the StorageClass parameters plus the PVC/PV metadata the
// provisioner adds, the node's topology as accessibility requirements, kubelet's staging and
// publish paths. It records every object it creates so that teardown can undo them all.
type kube struct {
	conn     *grpc.ClientConn
	ids      csi.IdentityClient
	ctl      csi.ControllerClient
	grp      csi.GroupControllerClient
	meta     csi.SnapshotMetadataClient
	node     csi.NodeClient
	nodeID   string
	topology *csi.Topology
	kubelet  string            // kubelet's root directory
	params   map[string]string // the StorageClass parameters
	warn     func(string)      // reports a retried failure

	mu    sync.Mutex
	pvs   []*pv
	snaps []*snap
}

// pv is a PersistentVolume (with its claim) and how far it got.
type pv struct {
	claim  string // PVC name, in namespace "demo"
	name   string // PV name = CSI volume name
	block  bool
	size   int64
	id     string
	volCtx map[string]string
	pubCtx map[string]string
	pod    string
	// What teardown must undo.
	attached, staged, published bool
	retain                      bool // the volume lives on under another PV (see handOver)
	// took is how long each call of its way to a pod took, retries included.
	took callTimes
}

// callTimes are the calls that take a claim to a mounted volume in its pod: CreateVolume
// (external-provisioner), ControllerPublishVolume (external-attacher), NodeStageVolume and
// NodePublishVolume (kubelet).
type callTimes struct {
	create, attach, stage, publish time.Duration
}

type snap struct{ name, id, source string }

// rpcTimeout bounds one call; sidecars retry with back-off after Aborted or Unavailable.
const rpcTimeout = 5 * time.Minute

func dialCSI(endpoint, kubelet string, params map[string]string, warn func(string)) (*kube, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &kube{conn: conn, ids: csi.NewIdentityClient(conn), ctl: csi.NewControllerClient(conn),
		grp: csi.NewGroupControllerClient(conn), meta: csi.NewSnapshotMetadataClient(conn),
		node: csi.NewNodeClient(conn), kubelet: kubelet, params: params, warn: warn}, nil
}

// call runs one CSI call as a sidecar or kubelet does: bounded, and retried with back-off.
// Busy (Aborted), unreachable or not done yet (Unavailable) and too slow (DeadlineExceeded)
// are retried until ctx ends. Errors that say the request itself is wrong are final. Anything
// else (Internal, …) kubelet and the sidecars retry too; the demo allows two retries and
// reports each through warn, so that such errors show.
func call[T any](ctx context.Context, warn func(string), what string, fn func(context.Context) (T, error)) (T, error) {
	backoff := 100 * time.Millisecond
	retries := 0
	for {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		resp, err := fn(cctx)
		cancel()
		retry := false
		switch status.Code(err) {
		case codes.OK:
			return resp, nil
		case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded:
			retry = true
		case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
			codes.OutOfRange, codes.Unimplemented, codes.PermissionDenied, codes.ResourceExhausted, codes.Canceled:
		default:
			if retries < 2 {
				retries++
				retry = true
				warn(fmt.Sprintf("%s failed, retrying as kubelet and the sidecars would: %v", what, err))
			}
		}
		if retry && ctx.Err() == nil {
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 5*time.Second)
				continue
			case <-ctx.Done():
			}
		}
		var zero T
		return zero, fmt.Errorf("%s: %w", what, err)
	}
}

// waitReady waits (up to a minute) until Probe says ready, like the sidecars do at start;
// exited reports a server goroutine that died meanwhile.
func (k *kube) waitReady(ctx context.Context, exited func() error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		if err := exited(); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := k.ids.Probe(cctx, &csi.ProbeRequest{})
		cancel()
		if err == nil && resp.GetReady().GetValue() {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the plugin is not ready after a minute (last probe: ready=%v, %v)", resp.GetReady().GetValue(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// discover asks what the sidecars and kubelet ask before they use a driver, and checks the
// capabilities the demo relies on.
func (k *kube) discover(ctx context.Context) (string, error) {
	info, err := k.ids.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		return "", err
	}
	cc, err := k.ctl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		return "", err
	}
	var have []csi.ControllerServiceCapability_RPC_Type
	for _, c := range cc.GetCapabilities() {
		have = append(have, c.GetRpc().GetType())
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME, csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	} {
		if !slices.Contains(have, want) {
			return "", fmt.Errorf("the controller lacks %s", want)
		}
	}
	nc, err := k.node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		return "", err
	}
	stage := slices.ContainsFunc(nc.GetCapabilities(), func(c *csi.NodeServiceCapability) bool {
		return c.GetRpc().GetType() == csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME
	})
	if !stage {
		return "", errors.New("the node service lacks STAGE_UNSTAGE_VOLUME")
	}
	ni, err := k.node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		return "", err
	}
	k.nodeID, k.topology = ni.GetNodeId(), ni.GetAccessibleTopology()
	return fmt.Sprintf("%s %s, node ID %s", info.GetName(), info.GetVendorVersion(), k.nodeID), nil
}

func (k *kube) capability(block bool) *csi.VolumeCapability {
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	if block {
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}}
	}
	return c
}

// provision is the external-provisioner's CreateVolume for a new claim (WaitForFirstConsumer:
// the node is chosen, its topology is the requirement).
func (k *kube) provision(ctx context.Context, claim string, size int64, block bool, src *csi.VolumeContentSource) (*pv, error) {
	v := &pv{claim: claim, name: "pvc-" + newUID(), block: block, size: size}
	params := map[string]string{
		"csi.storage.k8s.io/pvc/name":      claim,
		"csi.storage.k8s.io/pvc/namespace": "demo",
		"csi.storage.k8s.io/pv/name":       v.name,
	}
	for key, val := range k.params {
		params[key] = val
	}
	req := &csi.CreateVolumeRequest{
		Name:                      v.name,
		CapacityRange:             &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities:        []*csi.VolumeCapability{k.capability(block)},
		Parameters:                params,
		VolumeContentSource:       src,
		AccessibilityRequirements: &csi.TopologyRequirement{Requisite: []*csi.Topology{k.topology}, Preferred: []*csi.Topology{k.topology}},
	}
	k.track(v)
	start := time.Now()
	resp, err := call(ctx, k.warn, "CreateVolume "+claim, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
		return k.ctl.CreateVolume(ctx, req)
	})
	v.took.create = time.Since(start)
	if err != nil {
		return nil, err
	}
	v.id, v.volCtx = resp.GetVolume().GetVolumeId(), resp.GetVolume().GetVolumeContext()
	return v, nil
}

// handOver makes a second PV for v's volume in the other volume mode, as an admin does with
// a pre-provisioned PV (the first PV is retained, the new one deletes the volume).
func (k *kube) handOver(v *pv, claim string, block bool) *pv {
	v.retain = true
	w := &pv{claim: claim, name: "pv-" + claim, block: block, size: v.size, id: v.id, volCtx: v.volCtx}
	k.track(w)
	return w
}

// attach is the external-attacher's ControllerPublishVolume to this node.
func (k *kube) attach(ctx context.Context, v *pv) error {
	v.attached = true
	start := time.Now()
	resp, err := call(ctx, k.warn, "ControllerPublishVolume "+v.claim, func(ctx context.Context) (*csi.ControllerPublishVolumeResponse, error) {
		return k.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.id, NodeId: k.nodeID, VolumeCapability: k.capability(v.block), VolumeContext: v.volCtx,
		})
	})
	v.took.attach = time.Since(start)
	if err != nil {
		return err
	}
	v.pubCtx = resp.GetPublishContext()
	return nil
}

// stagingPath and targetPath are where kubelet puts them.
func (k *kube) stagingPath(v *pv) string {
	if v.block {
		return filepath.Join(k.kubelet, "plugins/kubernetes.io/csi/volumeDevices/staging", v.name)
	}
	return filepath.Join(k.kubelet, "plugins/kubernetes.io/csi", contract.DriverName, fmt.Sprintf("%x", sha256.Sum256([]byte(v.id))), "globalmount")
}

func (k *kube) targetPath(v *pv) string {
	if v.block {
		return filepath.Join(k.kubelet, "plugins/kubernetes.io/csi/volumeDevices/publish", v.name, v.pod)
	}
	return filepath.Join(k.kubelet, "pods", v.pod, "volumes/kubernetes.io~csi", v.name, "mount")
}

// mount is kubelet starting a pod that uses v: NodeStageVolume, then NodePublishVolume.
// It returns the path the pod sees (a directory, or a block device file).
func (k *kube) mount(ctx context.Context, v *pv, pod string) (string, error) {
	v.pod = pod
	staging, target := k.stagingPath(v), k.targetPath(v)
	if err := os.MkdirAll(staging, 0o750); err != nil { // kubelet creates the staging directory
		return "", err
	}
	v.staged = true
	start := time.Now()
	_, err := call(ctx, k.warn, "NodeStageVolume "+v.claim, func(ctx context.Context) (*csi.NodeStageVolumeResponse, error) {
		return k.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
			VolumeId: v.id, PublishContext: v.pubCtx, StagingTargetPath: staging,
			VolumeCapability: k.capability(v.block), VolumeContext: v.volCtx,
		})
	})
	v.took.stage = time.Since(start)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil { // and the target's parent
		return "", err
	}
	v.published = true
	start = time.Now()
	_, err = call(ctx, k.warn, "NodePublishVolume "+v.claim, func(ctx context.Context) (*csi.NodePublishVolumeResponse, error) {
		return k.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: v.id, PublishContext: v.pubCtx, StagingTargetPath: staging, TargetPath: target,
			VolumeCapability: k.capability(v.block), VolumeContext: v.volCtx,
		})
	})
	v.took.publish = time.Since(start)
	return target, err
}

// release is the pod going away and the volume detaching: NodeUnpublishVolume,
// NodeUnstageVolume (kubelet), ControllerUnpublishVolume (external-attacher). Each runs only
// if its counterpart was attempted; each is idempotent.
func (k *kube) release(ctx context.Context, v *pv) error {
	if v.published {
		if _, err := call(ctx, k.warn, "NodeUnpublishVolume "+v.claim, func(ctx context.Context) (*csi.NodeUnpublishVolumeResponse, error) {
			return k.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: k.targetPath(v)})
		}); err != nil {
			return err
		}
		v.published = false
	}
	if v.staged {
		if _, err := call(ctx, k.warn, "NodeUnstageVolume "+v.claim, func(ctx context.Context) (*csi.NodeUnstageVolumeResponse, error) {
			return k.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: k.stagingPath(v)})
		}); err != nil {
			return err
		}
		_ = os.Remove(k.stagingPath(v)) // kubelet removes the staging directory
		v.staged = false
	}
	if v.attached {
		if _, err := call(ctx, k.warn, "ControllerUnpublishVolume "+v.claim, func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
			return k.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.id, NodeId: k.nodeID})
		}); err != nil {
			return err
		}
		v.attached = false
	}
	return nil
}

// remove releases v and, unless it is retained, deletes its volume (the claim is deleted,
// reclaim policy Delete).
func (k *kube) remove(ctx context.Context, v *pv) error {
	if err := k.release(ctx, v); err != nil {
		return err
	}
	if v.retain || v.id == "" {
		return nil
	}
	_, err := call(ctx, k.warn, "DeleteVolume "+v.claim, func(ctx context.Context) (*csi.DeleteVolumeResponse, error) {
		return k.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.id})
	})
	if err == nil {
		v.id = ""
	}
	return err
}

// snapshot is the external-snapshotter's CreateSnapshot for a VolumeSnapshot of v.
func (k *kube) snapshot(ctx context.Context, name string, v *pv) (*snap, error) {
	uid := newUID()
	s := &snap{name: "snapshot-" + uid, source: v.id}
	k.mu.Lock()
	k.snaps = append(k.snaps, s)
	k.mu.Unlock()
	resp, err := call(ctx, k.warn, "CreateSnapshot "+name, func(ctx context.Context) (*csi.CreateSnapshotResponse, error) {
		return k.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: v.id, Name: s.name, Parameters: map[string]string{
			"csi.storage.k8s.io/volumesnapshot/name":        name,
			"csi.storage.k8s.io/volumesnapshot/namespace":   "demo",
			"csi.storage.k8s.io/volumesnapshotcontent/name": "snapcontent-" + uid,
		}})
	})
	if err != nil {
		return nil, err
	}
	if !resp.GetSnapshot().GetReadyToUse() {
		return nil, errors.New("the snapshot is not ready to use")
	}
	s.id = resp.GetSnapshot().GetSnapshotId()
	return s, nil
}

// groupSnapshot is the external-snapshotter's CreateVolumeGroupSnapshot for a
// VolumeGroupSnapshot of vols; it returns the members (recorded for teardown).
func (k *kube) groupSnapshot(ctx context.Context, name string, vols ...*pv) ([]*csi.Snapshot, error) {
	var ids []string
	for _, v := range vols {
		ids = append(ids, v.id)
	}
	resp, err := call(ctx, k.warn, "CreateVolumeGroupSnapshot "+name, func(ctx context.Context) (*csi.CreateVolumeGroupSnapshotResponse, error) {
		return k.grp.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "groupsnapshot-" + newUID(), SourceVolumeIds: ids})
	})
	if err != nil {
		return nil, err
	}
	members := resp.GetGroupSnapshot().GetSnapshots()
	k.mu.Lock()
	for _, m := range members {
		k.snaps = append(k.snaps, &snap{name: name + " member", id: m.GetSnapshotId(), source: m.GetSourceVolumeId()})
	}
	k.mu.Unlock()
	if len(members) != len(vols) {
		return nil, fmt.Errorf("group snapshot %s has %d members, want %d", name, len(members), len(vols))
	}
	return members, nil
}

// allocated is a backup tool's GetMetadataAllocated: every range of the snapshot that holds
// data.
func (k *kube) allocated(ctx context.Context, snapshotID string) ([]byteRange, error) {
	stream, err := k.meta.GetMetadataAllocated(ctx, &csi.GetMetadataAllocatedRequest{SnapshotId: snapshotID})
	if err != nil {
		return nil, err
	}
	return receiveRanges(stream.Recv, "GetMetadataAllocated "+snapshotID)
}

// delta is a backup tool's GetMetadataDelta: the ranges that differ between two snapshots of
// one volume.
func (k *kube) delta(ctx context.Context, base, target string) ([]byteRange, error) {
	stream, err := k.meta.GetMetadataDelta(ctx, &csi.GetMetadataDeltaRequest{BaseSnapshotId: base, TargetSnapshotId: target})
	if err != nil {
		return nil, err
	}
	return receiveRanges(stream.Recv, "GetMetadataDelta "+base+" → "+target)
}

// receiveRanges gathers the block metadata of a SnapshotMetadata stream to its end.
func receiveRanges[T interface{ GetBlockMetadata() []*csi.BlockMetadata }](recv func() (T, error), what string) ([]byteRange, error) {
	var out []byteRange
	for {
		resp, err := recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		for _, b := range resp.GetBlockMetadata() {
			out = append(out, byteRange{b.GetByteOffset(), b.GetSizeBytes()})
		}
	}
}

func (k *kube) deleteSnapshot(ctx context.Context, s *snap) error {
	if s.id == "" {
		return nil
	}
	_, err := call(ctx, k.warn, "DeleteSnapshot "+s.name, func(ctx context.Context) (*csi.DeleteSnapshotResponse, error) {
		return k.ctl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.id})
	})
	if err == nil {
		s.id = ""
	}
	return err
}

func (k *kube) track(v *pv) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pvs = append(k.pvs, v)
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
