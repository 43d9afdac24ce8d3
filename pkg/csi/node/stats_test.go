package node

import (
	"context"
	"os"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func TestStatsOfAFilesystemVolume(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	resp, err := h.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: h.stagingPath()})
	if err != nil {
		t.Fatal(err)
	}
	var bytes, inodes *csi.VolumeUsage
	for _, u := range resp.GetUsage() {
		switch u.GetUnit() {
		case csi.VolumeUsage_BYTES:
			bytes = u
		case csi.VolumeUsage_INODES:
			inodes = u
		}
	}
	if bytes.GetTotal() != testSize || bytes.GetUsed() != testSize/4 || bytes.GetAvailable() != testSize-testSize/4 {
		t.Errorf("bytes %v", bytes)
	}
	if inodes.GetTotal() != 1000 || inodes.GetUsed() != 10 || inodes.GetAvailable() != 990 {
		t.Errorf("inodes %v", inodes)
	}
}

func TestStatsOfABlockVolume(t *testing.T) {
	h := newHarness(t)
	h.stage(blockCap())
	target := h.path("dev")
	if _, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(blockCap(), target)); err != nil {
		t.Fatal(err)
	}
	resp, err := h.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: target})
	if err != nil {
		t.Fatal(err)
	}
	if u := resp.GetUsage(); len(u) != 1 || u[0].GetUnit() != csi.VolumeUsage_BYTES || u[0].GetTotal() != testSize {
		t.Errorf("usage %v, want the device size in bytes", u)
	}
}

func TestStatsErrors(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		req  *csi.NodeGetVolumeStatsRequest
		code codes.Code
	}{
		{&csi.NodeGetVolumeStatsRequest{VolumePath: "some/path"}, codes.InvalidArgument},
		{&csi.NodeGetVolumeStatsRequest{VolumeId: testVolume}, codes.InvalidArgument},
		{&csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: "some/path"}, codes.NotFound},
		{&csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: h.dir}, codes.NotFound}, // not mounted
		{&csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: h.dir + "/../x"}, codes.NotFound},
		{&csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: "/a\x00b"}, codes.InvalidArgument},
		{&csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: h.dir, StagingTargetPath: "rel"}, codes.NotFound},
	} {
		_, err := h.node.NodeGetVolumeStats(context.Background(), tc.req)
		wantCode(t, err, tc.code)
	}
}

func health(t *testing.T, h *harness) []*csi.VolumeHealth_VolumeHealthEntry {
	t.Helper()
	req := &csi.NodeGetVolumeHealthRequest{VolumeId: testVolume, StagingTargetPath: h.stagingPath()}
	resp, err := h.node.NodeGetVolumeHealth(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVolumeHealth().GetVolumeId() != testVolume {
		t.Fatalf("health of %q", resp.GetVolumeHealth().GetVolumeId())
	}
	return resp.GetVolumeHealth().GetHealthStatuses()
}

func wantHealth(t *testing.T, got []*csi.VolumeHealth_VolumeHealthEntry, status csi.VolumeHealthErrorType, reason string) {
	t.Helper()
	if len(got) != 1 || got[0].GetStatus() != status || got[0].GetReason() != reason || got[0].GetMessage() == "" {
		t.Fatalf("health %v, want one %s/%s entry with a message", got, status, reason)
	}
}

func TestVolumeHealthFollowsThePaths(t *testing.T) {
	h := newHarness(t)
	_, err := h.node.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: testVolume})
	wantCode(t, err, codes.NotFound)
	_, err = h.node.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{})
	wantCode(t, err, codes.InvalidArgument)

	h.stage(mountCap("ext4", snw))
	if got := health(t, h); len(got) != 0 {
		t.Fatalf("healthy volume reports %v", got)
	}
	h.conn.setState("connecting", 1)
	wantHealth(t, health(t, h), csi.VolumeHealthErrorType_DEGRADED, ReasonPathDown)
	h.conn.setState("resetting", 0)
	wantHealth(t, health(t, h), csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNoLivePath)
	h.conn.setState("live", 0, 1)

	// The staging path backed by a device that is not (any more) the namespace.
	h.mnt.SetDeviceSize("/dev/nvme7n1", testSize)
	h.mnt.AddMount("/dev/nvme7n1", h.stagingPath(), "ext4", nil)
	wantHealth(t, health(t, h), csi.VolumeHealthErrorType_INACCESSIBLE, ReasonStaleMount)

	h.conn.mu.Lock()
	delete(h.conn.ctrls, testNQN)
	h.conn.mu.Unlock()
	wantHealth(t, health(t, h), csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNotConnected)
}

func TestVolumeHealthWhenTheNamespaceDeviceIsGone(t *testing.T) {
	h := newHarness(t)
	h.stage(blockCap())
	h.conn.mu.Lock()
	delete(h.conn.namespaces, testNQN)
	h.conn.mu.Unlock()
	wantHealth(t, health(t, h), csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNamespaceGone)
}

// Stats answer only for a path that is a mount of the volume's own namespace on this node.
func TestStatsRefuseAnotherVolumesPath(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	stats := func(volumeID, path string) error {
		_, err := h.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: volumeID, VolumePath: path})
		return err
	}
	// Another volume's ID with this volume's path: not staged here.
	wantCode(t, stats("storage-1/vol-ffffffffffffffffffffffffffffffff", h.stagingPath()), codes.NotFound)
	// This volume's ID with a path mounted from something else.
	other := h.path("other")
	if err := os.MkdirAll(other, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := h.mnt.Mount(context.Background(), "tmpfs", other, "tmpfs", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, stats(testVolume, other), codes.NotFound)
	if err := stats(testVolume, h.stagingPath()); err != nil {
		t.Fatalf("stats of the volume's own path: %v", err)
	}
}
