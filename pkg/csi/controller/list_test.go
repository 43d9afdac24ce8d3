package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
)

// listAllVolumes pages through ListVolumes with max entries per page and returns the IDs.
func listAllVolumes(t *testing.T, c *Controller, max int32) []string {
	t.Helper()
	var ids []string
	token := ""
	for range 100 {
		resp, err := c.ListVolumes(context.Background(), &csi.ListVolumesRequest{MaxEntries: max, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if max > 0 && len(resp.GetEntries()) > int(max) {
			t.Fatalf("page of %d entries, max %d", len(resp.GetEntries()), max)
		}
		for _, e := range resp.GetEntries() {
			ids = append(ids, e.GetVolume().GetVolumeId())
		}
		if token = resp.GetNextToken(); token == "" {
			return ids
		}
	}
	t.Fatal("pagination does not end")
	return nil
}

func TestListVolumesPaginatesInAStableOrder(t *testing.T) {
	// "a-b" sorts before "a" by ID string ('-' < '/'), but after it by node name.
	f := newFixture(t, nodeSpec{name: "a", bytes: 100 * gib}, nodeSpec{name: "a-b", bytes: 100 * gib}, nodeSpec{name: "b", bytes: 100 * gib})
	var want []string
	for i := range 7 {
		req := createReq(fmt.Sprintf("pvc-%d", i), gib)
		req.Parameters = map[string]string{"storageNodes": []string{"a", "a-b", "b"}[i%3]}
		f.mustCreate(t, req)
	}
	all := listAllVolumes(t, f.c, 0)
	if len(all) != 7 {
		t.Fatalf("%d volumes listed, want 7: %v", len(all), all)
	}
	want = slices.Clone(all)
	slices.SortStableFunc(want, func(x, y string) int {
		return cmp.Compare(storageNodeOf(t, x), storageNodeOf(t, y))
	})
	if !slices.Equal(all, want) {
		t.Fatalf("order %v, want by node name then ID %v", all, want)
	}
	for _, max := range []int32{1, 2, 3, 7, 8} {
		if got := listAllVolumes(t, f.c, max); !slices.Equal(got, all) {
			t.Errorf("max %d: pages gave %v, want %v", max, got, all)
		}
	}
	// A token survives the deletion of the entry it points at.
	resp, err := f.c.ListVolumes(context.Background(), &csi.ListVolumesRequest{MaxEntries: 3})
	if err != nil || resp.GetNextToken() != all[3] {
		t.Fatalf("first page = %v, %v", resp, err)
	}
	if _, err := f.c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: all[3]}); err != nil {
		t.Fatal(err)
	}
	rest, err := f.c.ListVolumes(context.Background(), &csi.ListVolumesRequest{StartingToken: resp.GetNextToken()})
	if err != nil || len(rest.GetEntries()) != 3 || rest.GetEntries()[0].GetVolume().GetVolumeId() != all[4] {
		t.Fatalf("page after a deleted token = %v, %v", rest, err)
	}
}

func TestListVolumesEntries(t *testing.T) {
	f := oneNode(t)
	vol := f.mustCreate(t, createReq("pvc-1", gib))
	if _, err := f.c.ControllerPublishVolume(context.Background(), publishReq(vol.VolumeId, nodeID("w1"), snw)); err != nil {
		t.Fatal(err)
	}
	resp, err := f.c.ListVolumes(context.Background(), &csi.ListVolumesRequest{})
	if err != nil || len(resp.GetEntries()) != 1 {
		t.Fatalf("ListVolumes = %v, %v", resp, err)
	}
	e := resp.GetEntries()[0]
	if e.GetVolume().GetVolumeId() != vol.VolumeId || e.GetVolume().GetCapacityBytes() != gib {
		t.Errorf("volume %v", e.GetVolume())
	}
	if got := e.GetStatus().GetPublishedNodeIds(); len(got) != 1 || got[0] != nodeID("w1") {
		t.Errorf("published node IDs %v", got)
	}
}

func TestListErrors(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"volumes: invalid token", func() error {
			_, err := f.c.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "invalid-token"})
			return err
		}, codes.Aborted},
		{"volumes: a snapshot ID is not a volume token", func() error {
			_, err := f.c.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "s1/snap-00000000000000000000000000000000"})
			return err
		}, codes.Aborted},
		{"volumes: negative max", func() error {
			_, err := f.c.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: -1})
			return err
		}, codes.InvalidArgument},
		{"snapshots: invalid token", func() error {
			_, err := f.c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: "invalid-token"})
			return err
		}, codes.Aborted},
		{"health: invalid token", func() error {
			_, err := f.c.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{StartingToken: "x"})
			return err
		}, codes.Aborted},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code) })
	}
	// A storage node that does not answer fails the list: a partial list would claim its
	// volumes are gone.
	f.agents["s2"].SetError(fakeagent.AllMethods, fakeagent.Unavailable)
	_, err := f.c.ListVolumes(ctx, &csi.ListVolumesRequest{})
	wantCode(t, err, codes.Unavailable)
}

func TestListSnapshotsPaginates(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", bytes: 100 * gib}, nodeSpec{name: "s2", bytes: 100 * gib})
	for i := range 5 {
		v := f.mustCreate(t, createReq(fmt.Sprintf("pvc-%d", i), gib))
		f.mustSnapshot(t, fmt.Sprintf("snap-%d", i), v.VolumeId)
	}
	first, err := f.c.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{MaxEntries: 2})
	if err != nil || len(first.GetEntries()) != 2 || first.GetNextToken() == "" {
		t.Fatalf("first page = %v, %v", first, err)
	}
	rest, err := f.c.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{StartingToken: first.GetNextToken()})
	if err != nil || len(rest.GetEntries()) != 3 || rest.GetNextToken() != "" {
		t.Fatalf("rest = %v, %v", rest, err)
	}
	seen := map[string]bool{}
	for _, e := range append(first.GetEntries(), rest.GetEntries()...) {
		if seen[e.GetSnapshot().GetSnapshotId()] {
			t.Errorf("%s listed twice", e.GetSnapshot().GetSnapshotId())
		}
		seen[e.GetSnapshot().GetSnapshotId()] = true
	}
}
