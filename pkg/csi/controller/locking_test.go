package controller

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// blockOn makes the agent's method block, once, until release is closed; entered is closed
// when the call is inside.
func blockOn(f *fixture, node, method string) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var blocked bool
	f.agents[node].SetHook(func(ctx context.Context, m string) error {
		if m != method || blocked {
			return nil
		}
		blocked = true
		close(entered)
		<-release
		return nil
	})
	return entered, release
}

// TestConcurrentCallsOnTheSameVolumeAreAborted proves the try-locks: while one call on a
// volume is inside the agent, a second call on the same volume is Aborted at once, a call on
// another volume proceeds, and the first call completes normally.
func TestConcurrentCallsOnTheSameVolumeAreAborted(t *testing.T) {
	f := oneNode(t)
	other := f.mustCreate(t, createReq("other", gib))
	ctx := context.Background()
	var vol *csi.Volume // a fresh volume for each case

	for _, tc := range []struct {
		name   string
		method string
		first  func() error
		second func() error
	}{
		{
			name: "publish while publishing", method: "PublishVolume",
			first: func() error {
				_, err := f.c.ControllerPublishVolume(ctx, publishReq(vol.VolumeId, nodeID("w1"), snw))
				return err
			},
			second: func() error {
				_, err := f.c.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.VolumeId, NodeId: nodeID("w1")})
				return err
			},
		},
		{
			name: "delete while expanding", method: "ExpandVolume",
			first: func() error {
				_, err := f.c.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: vol.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib}})
				return err
			},
			second: func() error {
				_, err := f.c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.VolumeId})
				return err
			},
		},
		{
			name: "create while creating the same name", method: "CreateVolume",
			first: func() error {
				_, err := f.c.CreateVolume(ctx, createReq("pvc-3", gib))
				return err
			},
			second: func() error {
				_, err := f.c.CreateVolume(ctx, createReq("pvc-3", gib))
				return err
			},
		},
		{
			name: "snapshot while snapshotting the same name", method: "CreateSnapshot",
			first: func() error {
				_, err := f.c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: vol.VolumeId})
				return err
			},
			second: func() error {
				_, err := f.c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: vol.VolumeId})
				return err
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol = f.mustCreate(t, createReq("vol-"+tc.method, gib))
			entered, release := blockOn(f, "s1", tc.method)
			defer f.agents["s1"].SetHook(nil)
			firstDone := make(chan error, 1)
			go func() { firstDone <- tc.first() }()
			<-entered // the first call holds the lock and is inside the agent

			wantCode(t, tc.second(), codes.Aborted)
			// Another volume is not blocked.
			if _, err := f.c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: other.VolumeId}); err != nil {
				t.Errorf("a call on another volume: %v", err)
			}
			if _, err := f.c.ControllerPublishVolume(ctx, publishReq(other.VolumeId, nodeID("w9"), snw)); err != nil {
				t.Errorf("publishing another volume: %v", err)
			}

			close(release)
			if err := <-firstDone; err != nil {
				t.Fatalf("first call: %v", err)
			}
			// The lock is free again.
			if err := tc.second(); statusCode(err) == codes.Aborted {
				t.Fatalf("second call after the first finished: %v", err)
			}
		})
	}
}

func statusCode(err error) codes.Code { return grpcstatus.Code(err) }
