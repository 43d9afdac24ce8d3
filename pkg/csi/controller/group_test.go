package controller

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// twoNodeVolumes is a fixture with volumes a and b on s1 and c on s2.
func twoNodeVolumes(t *testing.T) (f *fixture, a, b, c string) {
	t.Helper()
	f = newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	on := func(name, node string) string {
		return f.mustCreate(t, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{snw},
			Parameters: map[string]string{"storageNodes": node}}).VolumeId
	}
	return f, on("data", "s1"), on("wal", "s1"), on("logs", "s2")
}

func groupSources(g *csi.VolumeGroupSnapshot) []string {
	var out []string
	for _, s := range g.GetSnapshots() {
		out = append(out, s.GetSourceVolumeId())
	}
	slices.Sort(out)
	return out
}

func TestGroupSnapshotOnOneStorageNode(t *testing.T) {
	f, a, b, _ := twoNodeVolumes(t)
	g := NewGroup(f.c)
	ctx := context.Background()
	resp, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	gs := resp.GroupSnapshot
	if gs.GroupSnapshotId != agentapi.GroupSnapshotID("g1") || !gs.ReadyToUse || gs.CreationTime == nil {
		t.Errorf("group %v", gs)
	}
	if got, want := groupSources(gs), []string{a, b}; !slices.Equal(got, want) && !slices.Equal(got, []string{b, a}) {
		t.Errorf("members of %v, want of %v", got, want)
	}
	for _, s := range gs.Snapshots {
		if s.GroupSnapshotId != gs.GroupSnapshotId {
			t.Errorf("member %v does not name its group", s)
		}
	}
	if calls := f.agents["s1"].Calls(); slices.Contains(calls, "HoldWrites") {
		t.Errorf("one storage node needs no two-phase hold: calls %v", calls)
	}
	// Retries return the same group; members restore like any snapshot (GetSnapshot works).
	again, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{b, a}})
	if err != nil || again.GroupSnapshot.GroupSnapshotId != gs.GroupSnapshotId || len(again.GroupSnapshot.Snapshots) != 2 {
		t.Fatalf("retry = %v, %v", again, err)
	}
	one, err := f.c.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: gs.Snapshots[0].SnapshotId})
	if err != nil || one.Snapshot.GroupSnapshotId != gs.GroupSnapshotId {
		t.Errorf("GetSnapshot of a member = %v, %v", one, err)
	}
	got, err := g.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: gs.GroupSnapshotId})
	if err != nil || len(got.GroupSnapshot.Snapshots) != 2 {
		t.Fatalf("GetVolumeGroupSnapshot = %v, %v", got, err)
	}
	// The same name for other volumes is AlreadyExists.
	_, err = g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a}})
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("same name, fewer volumes: %v, want AlreadyExists", err)
	}
}

func TestGroupSnapshotAcrossStorageNodesHoldsEveryNodeFirst(t *testing.T) {
	f, a, b, c := twoNodeVolumes(t)
	g := NewGroup(f.c)
	ctx := context.Background()
	// Phase two may start on a node only when both nodes hold writes.
	var mu sync.Mutex
	held := map[string]bool{}
	for _, name := range []string{"s1", "s2"} {
		f.agents[name].SetHook(func(_ context.Context, method string) error {
			mu.Lock()
			defer mu.Unlock()
			switch method {
			case "HoldWrites":
				held[name] = true
			case "CreateGroupSnapshot":
				if !held["s1"] || !held["s2"] {
					t.Errorf("%s: snapshot before every node held writes (%v)", name, held)
				}
			}
			return nil
		})
	}
	resp, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a, c, b}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GroupSnapshot.Snapshots); n != 3 {
		t.Fatalf("%d members, want 3", n)
	}
	for _, name := range []string{"s1", "s2"} {
		if h := f.agents[name].Holds(); len(h) != 0 {
			t.Errorf("%s: holds left in force: %v", name, h)
		}
	}
	// Delete with the members' IDs removes every one on both nodes.
	var ids []string
	for _, s := range resp.GroupSnapshot.Snapshots {
		ids = append(ids, s.SnapshotId)
	}
	if _, err := g.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: resp.GroupSnapshot.GroupSnapshotId, SnapshotIds: ids}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := f.c.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: id}); status.Code(err) != codes.NotFound {
			t.Errorf("member %s after the group's deletion: %v", id, err)
		}
	}
	_, err = g.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: resp.GroupSnapshot.GroupSnapshotId})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetVolumeGroupSnapshot after delete: %v", err)
	}
	if _, err := g.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: resp.GroupSnapshot.GroupSnapshotId}); err != nil {
		t.Errorf("deleting again: %v", err)
	}
}

func TestGroupSnapshotFailingOnOneNodeLeavesNothing(t *testing.T) {
	f, a, _, c := twoNodeVolumes(t)
	g := NewGroup(f.c)
	ctx := context.Background()
	// s2's hold expired before its phase two: s1's members must go again.
	f.agents["s2"].SetError("CreateGroupSnapshot", status.Error(codes.Aborted, "hold expired"))
	_, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a, c}})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("CreateVolumeGroupSnapshot = %v, want Aborted", err)
	}
	list, err := f.c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil || len(list.Entries) != 0 {
		t.Fatalf("snapshots left after a failed group: %v, %v", list, err)
	}
	for _, name := range []string{"s1", "s2"} {
		if h := f.agents[name].Holds(); len(h) != 0 {
			t.Errorf("%s: holds left in force: %v", name, h)
		}
	}
	// Phase one failing on one node releases the other's hold.
	f.agents["s2"].SetError("CreateGroupSnapshot", nil)
	f.agents["s2"].SetError("HoldWrites", status.Error(codes.Unavailable, "down"))
	_, err = g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a, c}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("with s2 down: %v, want Unavailable", err)
	}
	if h := f.agents["s1"].Holds(); len(h) != 0 {
		t.Errorf("s1 still holds writes after s2 failed phase one: %v", h)
	}
	// Healed, the retry makes the whole group.
	f.agents["s2"].SetError("HoldWrites", nil)
	resp, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a, c}})
	if err != nil || len(resp.GroupSnapshot.Snapshots) != 2 {
		t.Fatalf("retry = %v, %v", resp, err)
	}
}

func TestGroupSnapshotRetryCleansUpAnAttemptCutShort(t *testing.T) {
	f, a, _, c := twoNodeVolumes(t)
	g := NewGroup(f.c)
	ctx := context.Background()
	resp, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a, c}})
	if err != nil {
		t.Fatal(err)
	}
	// Lose s2's member, as if the controller died between the two nodes' phase two.
	lost := resp.GroupSnapshot.Snapshots[1]
	if _, err := f.c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: lost.SnapshotId}); err != nil {
		t.Fatal(err)
	}
	again, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a, c}})
	if err != nil || len(again.GroupSnapshot.Snapshots) != 2 {
		t.Fatalf("retry = %v, %v", again, err)
	}
	// Both members are new: the survivor of the cut-short attempt was made again with the other.
	for _, s := range again.GroupSnapshot.Snapshots {
		if s.CreationTime.AsTime().Before(resp.GroupSnapshot.Snapshots[1].CreationTime.AsTime()) ||
			s.CreationTime.AsTime().Equal(resp.GroupSnapshot.Snapshots[0].CreationTime.AsTime()) {
			t.Errorf("member %v was not taken again", s)
		}
	}
}

func TestGroupSnapshotRequestsValidated(t *testing.T) {
	f, a, _, _ := twoNodeVolumes(t)
	g := NewGroup(f.c)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		req  *csi.CreateVolumeGroupSnapshotRequest
		code codes.Code
	}{
		"no name":            {&csi.CreateVolumeGroupSnapshotRequest{SourceVolumeIds: []string{a}}, codes.InvalidArgument},
		"no volumes":         {&csi.CreateVolumeGroupSnapshotRequest{Name: "g"}, codes.InvalidArgument},
		"unknown parameter":  {&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a}, Parameters: map[string]string{"x": "y"}}, codes.InvalidArgument},
		"bad deletionPolicy": {&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a}, Parameters: map[string]string{"deletionPolicy": "Keep"}}, codes.InvalidArgument},
		"volume twice":       {&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{a, a}}, codes.InvalidArgument},
		"malformed volume":   {&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{"nope"}}, codes.NotFound},
		"missing volume":     {&csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{"s1/vol-00000000000000000000000000000000"}}, codes.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := g.CreateVolumeGroupSnapshot(ctx, tc.req)
			if status.Code(err) != tc.code {
				t.Errorf("%v, want %v", err, tc.code)
			}
		})
	}
	_, err := g.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Get without ID: %v", err)
	}
	_, err = g.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Get of a malformed ID: %v", err)
	}
	_, err = g.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Delete without ID: %v", err)
	}
	if _, err := g.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: "nope"}); err != nil {
		t.Errorf("Delete of a malformed ID: %v", err)
	}
	// A snapshot that is not a member named with a group is a mismatch. (The class's
	// deletionPolicy, copied into its parameters as the e2e suite does, is accepted.)
	resp, err := g.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g1", SourceVolumeIds: []string{a},
		Parameters: map[string]string{"deletionPolicy": "Delete"}})
	if err != nil {
		t.Fatal(err)
	}
	other := f.mustSnapshot(t, "lone", a)
	_, err = g.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: resp.GroupSnapshot.GroupSnapshotId,
		SnapshotIds: []string{resp.GroupSnapshot.Snapshots[0].SnapshotId, other.SnapshotId}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Delete naming a non-member: %v, want InvalidArgument", err)
	}
	caps, err := g.GroupControllerGetCapabilities(ctx, &csi.GroupControllerGetCapabilitiesRequest{})
	if err != nil || len(caps.Capabilities) != 1 ||
		caps.Capabilities[0].GetRpc().GetType() != csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT {
		t.Errorf("capabilities %v, %v", caps, err)
	}
}
