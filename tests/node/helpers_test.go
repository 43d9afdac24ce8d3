//go:build vm

package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	csinode "github.com/nvmeof-csi/nvmeof-csi/pkg/csi/node"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mounter"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const prefix = "nqn.2026-11.io.nvmeof-csi.nodetest:"

// Ports every test may use: NVMe/TCP and NVMe/RDMA (Soft-RoCE) on both portals.
var (
	tcpA  = nvmet.Port{ID: 1, Transport: nvmet.TransportTCP, Address: vmtest.PortalA}
	tcpB  = nvmet.Port{ID: 2, Transport: nvmet.TransportTCP, Address: vmtest.PortalB}
	rdmaA = nvmet.Port{ID: 3, Transport: nvmet.TransportRDMA, Address: vmtest.PortalA}
	rdmaB = nvmet.Port{ID: 4, Transport: nvmet.TransportRDMA, Address: vmtest.PortalB}
)

var serial atomic.Int64

// volume is one exported volume: a loop device on the scratch disk behind namespace 1 of its
// own subsystem, which only the test's host NQN may connect to.
type volume struct {
	ID        string
	NQN       string
	UUID      string
	Loop      string
	Transport string
	Ports     []nvmet.Port
	target    *nvmet.Target
}

// env is a test's node plugin and target.
type env struct {
	t      *testing.T
	node   *csinode.Node
	id     nvme.Identity
	in     *nvme.Initiator
	target *nvmet.Target
	dir    string
}

// newEnv builds a Node exactly as main does (real initiator and mounter), with a fresh host
// identity (the kernel pairs a host ID with one host NQN) and a state directory of its own.
// When the test ends it unmounts what is left under its directory, disconnects its volumes
// and removes its nvmet objects.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, in: &nvme.Initiator{}, target: &nvmet.Target{Prefix: prefix}, dir: t.TempDir()}
	var err error
	if e.id, err = nvme.LoadOrCreateIdentity(filepath.Join(e.dir, "etc-nvme")); err != nil {
		t.Fatal(err)
	}
	e.node, err = csinode.New(csinode.Options{
		NodeName:  "vm",
		Identity:  e.id,
		Connector: e.in,
		Mounter:   mounter.New(mounter.Options{}),
		StateDir:  filepath.Join(e.dir, "state"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, p := range []nvmet.Port{tcpA, tcpB, rdmaA, rdmaB} {
		if err := e.target.EnsurePort(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range []nvmet.Port{tcpA, tcpB, rdmaA, rdmaB} {
			if err := e.target.RemovePort(ctx, p.ID); err != nil {
				t.Error(err)
			}
		}
	})
	return e
}

// newVolume exports a fresh sizeMiB volume on the given ports (all of one transport).
func (e *env) newVolume(sizeMiB int64, ports ...nvmet.Port) *volume {
	t := e.t
	t.Helper()
	n := serial.Add(1)
	v := &volume{
		ID:        contract.ObjectID("vm", fmt.Sprintf("vol-%032x", n)),
		NQN:       fmt.Sprintf("%svol-%d", prefix, n),
		UUID:      vmenv.NewUUID(t),
		Transport: ports[0].Transport,
		Ports:     ports,
		target:    e.target,
	}
	v.Loop = vmenv.Loop(t, fmt.Sprintf("node-test-%d", n), fmt.Sprintf("%dM", sizeMiB))
	var ids []uint16
	for _, p := range ports {
		ids = append(ids, p.ID)
	}
	err := e.target.EnsureSubsystem(context.Background(), nvmet.Subsystem{
		NQN:       v.NQN,
		Namespace: nvmet.Namespace{DevicePath: v.Loop, UUID: v.UUID},
		Hosts:     []string{e.id.HostNQN},
		Ports:     ids,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run in reverse: unmount, disconnect, remove the subsystem, detach the loop.
	t.Cleanup(func() {
		if err := e.target.RemoveSubsystem(context.Background(), v.NQN); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.in.Disconnect(ctx, v.NQN); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	t.Cleanup(func() { unmountUnder(t, e.dir) })
	return v
}

// grow enlarges the backing device to sizeMiB and makes nvmet notice.
func (v *volume) grow(t *testing.T, sizeMiB int64) {
	t.Helper()
	vmenv.GrowLoop(t, v.Loop, fmt.Sprintf("%dM", sizeMiB))
	if err := v.target.RevalidateNamespace(context.Background(), v.NQN, 1); err != nil {
		t.Fatal(err)
	}
}

func (v *volume) publishContext() map[string]string {
	var ps []contract.Portal
	for _, p := range v.Ports {
		ps = append(ps, contract.Portal{Address: p.Address, Port: nvmet.DefaultServiceID})
	}
	return map[string]string{
		contract.PublishSubsysNQN: v.NQN,
		contract.PublishNSUUID:    v.UUID,
		contract.PublishTransport: v.Transport,
		contract.PublishPortals:   contract.FormatPortals(ps),
	}
}

// volumeContext is what the controller would pass: short timeouts so that failures show
// quickly in tests.
var volumeContext = map[string]string{
	contract.ParamCtrlLossTmo:    "30",
	contract.ParamReconnectDelay: "2",
	contract.ParamKeepAliveTmo:   "5",
}

func fsCap(fsType string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func (e *env) stagingPath(v *volume) string {
	return filepath.Join(e.dir, "staging", v.NQN[len(prefix):])
}

func (e *env) stage(ctx context.Context, v *volume, c *csi.VolumeCapability) error {
	return e.stageWith(ctx, v, c, volumeContext)
}

// stageWith stages v with the volume context vc (the connection settings a StorageClass gives).
func (e *env) stageWith(ctx context.Context, v *volume, c *csi.VolumeCapability, vc map[string]string) error {
	if err := os.MkdirAll(e.stagingPath(v), 0o750); err != nil { // kubelet creates it
		return err
	}
	_, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
		VolumeId: v.ID, StagingTargetPath: e.stagingPath(v), VolumeCapability: c,
		PublishContext: v.publishContext(), VolumeContext: vc,
	})
	return err
}

func (e *env) unstage(ctx context.Context, v *volume) error {
	_, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.ID, StagingTargetPath: e.stagingPath(v)})
	return err
}

func (e *env) publish(ctx context.Context, v *volume, c *csi.VolumeCapability, target string) error {
	_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: v.ID, StagingTargetPath: e.stagingPath(v), TargetPath: target, VolumeCapability: c,
		PublishContext: v.publishContext(), VolumeContext: volumeContext,
	})
	return err
}

func (e *env) unpublish(ctx context.Context, v *volume, target string) error {
	_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.ID, TargetPath: target})
	return err
}

// must fails the test on err, naming the step.
func must(t *testing.T, step string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

// assertGone checks that the volume left nothing: no controller in sysfs and no mount under
// the test's directory.
func (e *env) assertGone(v *volume) {
	e.t.Helper()
	ctrls, err := e.in.Controllers(v.NQN)
	if err != nil || len(ctrls) != 0 {
		e.t.Errorf("controllers of %s left: %+v, %v", v.NQN, ctrls, err)
	}
	if m := mountsUnder(e.t, e.dir); len(m) != 0 {
		e.t.Errorf("mounts left: %v", m)
	}
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	out, err := inventory.MountsUnder("", dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unmountUnder unmounts everything below dir, so that a failed test does not leave mounts
// that keep devices busy (and t.TempDir's removal out of mounted file systems).
func unmountUnder(t *testing.T, dir string) {
	for _, m := range mountsUnder(t, dir) {
		if _, err := vmenv.RunE("umount", m); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func short(b []byte) string { return hex.EncodeToString(b[:8]) }
