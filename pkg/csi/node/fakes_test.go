package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mounter/mountertest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// fakeConnector models the kernel initiator in memory: controllers per subsystem, and
// namespaces that become visible once their subsystem has a controller.
type fakeConnector struct {
	mu          sync.Mutex
	multipath   bool
	ctrls       map[string][]nvme.Controller // by subsystem NQN
	namespaces  map[string]fakeNamespace     // by subsystem NQN
	failPortals map[string]error             // by "addr:port"
	stuck       bool                         // Disconnect leaves the controllers
	next        int
	connects    []nvme.ConnectOptions
	disconnects []string
	rescans     []string
	deleted     []string // controllers deleted by DeleteControllers
	subRescans  []string // subsystems rescanned by RescanSubsystem
	hideNS      bool     // FindNamespace finds nothing until RescanSubsystem (a missed event)
}

type fakeNamespace struct {
	uuid, dev       string
	size, grownSize int64 // grownSize is what a Rescan reveals
}

func newFakeConnector() *fakeConnector {
	return &fakeConnector{
		multipath: true, ctrls: map[string][]nvme.Controller{},
		namespaces: map[string]fakeNamespace{}, failPortals: map[string]error{},
	}
}

func (f *fakeConnector) addNamespace(nqn, uuid, dev string, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.namespaces[nqn] = fakeNamespace{uuid: uuid, dev: dev, size: size, grownSize: size}
}

func (f *fakeConnector) setGrownSize(nqn string, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns := f.namespaces[nqn]
	ns.grownSize = size
	f.namespaces[nqn] = ns
}

// setState sets the state of the test volume's controllers numbered which.
func (f *fakeConnector) setState(state string, which ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range which {
		f.ctrls[testNQN][i].State = state
	}
}

func (f *fakeConnector) Connect(ctx context.Context, o nvme.ConnectOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connects = append(f.connects, o)
	if err := f.failPortals[net.JoinHostPort(o.Address, o.ServiceID)]; err != nil {
		return "", err
	}
	for _, c := range f.ctrls[o.SubsysNQN] {
		if c.Address == o.Address && c.ServiceID == o.ServiceID {
			return c.Name, nil
		}
	}
	f.next++
	c := nvme.Controller{
		Name: fmt.Sprintf("nvme%d", f.next), SubsysNQN: o.SubsysNQN, Transport: o.Transport,
		Address: o.Address, ServiceID: o.ServiceID, HostNQN: o.HostNQN, HostID: o.HostID, State: "live",
	}
	f.ctrls[o.SubsysNQN] = append(f.ctrls[o.SubsysNQN], c)
	return c.Name, ctx.Err()
}

func (f *fakeConnector) Controllers(nqn string) ([]nvme.Controller, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ctrls[nqn]), nil
}

func (f *fakeConnector) Disconnect(ctx context.Context, nqn string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnects = append(f.disconnects, nqn)
	if len(f.ctrls[nqn]) > 0 && f.stuck {
		return fmt.Errorf("fake: %s still present: %w", nqn, nvme.ErrStillConnected)
	}
	delete(f.ctrls, nqn)
	return nil
}

func (f *fakeConnector) FindNamespace(nqn, uuid string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns, ok := f.namespaces[nqn]
	if !ok || ns.uuid != uuid || len(f.ctrls[nqn]) == 0 || f.hideNS {
		return "", fmt.Errorf("fake: namespace %s of %s: %w", uuid, nqn, nvme.ErrNotFound)
	}
	return ns.dev, nil
}

func (f *fakeConnector) WaitNamespace(ctx context.Context, nqn, uuid string, poll time.Duration) (string, error) {
	for {
		dev, err := f.FindNamespace(nqn, uuid)
		if !errors.Is(err, nvme.ErrNotFound) {
			return dev, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		case <-time.After(poll):
		}
	}
}

func (f *fakeConnector) VerifyDevice(dev, nqn, uuid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ns := f.namespaces[nqn]; ns.dev != dev || ns.uuid != uuid {
		return fmt.Errorf("fake: %s is not %s of %s: %w", dev, uuid, nqn, nvme.ErrWrongDevice)
	}
	return nil
}

func (f *fakeConnector) Rescan(dev string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rescans = append(f.rescans, dev)
	for nqn, ns := range f.namespaces {
		if ns.dev == dev {
			ns.size = ns.grownSize
			f.namespaces[nqn] = ns
		}
	}
	return nil
}

func (f *fakeConnector) DeviceSize(dev string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ns := range f.namespaces {
		if ns.dev == dev {
			return ns.size, nil
		}
	}
	return 0, fmt.Errorf("fake: %s: %w", dev, nvme.ErrNotFound)
}

func (f *fakeConnector) DeleteControllers(_ context.Context, nqn string, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, names...)
	f.ctrls[nqn] = slices.DeleteFunc(f.ctrls[nqn], func(c nvme.Controller) bool { return slices.Contains(names, c.Name) })
	return nil
}

func (f *fakeConnector) RescanSubsystem(nqn string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.ContainsFunc(f.ctrls[nqn], func(c nvme.Controller) bool { return c.State == "live" }) {
		return fmt.Errorf("fake: %s: no live controller: %w", nqn, nvme.ErrNotFound)
	}
	f.subRescans = append(f.subRescans, nqn)
	f.hideNS = false
	return nil
}

func (f *fakeConnector) MultipathEnabled() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.multipath
}

// controllerCount is the number of controllers of the test volume's subsystem.
func (f *fakeConnector) controllerCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ctrls[testNQN])
}

// Test volume: one subsystem with namespace 1 on two portals.
const (
	testVolume = "storage-1/vol-0123456789abcdef0123456789abcdef"
	testNQN    = "nqn.2026-11.io.nvmeof-csi:vol-0123456789abcdef0123456789abcdef"
	testUUID   = "5f1c2e3d-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
	testDev    = "/dev/nvme1n1"
	testSize   = int64(1 << 30)
	testHost   = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
	testHostID = "0f0e0d0c-0b0a-4908-8706-050403020100"
)

var testPortals = []contract.Portal{{Address: "192.0.2.1", Port: "4420"}, {Address: "192.0.2.2", Port: "4420"}}

// harness is a Node over fakes, with staging and target paths in a temporary directory.
type harness struct {
	t    *testing.T
	node *Node
	conn *fakeConnector
	mnt  *mountertest.Fake
	dir  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	fabrics := filepath.Join(dir, "nvme-fabrics")
	if err := os.WriteFile(fabrics, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, conn: newFakeConnector(), mnt: mountertest.New(), dir: dir}
	h.conn.addNamespace(testNQN, testUUID, testDev, testSize)
	h.mnt.SetDeviceSize(testDev, testSize)
	n, err := New(Options{
		NodeName:          "worker-1",
		Identity:          nvme.Identity{HostNQN: testHost, HostID: testHostID},
		Connector:         h.conn,
		Mounter:           h.mnt,
		Topology:          map[string]string{"topology.nvmeof.csi.io/zone": "a"},
		MaxVolumesPerNode: 100,
		StateDir:          filepath.Join(dir, "state"),
		FabricsDev:        fabrics,
		NamespaceTimeout:  200 * time.Millisecond,
		GrowTimeout:       200 * time.Millisecond,
		PollInterval:      5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.node = n
	return h
}

func (h *harness) path(elem ...string) string {
	return filepath.Join(append([]string{h.dir}, elem...)...)
}

func (h *harness) stagingPath() string { return h.path("staging", "globalmount") }

func publishContext() map[string]string {
	return map[string]string{
		contract.PublishSubsysNQN: testNQN,
		contract.PublishNSUUID:    testUUID,
		contract.PublishTransport: "tcp",
		contract.PublishPortals:   contract.FormatPortals(testPortals),
	}
}

func mountCap(fsType string, mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType, MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func (h *harness) stageRequest(c *csi.VolumeCapability) *csi.NodeStageVolumeRequest {
	if err := os.MkdirAll(h.stagingPath(), 0o750); err != nil {
		h.t.Fatal(err)
	}
	return &csi.NodeStageVolumeRequest{
		VolumeId:          testVolume,
		StagingTargetPath: h.stagingPath(),
		VolumeCapability:  c,
		PublishContext:    publishContext(),
		VolumeContext:     map[string]string{contract.ParamCtrlLossTmo: "60", contract.ParamReconnectDelay: "3"},
	}
}

func (h *harness) stage(c *csi.VolumeCapability) {
	h.t.Helper()
	if _, err := h.node.NodeStageVolume(context.Background(), h.stageRequest(c)); err != nil {
		h.t.Fatalf("NodeStageVolume: %v", err)
	}
}

func (h *harness) publishRequest(c *csi.VolumeCapability, target string) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId:          testVolume,
		StagingTargetPath: h.stagingPath(),
		TargetPath:        target,
		VolumeCapability:  c,
		PublishContext:    publishContext(),
	}
}

func (h *harness) unstage() error {
	_, err := h.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{
		VolumeId: testVolume, StagingTargetPath: h.stagingPath(),
	})
	return err
}

func (h *harness) stashExists() bool {
	_, err := os.Stat(h.node.stash.path(testVolume))
	return err == nil
}

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("error %v has code %s, want %s", err, got, code)
	}
}
