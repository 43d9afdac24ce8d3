package node

import (
	"context"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func expandRequest(h *harness, path string, required int64, c *csi.VolumeCapability) *csi.NodeExpandVolumeRequest {
	return &csi.NodeExpandVolumeRequest{
		VolumeId: testVolume, VolumePath: path, StagingTargetPath: h.stagingPath(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: required}, VolumeCapability: c,
	}
}

func TestExpandRescansWaitsForTheSizeAndGrowsTheFileSystem(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	target := h.path("pod")
	if _, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(mountCap("ext4", snw), target)); err != nil {
		t.Fatal(err)
	}
	h.conn.setGrownSize(testNQN, 2*testSize)
	resp, err := h.node.NodeExpandVolume(context.Background(), expandRequest(h, target, 2*testSize, mountCap("ext4", snw)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCapacityBytes() != 2*testSize {
		t.Errorf("capacity %d, want %d", resp.GetCapacityBytes(), 2*testSize)
	}
	if !slices.Contains(h.conn.rescans, testDev) {
		t.Error("no rescan")
	}
	if !slices.Contains(h.mnt.Calls(), "Resize "+h.stagingPath()) {
		t.Errorf("calls %v: the file system was not grown at the staging mount", h.mnt.Calls())
	}
}

func TestExpandBlockOnlyRescans(t *testing.T) {
	h := newHarness(t)
	h.stage(blockCap())
	target := h.path("dev")
	if _, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(blockCap(), target)); err != nil {
		t.Fatal(err)
	}
	h.conn.setGrownSize(testNQN, 3*testSize)
	resp, err := h.node.NodeExpandVolume(context.Background(), expandRequest(h, target, 3*testSize, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCapacityBytes() != 3*testSize {
		t.Errorf("capacity %d", resp.GetCapacityBytes())
	}
	for _, c := range h.mnt.Calls() {
		if c == "Resize "+target || c == "Resize "+h.stagingPath() {
			t.Errorf("resized a block volume: %s", c)
		}
	}
}

func TestExpandFailsRetryablyWhenTheDeviceDoesNotGrow(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	_, err := h.node.NodeExpandVolume(context.Background(), expandRequest(h, h.stagingPath(), 2*testSize, nil))
	wantCode(t, err, codes.Unavailable)
}

func TestExpandErrors(t *testing.T) {
	h := newHarness(t)
	_, err := h.node.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{VolumeId: "unknown", VolumePath: "some/path"})
	wantCode(t, err, codes.NotFound)
	_, err = h.node.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{VolumePath: "/p"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = h.node.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{VolumeId: testVolume})
	wantCode(t, err, codes.InvalidArgument)

	h.stage(mountCap("ext4", snw))
	_, err = h.node.NodeExpandVolume(context.Background(), expandRequest(h, h.path("missing"), testSize, nil))
	wantCode(t, err, codes.NotFound)
	_, err = h.node.NodeExpandVolume(context.Background(), expandRequest(h, h.stagingPath(), testSize, blockCap()))
	wantCode(t, err, codes.InvalidArgument)
}
