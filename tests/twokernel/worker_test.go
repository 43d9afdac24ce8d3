//go:build vm

package twokernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// Steps of the worker VM: the CSI plugin (controller and node, in the step server's process),
// and an application that counts its acknowledged writes.

var worker struct {
	sync.Mutex
	csi     *grpc.ClientConn
	writers map[string]*vmenv.AckWriter
	// identityDir holds the plugin's host NQN and host ID.
	identityDir string
}

type pluginIn struct {
	AgentAddr, ServerName string
	TLS                   tlsBundle
	// HealInterval is the node's path repair interval (0: never).
	HealInterval time.Duration
	// NodeName is the worker's node name (empty: workerNodeName).
	NodeName string
	// Nodes, when set, are the controller's storage nodes (in place of the one agent at
	// AgentAddr); AgentTimeout bounds each agent call (0: 2 minutes).
	Nodes        []storageNodeRef
	AgentTimeout time.Duration
}

// storageNodeRef is one storage node of the controller's storage-node file.
type storageNodeRef struct {
	Name, Addr, ServerName string
	TLS                    tlsBundle
}

// storageNodesConfig is the controller's storage-node file: the one agent, over mTLS.
func storageNodesConfig(s *vmtest.Step, dir string, in pluginIn) string {
	nodes := in.Nodes
	if len(nodes) == 0 {
		nodes = []storageNodeRef{{Name: storageNodeName, Addr: in.AgentAddr, ServerName: in.ServerName, TLS: in.TLS}}
	}
	path := filepath.Join(dir, "storage-nodes.yaml")
	cfg := "storageNodes:\n"
	for _, n := range nodes {
		tlsDir := filepath.Join(dir, n.Name)
		if err := os.MkdirAll(tlsDir, 0o700); err != nil {
			s.Fatal(err)
		}
		_, client := n.TLS.write(s, tlsDir)
		cfg += fmt.Sprintf(`- name: %s
  address: %s
  tls: {cert: %s, key: %s, ca: %s, serverName: %s}
`, n.Name, n.Addr, client.Cert, client.Key, client.CA, n.ServerName)
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		s.Fatal(err)
	}
	return path
}

// startPlugin runs the CSI plugin (controller and node) in the worker until the session ends.
var startPlugin = vmtest.NewStep("start-plugin", func(s *vmtest.Step, in pluginIn) struct{} {
	dir := s.TempDir()
	if in.NodeName == "" {
		in.NodeName = workerNodeName
	}
	if in.AgentTimeout == 0 {
		in.AgentTimeout = 2 * time.Minute
	}
	conn := vmenv.StartPlugin(s, plugin.Options{
		Mode:         plugin.ModeAll,
		StorageNodes: storageNodesConfig(s, dir, in),
		AgentTimeout: in.AgentTimeout,
		ProbeTimeout: 10 * time.Second,
		NodeName:     in.NodeName,
		IdentityDir:  filepath.Join(dir, "nvme"),
		StateDir:     filepath.Join(dir, "state"),
		HealInterval: in.HealInterval,
	})
	// The plugin's socket appears once it serves: wait until it answers Probe.
	ids := csi.NewIdentityClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(s.Context(), 5*time.Second)
		_, err := ids.Probe(ctx, &csi.ProbeRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.Fatalf("the plugin does not answer Probe: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	worker.Lock()
	worker.csi = conn
	worker.identityDir = filepath.Join(dir, "nvme")
	worker.Unlock()
	return struct{}{}
})

// hostIdentity is the NVMe host identity of the worker's plugin.
var hostIdentity = vmtest.NewStep("host-identity", func(s *vmtest.Step, _ struct{}) nvme.Identity {
	worker.Lock()
	dir := worker.identityDir
	worker.Unlock()
	if dir == "" {
		s.Fatal("no plugin runs")
	}
	id, err := nvme.LoadOrCreateIdentity(dir)
	if err != nil {
		s.Fatal(err)
	}
	return id
})

type volumeIn struct {
	Name   string
	Bytes  int64
	Params map[string]string
	// Secrets are ControllerPublishVolume's and NodeStageVolume's (DH-HMAC-CHAP keys).
	Secrets map[string]string
}

type volumeOut struct {
	VolumeID string
	// Device is the published raw block volume (the target path).
	Device  string
	NQN     string
	Staging string
	NodeID  string
	// VolumeContext is CreateVolume's; PublishContext ControllerPublishVolume's.
	VolumeContext, PublishContext map[string]string
}

var blockCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// pluginConn is the connection to the plugin the worker runs; the step fails when none runs.
func pluginConn(s *vmtest.Step) *grpc.ClientConn {
	worker.Lock()
	defer worker.Unlock()
	if worker.csi == nil {
		s.Fatal("no plugin runs")
	}
	return worker.csi
}

// publishBlockVolume walks a raw block volume through the CSI calls a cluster makes before a
// pod starts: CreateVolume, ControllerPublishVolume to this worker, NodeStageVolume (connect),
// NodePublishVolume.
var publishBlockVolume = vmtest.NewStep("publish-block-volume", func(s *vmtest.Step, in volumeIn) volumeOut {
	conn := pluginConn(s)
	vol, err := csi.NewControllerClient(conn).CreateVolume(s.Context(), &csi.CreateVolumeRequest{
		Name:               in.Name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: in.Bytes},
		VolumeCapabilities: []*csi.VolumeCapability{blockCap},
		Parameters:         in.Params,
	})
	if err != nil {
		s.Fatalf("CreateVolume: %v", err)
	}
	return attachVolume(s, conn, vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext(), in.Secrets)
})

type attachIn struct {
	VolumeID      string
	VolumeContext map[string]string
	Secrets       map[string]string
}

// attachVolume publishes an existing volume to this worker: ControllerPublishVolume,
// NodeStageVolume, NodePublishVolume.
var attachVolumeStep = vmtest.NewStep("attach-volume", func(s *vmtest.Step, in attachIn) volumeOut {
	conn := pluginConn(s)
	return attachVolume(s, conn, in.VolumeID, in.VolumeContext, in.Secrets)
})

func attachVolume(s *vmtest.Step, conn *grpc.ClientConn, id string, volCtx, secrets map[string]string) volumeOut {
	ctx := s.Context()
	ctrl, node := csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	info, err := node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		s.Fatalf("NodeGetInfo: %v", err)
	}
	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: id, NodeId: info.GetNodeId(), VolumeCapability: blockCap,
		VolumeContext: volCtx, Secrets: secrets,
	})
	if err != nil {
		s.Fatalf("ControllerPublishVolume: %v", err)
	}
	dir := s.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "pod", "dev")
	for _, d := range []string{staging, filepath.Dir(target)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			s.Fatal(err)
		}
	}
	if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
		VolumeId: id, PublishContext: pub.GetPublishContext(), StagingTargetPath: staging,
		VolumeCapability: blockCap, VolumeContext: volCtx, Secrets: secrets,
	}); err != nil {
		s.Fatalf("NodeStageVolume: %v", err)
	}
	if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: id, PublishContext: pub.GetPublishContext(), StagingTargetPath: staging,
		TargetPath: target, VolumeCapability: blockCap, VolumeContext: volCtx,
	}); err != nil {
		s.Fatalf("NodePublishVolume: %v", err)
	}
	return volumeOut{
		VolumeID: id, Device: target, NQN: pub.GetPublishContext()[contract.PublishSubsysNQN],
		Staging: staging, NodeID: info.GetNodeId(), VolumeContext: volCtx, PublishContext: pub.GetPublishContext(),
	}
}

// unpublishVolume undoes publishBlockVolume but for CreateVolume: NodeUnpublishVolume,
// NodeUnstageVolume (disconnect), ControllerUnpublishVolume.
var unpublishVolume = vmtest.NewStep("unpublish-volume", func(s *vmtest.Step, v volumeOut) struct{} {
	conn := pluginConn(s)
	ctx := s.Context()
	ctrl, node := csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeID, TargetPath: v.Device}); err != nil {
		s.Fatalf("NodeUnpublishVolume: %v", err)
	}
	if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.VolumeID, StagingTargetPath: v.Staging}); err != nil {
		s.Fatalf("NodeUnstageVolume: %v", err)
	}
	controllerUnpublish(s, ctrl, v.VolumeID, v.NodeID)
	return struct{}{}
})

// controllerUnpublish calls ControllerUnpublishVolume. A gRPC connection to an agent that
// lost power fails its first call with Unavailable; the external-attacher retries such a
// call, and so does this (for a minute).
func controllerUnpublish(s *vmtest.Step, ctrl csi.ControllerClient, volumeID, nodeID string) {
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := ctrl.ControllerUnpublishVolume(s.Context(), &csi.ControllerUnpublishVolumeRequest{VolumeId: volumeID, NodeId: nodeID})
		if err == nil {
			return
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			s.Fatalf("ControllerUnpublishVolume: %v", err)
		}
		s.Logf("ControllerUnpublishVolume: %v; retrying", err)
		time.Sleep(time.Second)
	}
}

// controllerUnpublishStep is ControllerUnpublishVolume of a volume from a node (e.g. another
// worker, which lost power), through this worker's controller service.
var controllerUnpublishStep = vmtest.NewStep("controller-unpublish", func(s *vmtest.Step, v volumeOut) struct{} {
	controllerUnpublish(s, controllerClient(s), v.VolumeID, v.NodeID)
	return struct{}{}
})

type writerIn struct {
	Name          string
	Device        string
	Blocks, Batch int
}

// startWriter starts an acknowledged-write application, named Name, on a device.
var startWriter = vmtest.NewStep("start-writer", func(s *vmtest.Step, in writerIn) struct{} {
	w, err := vmenv.StartAckWriter(in.Device, in.Blocks, in.Batch)
	if err != nil {
		s.Fatal(err)
	}
	worker.Lock()
	if worker.writers == nil {
		worker.writers = map[string]*vmenv.AckWriter{}
	}
	worker.writers[in.Name] = w
	worker.Unlock()
	return struct{}{}
})

func namedWriter(s *vmtest.Step, name string) *vmenv.AckWriter {
	worker.Lock()
	defer worker.Unlock()
	w := worker.writers[name]
	if w == nil {
		s.Fatalf("no writer %q runs", name)
	}
	return w
}

// writerStatus is a writer's progress.
var writerStatus = vmtest.NewStep("writer-status", func(s *vmtest.Step, name string) vmenv.AckStatus {
	return namedWriter(s, name).Status()
})

// markWriter starts a writer's next epoch (the storage is down) and returns its status
// before it.
var markWriter = vmtest.NewStep("mark-writer", func(s *vmtest.Step, name string) vmenv.AckStatus {
	return namedWriter(s, name).Mark()
})

type verifyOut struct {
	Status vmenv.AckStatus
	Report vmenv.AckReport
}

// stopWriter stops a writer (without reading anything back), closes its device and returns
// its status.
var stopWriter = vmtest.NewStep("stop-writer", func(s *vmtest.Step, name string) vmenv.AckStatus {
	w := namedWriter(s, name)
	if err := w.Stop(2 * time.Minute); err != nil {
		s.Fatal(err)
	}
	if err := w.Close(); err != nil {
		s.Fatal(err)
	}
	return w.Status()
})

// stopAndVerifyWriter stops a writer and reads every block back.
var stopAndVerifyWriter = vmtest.NewStep("stop-verify-writer", func(s *vmtest.Step, name string) verifyOut {
	w := namedWriter(s, name)
	if err := w.Stop(2 * time.Minute); err != nil {
		s.Fatal(err)
	}
	st := w.Status()
	rep, err := w.Verify()
	if err != nil {
		s.Fatal(err)
	}
	return verifyOut{Status: st, Report: rep}
})

type liveIn struct {
	NQN     string
	Timeout time.Duration
}

type liveOut struct {
	Waited time.Duration
	States []string
}

// waitLive waits until the subsystem has controllers and all are live.
var waitLive = vmtest.NewStep("wait-live", func(s *vmtest.Step, in liveIn) liveOut {
	var in0 nvme.Initiator
	start := time.Now()
	var states []string
	for {
		ctrls, err := in0.Controllers(in.NQN)
		if err != nil {
			s.Fatal(err)
		}
		states = states[:0]
		live := len(ctrls) > 0
		for _, c := range ctrls {
			states = append(states, c.Name+"="+c.State)
			live = live && c.State == "live"
		}
		if live {
			return liveOut{Waited: time.Since(start), States: states}
		}
		if time.Since(start) > in.Timeout {
			s.Fatalf("controllers of %s not live after %s: %v", in.NQN, in.Timeout, states)
		}
		time.Sleep(100 * time.Millisecond)
	}
})

// controllerStates lists the subsystem's controllers and their states.
// releasePaths does what a worker's shutdown does (nvmeof-csi --release-paths): the
// controllers of subsystems under Prefix get ctrl_loss_tmo LossTmo seconds and fail I/O fast.
var releasePaths = vmtest.NewStep("release-paths", func(s *vmtest.Step, in releaseIn) []string {
	var ini nvme.Initiator
	changed, err := ini.ReleaseTimeouts(in.Prefix, in.LossTmo)
	if err != nil {
		s.Fatal(err)
	}
	return changed
})

type releaseIn struct {
	Prefix  string
	LossTmo int
}

var controllerStates = vmtest.NewStep("controller-states", func(s *vmtest.Step, nqn string) []string {
	var in nvme.Initiator
	ctrls, err := in.Controllers(nqn)
	if err != nil {
		s.Fatal(err)
	}
	var out []string
	for _, c := range ctrls {
		out = append(out, c.Name+"="+c.State)
	}
	return out
})
