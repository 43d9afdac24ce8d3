package controller

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
)

func TestCreateSnapshot(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	v1 := f.mustCreate(t, createReq("pvc-1", gib)) // on s1
	v2 := f.mustCreate(t, createReq("pvc-2", gib)) // on s2 (more room)
	v3 := f.mustCreate(t, &csi.CreateVolumeRequest{Name: "pvc-3", VolumeCapabilities: []*csi.VolumeCapability{snw}, Parameters: map[string]string{"storageNodes": "s1"}})
	if storageNodeOf(t, v1.VolumeId) == storageNodeOf(t, v2.VolumeId) {
		t.Fatalf("test wants volumes on two nodes: %s %s", v1.VolumeId, v2.VolumeId)
	}
	snap := f.mustSnapshot(t, "snap-1", v1.VolumeId)
	if snap.SizeBytes != gib || snap.CreationTime == nil || snap.CreationTime.AsTime().IsZero() || !snap.ReadyToUse {
		t.Errorf("snapshot %v", snap)
	}
	if again := f.mustSnapshot(t, "snap-1", v1.VolumeId); again.SnapshotId != snap.SnapshotId || !again.CreationTime.AsTime().Equal(snap.CreationTime.AsTime()) {
		t.Errorf("retry gave %v, first %v", again, snap)
	}
	for _, tc := range []struct {
		name string
		req  *csi.CreateSnapshotRequest
		code codes.Code
	}{
		{"no name", &csi.CreateSnapshotRequest{SourceVolumeId: "testId"}, codes.InvalidArgument},
		{"no source", &csi.CreateSnapshotRequest{Name: "name"}, codes.InvalidArgument},
		{"unknown parameter", &csi.CreateSnapshotRequest{Name: "snap-2", SourceVolumeId: v1.VolumeId, Parameters: map[string]string{"x": "y"}}, codes.InvalidArgument},
		{"malformed source", &csi.CreateSnapshotRequest{Name: "snap-2", SourceVolumeId: "testId"}, codes.NotFound},
		{"missing source", &csi.CreateSnapshotRequest{Name: "snap-2", SourceVolumeId: "s1/vol-00000000000000000000000000000000"}, codes.NotFound},
		{"same name, other source on the same node", &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: v3.VolumeId}, codes.AlreadyExists},
		{"same name, other source on another node", &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: v2.VolumeId}, codes.AlreadyExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.CreateSnapshot(context.Background(), tc.req)
			wantCode(t, err, tc.code)
		})
	}
	// Reserved parameters of the snapshotter sidecar are accepted.
	if _, err := f.c.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "snap-3", SourceVolumeId: v1.VolumeId,
		Parameters: map[string]string{"csi.storage.k8s.io/volumesnapshot/name": "s"}}); err != nil {
		t.Errorf("reserved parameter refused: %v", err)
	}
}

func TestDeleteAndGetSnapshot(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	snap := f.mustSnapshot(t, "snap-1", vol.VolumeId)
	got, err := f.c.GetSnapshot(context.Background(), &csi.GetSnapshotRequest{SnapshotId: snap.SnapshotId})
	if err != nil || got.GetSnapshot().GetSnapshotId() != snap.SnapshotId {
		t.Fatalf("GetSnapshot = %v, %v", got, err)
	}
	del := func(id string) error {
		_, err := f.c.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: id})
		return err
	}
	f.agents["s1"].SetError("DeleteSnapshot", status.Error(codes.Unavailable, "down"))
	wantCode(t, del(snap.SnapshotId), codes.Unavailable)
	f.agents["s1"].SetError("DeleteSnapshot", nil)
	for _, id := range []string{snap.SnapshotId, snap.SnapshotId, "reallyfakesnapshotid", "s9/snap-00000000000000000000000000000000"} {
		if err := del(id); err != nil {
			t.Errorf("DeleteSnapshot(%s) = %v, want OK", id, err)
		}
	}
	if _, ok := f.agents["s1"].Snapshot(agentapi.SnapshotID("snap-1")); ok {
		t.Error("snapshot still on the agent")
	}
	wantCode(t, del(""), codes.InvalidArgument)
	for id, code := range map[string]codes.Code{"": codes.InvalidArgument, "none-exist-id": codes.NotFound, snap.SnapshotId: codes.NotFound} {
		_, err := f.c.GetSnapshot(context.Background(), &csi.GetSnapshotRequest{SnapshotId: id})
		wantCode(t, err, code)
	}
}

func TestListSnapshotsFilters(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	v1 := f.mustCreate(t, createReq("pvc-1", gib))
	v2 := f.mustCreate(t, createReq("pvc-2", gib))
	a := f.mustSnapshot(t, "a", v1.VolumeId)
	f.mustSnapshot(t, "b", v1.VolumeId)
	c := f.mustSnapshot(t, "c", v2.VolumeId)
	list := func(req *csi.ListSnapshotsRequest) []string {
		t.Helper()
		resp, err := f.c.ListSnapshots(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range resp.GetEntries() {
			ids = append(ids, e.GetSnapshot().GetSnapshotId())
		}
		return ids
	}
	for _, tc := range []struct {
		name string
		req  *csi.ListSnapshotsRequest
		want int
	}{
		{"all", &csi.ListSnapshotsRequest{}, 3},
		{"by ID", &csi.ListSnapshotsRequest{SnapshotId: a.SnapshotId}, 1},
		{"by source", &csi.ListSnapshotsRequest{SourceVolumeId: v1.VolumeId}, 2},
		{"by source on the other node", &csi.ListSnapshotsRequest{SourceVolumeId: v2.VolumeId}, 1},
		{"by ID and matching source", &csi.ListSnapshotsRequest{SnapshotId: c.SnapshotId, SourceVolumeId: v2.VolumeId}, 1},
		{"by ID and other source", &csi.ListSnapshotsRequest{SnapshotId: c.SnapshotId, SourceVolumeId: v1.VolumeId}, 0},
		{"malformed ID", &csi.ListSnapshotsRequest{SnapshotId: "none-exist-id"}, 0},
		{"unknown ID", &csi.ListSnapshotsRequest{SnapshotId: "s1/snap-00000000000000000000000000000000"}, 0},
		{"ID on an unknown node", &csi.ListSnapshotsRequest{SnapshotId: "s9/snap-00000000000000000000000000000000"}, 0},
		{"unknown source", &csi.ListSnapshotsRequest{SourceVolumeId: "s1/vol-00000000000000000000000000000000"}, 0},
		{"malformed source", &csi.ListSnapshotsRequest{SourceVolumeId: "fake"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := list(tc.req); len(got) != tc.want {
				t.Fatalf("got %v, want %d entries", got, tc.want)
			}
		})
	}
	if got := list(&csi.ListSnapshotsRequest{SnapshotId: a.SnapshotId}); got[0] != a.SnapshotId {
		t.Errorf("by ID got %v", got)
	}
	f.agents["s2"].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
	_, err := f.c.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{})
	wantCode(t, err, codes.Unavailable)
}
