package node

import (
	"context"
	"os"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func TestUnstageUnmountsDisconnectsAndForgetsTheStash(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	if err := h.unstage(); err != nil {
		t.Fatal(err)
	}
	if len(h.mnt.Mounts()) != 0 || h.conn.controllerCount() != 0 || h.stashExists() {
		t.Errorf("after unstage: mounts %v, %d controllers, stash %t", h.mnt.Mounts(), h.conn.controllerCount(), h.stashExists())
	}
	if _, err := os.Stat(h.stagingPath()); err != nil {
		t.Errorf("the kubelet-owned staging directory was removed: %v", err)
	}
	// Idempotent, and fine for a volume this node never saw.
	if err := h.unstage(); err != nil {
		t.Errorf("second unstage: %v", err)
	}
	_, err := h.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: "unknown", StagingTargetPath: h.path("nowhere")})
	if err != nil {
		t.Errorf("unstage of an unknown volume: %v", err)
	}
}

// TestUnstageFailsWhileControllersRemain is tns-csi#204: never report success while the
// disconnect has not completed.
func TestUnstageFailsWhileControllersRemain(t *testing.T) {
	h := newHarness(t)
	h.stage(blockCap())
	h.conn.stuck = true
	err := h.unstage()
	wantCode(t, err, codes.Unavailable)
	if !h.stashExists() {
		t.Fatal("the stash was forgotten while controllers remain; a retry could not find them")
	}
	h.conn.stuck = false
	if err := h.unstage(); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if h.conn.controllerCount() != 0 || h.stashExists() {
		t.Error("retry did not finish the job")
	}
}

func TestUnstageRefusesToDisconnectAVolumeStillPublished(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	target := h.path("pod", "mount")
	if _, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(mountCap("ext4", snw), target)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, h.unstage(), codes.FailedPrecondition)
	if h.conn.controllerCount() == 0 {
		t.Fatal("disconnected a namespace that a pod still has mounted")
	}
	if _, err := h.node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if err := h.unstage(); err != nil {
		t.Fatal(err)
	}
}

func TestUnstageAfterAPluginRestartUsesTheStash(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	restarted, err := New(h.node.opts) // same state directory, no memory
	if err != nil {
		t.Fatal(err)
	}
	h.node = restarted
	if err := h.unstage(); err != nil {
		t.Fatal(err)
	}
	if h.conn.controllerCount() != 0 {
		t.Error("controllers left after an unstage by the restarted plugin")
	}
}

func TestUnstageRejectsInvalidRequests(t *testing.T) {
	h := newHarness(t)
	for _, req := range []*csi.NodeUnstageVolumeRequest{
		{StagingTargetPath: h.stagingPath()},
		{VolumeId: testVolume},
		{VolumeId: testVolume, StagingTargetPath: "staging"},
		{VolumeId: testVolume, StagingTargetPath: h.stagingPath() + "/.."},
		{VolumeId: testVolume, StagingTargetPath: h.stagingPath() + "\x00"},
	} {
		_, err := h.node.NodeUnstageVolume(context.Background(), req)
		wantCode(t, err, codes.InvalidArgument)
	}
}
