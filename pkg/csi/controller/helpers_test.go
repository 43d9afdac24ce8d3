package controller

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

// nodeSpec describes one fake storage node of a fixture.
type nodeSpec struct {
	name     string
	bytes    int64
	topology map[string]string
}

// fixture is a controller over fake agents.
type fixture struct {
	c      *Controller
	agents map[string]*fakeagent.Agent
}

func newFixture(t *testing.T, specs ...nodeSpec) *fixture {
	t.Helper()
	f := &fixture{agents: map[string]*fakeagent.Agent{}}
	var nodes []agentclient.StorageNode
	var agents []*fakeagent.Agent
	for _, s := range specs {
		a := fakeagent.New(s.name, s.bytes)
		f.agents[s.name] = a
		agents = append(agents, a)
		nodes = append(nodes, agentclient.StorageNode{Name: s.name, Address: "unix:///" + s.name, Topology: s.topology})
	}
	f.c = New(Options{StorageNodes: nodes, Agents: fakeagent.NewCluster(agents...)})
	return f
}

// oneNode is a fixture with one 100 GiB storage node "s1" without topology.
func oneNode(t *testing.T) *fixture { return newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}) }

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, fs string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func blockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var snw = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "ext4")

// createReq is a minimal valid CreateVolume request.
func createReq(name string, bytes int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: bytes},
		VolumeCapabilities: []*csi.VolumeCapability{snw},
	}
}

func (f *fixture) mustCreate(t *testing.T, req *csi.CreateVolumeRequest) *csi.Volume {
	t.Helper()
	resp, err := f.c.CreateVolume(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", req.GetName(), err)
	}
	return resp.GetVolume()
}

func (f *fixture) mustSnapshot(t *testing.T, name, volumeID string) *csi.Snapshot {
	t.Helper()
	resp, err := f.c.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: volumeID})
	if err != nil {
		t.Fatalf("CreateSnapshot(%s): %v", name, err)
	}
	return resp.GetSnapshot()
}

// storageNodeOf returns the storage node part of a volume or snapshot ID.
func storageNodeOf(t *testing.T, id string) string {
	t.Helper()
	for _, kind := range []string{kindVolume, kindSnapshot} {
		if node, _, ok := contract.ParseObjectID(id, kind); ok {
			return node
		}
	}
	t.Fatalf("%q is not an object ID", id)
	return ""
}

func nodeID(name string) string {
	return contract.NodeID(name, "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-"+pad12(name))
}

func pad12(s string) string {
	for len(s) < 12 {
		s = "0" + s
	}
	return s[len(s)-12:]
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("error %v: code %v, want %v", err, got, want)
	}
}
