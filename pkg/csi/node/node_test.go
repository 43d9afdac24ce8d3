package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mounter/mountertest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

func TestNewRefusesAHostWithoutTheFabricsDevice(t *testing.T) {
	_, err := New(Options{
		NodeName:   "worker-1",
		Identity:   nvme.Identity{HostNQN: testHost, HostID: testHostID},
		Connector:  newFakeConnector(),
		Mounter:    mountertest.New(),
		FabricsDev: filepath.Join(t.TempDir(), "nvme-fabrics"),
	})
	if err == nil || !strings.Contains(err.Error(), "never runs modprobe") {
		t.Fatalf("New = %v, want a clear error about the missing fabrics device", err)
	}
}

func TestNewValidatesItsDependencies(t *testing.T) {
	good := newHarness(t).node.opts
	for name, mutate := range map[string]func(*Options){
		"no node name": func(o *Options) { o.NodeName = "" },
		"no connector": func(o *Options) { o.Connector = nil },
		"no mounter":   func(o *Options) { o.Mounter = nil },
		"bad host NQN": func(o *Options) { o.Identity.HostNQN = "host" },
		"bad host ID":  func(o *Options) { o.Identity.HostID = "id" },
	} {
		o := good
		mutate(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestNodeGetInfoReportsIdentityTopologyAndLimit(t *testing.T) {
	h := newHarness(t)
	resp, err := h.node.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetNodeId() != contract.NodeID("worker-1", testHost) {
		t.Errorf("node ID %q", resp.GetNodeId())
	}
	if name, nqn, err := contract.ParseNodeID(resp.GetNodeId()); err != nil || name != "worker-1" || nqn != testHost {
		t.Errorf("node ID does not parse back: %q %q %v", name, nqn, err)
	}
	segs := resp.GetAccessibleTopology().GetSegments()
	if resp.GetMaxVolumesPerNode() != 100 || segs["topology.nvmeof.csi.io/zone"] != "a" || segs[contract.TopologyNodeKey] != "worker-1" {
		t.Errorf("info %v", resp)
	}
}

func TestNodeGetCapabilities(t *testing.T) {
	h := newHarness(t)
	resp, err := h.node.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[csi.NodeServiceCapability_RPC_Type]bool{}
	for _, c := range resp.GetCapabilities() {
		got[c.GetRpc().GetType()] = true
	}
	for _, want := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME, csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS, csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		if !got[want] {
			t.Errorf("capability %s missing", want)
		}
	}
}

func TestErrorsMapToCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{rpcerr.Invalidf("x"), codes.InvalidArgument},
		{fmt.Errorf("connect: %w", nvme.ErrInvalidOption), codes.InvalidArgument},
		{fmt.Errorf("params: %w", contract.ErrBadParameter), codes.InvalidArgument},
		{rpcerr.NotFoundf("x"), codes.NotFound},
		{rpcerr.Existsf("x"), codes.AlreadyExists},
		{rpcerr.Preconditionf("x"), codes.FailedPrecondition},
		{fmt.Errorf("verify: %w", nvme.ErrWrongDevice), codes.FailedPrecondition},
		{fmt.Errorf("disconnect: %w", nvme.ErrStillConnected), codes.Unavailable},
		{fmt.Errorf("stage: %w (%w)", context.DeadlineExceeded, errLeftBehind), codes.Unavailable},
		{fmt.Errorf("portal: %w", syscall.ECONNREFUSED), codes.Unavailable},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("mkfs failed"), codes.Internal},
		{status.Error(codes.Aborted, "busy"), codes.Aborted},
	} {
		if got := status.Code(rpcerr.Status(tc.err)); got != tc.code {
			t.Errorf("rpcerr.Status(%v) = %s, want %s", tc.err, got, tc.code)
		}
	}
	if rpcerr.Status(nil) != nil {
		t.Error("rpcerr.Status(nil) is not nil")
	}
}

func TestStashRoundTrip(t *testing.T) {
	s := stashStore{dir: filepath.Join(t.TempDir(), "state")}
	if st, err := s.load("vol"); st != nil || err != nil {
		t.Fatalf("load of a missing stash = %v, %v", st, err)
	}
	want := &volumeStash{VolumeID: "vol", StagingPath: "/s", SubsysNQN: testNQN, NSUUID: testUUID, Transport: "tcp", Portals: "192.0.2.1:4420", FSType: "xfs",
		Connection: map[string]string{"ctrlLossTmo": "60"}}
	if err := s.save(want); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.all(); err != nil || !slices.Equal(ids, []string{"vol"}) {
		t.Fatalf("all = %v, %v", ids, err)
	}
	got, err := s.load("vol")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("load = %+v, %v; want %+v", got, err, want)
	}
	if got.Version != stashVersion {
		t.Errorf("version %d", got.Version)
	}
	if entries, _ := os.ReadDir(s.dir); len(entries) != 1 {
		t.Errorf("state directory holds %d entries, want just the stash (no temporary files)", len(entries))
	}
	if err := os.WriteFile(s.path("vol"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.load("vol"); err == nil {
		t.Error("a corrupt stash loaded")
	}
	for range 2 {
		if err := s.remove("vol"); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := s.load("vol"); st != nil || err != nil {
		t.Fatalf("after remove: %v, %v", st, err)
	}
}
