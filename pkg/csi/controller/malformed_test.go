package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/internal/grpctest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// TestMalformedRequestsGetTheirCodeAndCreateNothing sends what a hostile or careless caller
// would, over gRPC through the server the binary runs: each call gets its documented code
// (never Internal or Unknown), the server keeps answering, and no agent gains a volume, a
// snapshot or a host.
func TestMalformedRequestsGetTheirCodeAndCreateNothing(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	conn := grpctest.Serve(t, func(s *grpc.Server) { csi.RegisterControllerServer(s, f.c) })
	c := csi.NewControllerClient(conn)
	ctx := context.Background()
	long := strings.Repeat("x", 1<<16)
	badVol := "s1/vol-" + strings.Repeat("g", 32)
	goodVol := "s1/vol-" + strings.Repeat("0", 32)
	nodeID := nodeID("w1")
	fromSnap := func(id string) *csi.VolumeContentSource {
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
	}

	grpctest.Run(t, []grpctest.Case{
		{"create: no name", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{VolumeCapabilities: []*csi.VolumeCapability{snw}}), codes.InvalidArgument},
		{"create: no capability", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a"}), codes.InvalidArgument},
		{"create: empty capability", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{{}}}), codes.InvalidArgument},
		{"create: negative size", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{snw},
			CapacityRange: &csi.CapacityRange{RequiredBytes: -1}}), codes.InvalidArgument},
		{"create: limit below required", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{snw},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib, LimitBytes: gib}}), codes.InvalidArgument},
		{"create: unknown parameter", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{snw},
			Parameters: map[string]string{"bogus\x00": "1"}}), codes.InvalidArgument},
		{"create: NUL in a parameter", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{snw},
			Parameters: map[string]string{"storageNodes": "s1\x00"}}), codes.InvalidArgument},
		{"create: unknown file system", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a",
			VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "../../bin/sh")}}), codes.InvalidArgument},
		{"create: source snapshot malformed", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{snw},
			VolumeContentSource: fromSnap("s1/snap-\n")}), codes.NotFound},
		{"create: source on an unknown storage node", grpctest.Call(c.CreateVolume, ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{snw},
			VolumeContentSource: fromSnap("s9/snap-" + strings.Repeat("0", 32))}), codes.NotFound},
		{"delete: no ID", grpctest.Call(c.DeleteVolume, ctx, &csi.DeleteVolumeRequest{}), codes.InvalidArgument},
		{"publish: no volume", grpctest.Call(c.ControllerPublishVolume, ctx, &csi.ControllerPublishVolumeRequest{NodeId: nodeID, VolumeCapability: snw}), codes.InvalidArgument},
		{"publish: no node", grpctest.Call(c.ControllerPublishVolume, ctx, &csi.ControllerPublishVolumeRequest{VolumeId: goodVol, VolumeCapability: snw}), codes.InvalidArgument},
		{"publish: malformed volume", grpctest.Call(c.ControllerPublishVolume, ctx, &csi.ControllerPublishVolumeRequest{VolumeId: badVol, NodeId: nodeID, VolumeCapability: snw}), codes.NotFound},
		{"publish: unknown volume", grpctest.Call(c.ControllerPublishVolume, ctx, &csi.ControllerPublishVolumeRequest{VolumeId: goodVol, NodeId: nodeID, VolumeCapability: snw}), codes.NotFound},
		{"publish: huge volume ID", grpctest.Call(c.ControllerPublishVolume, ctx, &csi.ControllerPublishVolumeRequest{VolumeId: long, NodeId: nodeID, VolumeCapability: snw}), codes.NotFound},
		{"unpublish: no volume", grpctest.Call(c.ControllerUnpublishVolume, ctx, &csi.ControllerUnpublishVolumeRequest{NodeId: nodeID}), codes.InvalidArgument},
		{"expand: no volume", grpctest.Call(c.ControllerExpandVolume, ctx, &csi.ControllerExpandVolumeRequest{CapacityRange: &csi.CapacityRange{RequiredBytes: gib}}), codes.InvalidArgument},
		{"expand: malformed volume", grpctest.Call(c.ControllerExpandVolume, ctx, &csi.ControllerExpandVolumeRequest{VolumeId: badVol, CapacityRange: &csi.CapacityRange{RequiredBytes: gib}}), codes.NotFound},
		{"validate: no volume", grpctest.Call(c.ValidateVolumeCapabilities, ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: []*csi.VolumeCapability{snw}}), codes.InvalidArgument},
		{"validate: malformed volume", grpctest.Call(c.ValidateVolumeCapabilities, ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: long, VolumeCapabilities: []*csi.VolumeCapability{snw}}), codes.NotFound},
		{"snapshot: no name", grpctest.Call(c.CreateSnapshot, ctx, &csi.CreateSnapshotRequest{SourceVolumeId: goodVol}), codes.InvalidArgument},
		{"snapshot: no source", grpctest.Call(c.CreateSnapshot, ctx, &csi.CreateSnapshotRequest{Name: "s"}), codes.InvalidArgument},
		{"snapshot: malformed source", grpctest.Call(c.CreateSnapshot, ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: badVol}), codes.NotFound},
		{"snapshot: a parameter", grpctest.Call(c.CreateSnapshot, ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: goodVol, Parameters: map[string]string{"x": "y"}}), codes.InvalidArgument},
		{"delete snapshot: no ID", grpctest.Call(c.DeleteSnapshot, ctx, &csi.DeleteSnapshotRequest{}), codes.InvalidArgument},
		{"list: bad token", grpctest.Call(c.ListVolumes, ctx, &csi.ListVolumesRequest{StartingToken: "not-a-token\x00"}), codes.Aborted},
		{"list: negative max", grpctest.Call(c.ListVolumes, ctx, &csi.ListVolumesRequest{MaxEntries: -1}), codes.InvalidArgument},
		{"list snapshots: bad token", grpctest.Call(c.ListSnapshots, ctx, &csi.ListSnapshotsRequest{StartingToken: long}), codes.Aborted},
		{"capacity: unknown parameter", grpctest.Call(c.GetCapacity, ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"bogus": "1"}}), codes.InvalidArgument},
	})
	// Still serving.
	if _, err := c.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{}); err != nil {
		t.Fatalf("the server stopped answering: %v", err)
	}
	for name, a := range f.agents {
		vols, _ := a.ListVolumes(ctx, &agentapi.ListVolumesRequest{})
		snaps, _ := a.ListSnapshots(ctx, &agentapi.ListSnapshotsRequest{})
		if len(vols.GetVolumes()) != 0 || len(snaps.GetSnapshots()) != 0 {
			t.Errorf("storage node %s holds %d volumes and %d snapshots after malformed requests", name, len(vols.GetVolumes()), len(snaps.GetSnapshots()))
		}
	}
}
