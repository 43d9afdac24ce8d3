package node

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPublishFilesystemBindsTheStagingMount(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	target := h.path("pods", "p1", "mount")
	req := h.publishRequest(mountCap("ext4", snw, "noatime"), target)
	req.Readonly = true
	for range 2 { // idempotent
		if _, err := h.node.NodePublishVolume(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	m, ok := h.mnt.Mounts()[target]
	if !ok || m.Source != h.stagingPath() || !slices.Contains(m.Options, "bind") ||
		!slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "noatime") {
		t.Fatalf("publish mount %+v, want a read-only bind of the staging path with noatime", m)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		t.Fatalf("target directory: %v", err)
	}
	for range 2 { // idempotent
		if _, err := h.node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target still there after unpublish: %v", err)
	}
}

func TestPublishBlockBindsTheDeviceOntoAFile(t *testing.T) {
	h := newHarness(t)
	h.stage(blockCap())
	target := h.path("publish", "pv", "pod")
	req := h.publishRequest(blockCap(), target)
	for range 2 {
		if _, err := h.node.NodePublishVolume(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if m := h.mnt.Mounts()[target]; m.Source != testDev {
		t.Fatalf("publish mount %+v, want a bind of %s", m, testDev)
	}
	if fi, err := os.Stat(target); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("target file: %v", err)
	}
	if _, err := h.node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target file still there: %v", err)
	}
}

func TestPublishNeedsAStagedVolume(t *testing.T) {
	h := newHarness(t)
	_ = os.MkdirAll(h.stagingPath(), 0o750)
	for _, c := range []*csi.VolumeCapability{mountCap("ext4", snw), blockCap()} {
		_, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(c, h.path("target")))
		wantCode(t, err, codes.FailedPrecondition)
	}
}

func TestPublishOverSomethingElseIsAlreadyExists(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	target := h.path("target")
	if err := os.Mkdir(target, 0o750); err != nil {
		t.Fatal(err)
	}
	h.mnt.SetDeviceSize("/dev/sdz", 1)
	h.mnt.AddMount("/dev/sdz", target, "ext4", nil)
	_, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(mountCap("ext4", snw), target))
	wantCode(t, err, codes.AlreadyExists)
}

func TestPublishFailureRemovesTheTargetItCreated(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	h.mnt.SetHook(func(_ context.Context, op, _ string) error {
		if op == "Mount" {
			return errors.New("mount: permission denied")
		}
		return nil
	})
	target := h.path("target")
	_, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(mountCap("ext4", snw), target))
	wantCode(t, err, codes.Internal)
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target left behind: %v", err)
	}
}

func TestPublishAndUnpublishRejectInvalidRequests(t *testing.T) {
	h := newHarness(t)
	for name, req := range map[string]*csi.NodePublishVolumeRequest{
		"no volume ID":     {StagingTargetPath: "/s", TargetPath: "/t", VolumeCapability: blockCap()},
		"no staging path":  {VolumeId: testVolume, TargetPath: "/t", VolumeCapability: blockCap()},
		"no target path":   {VolumeId: testVolume, StagingTargetPath: "/s", VolumeCapability: blockCap()},
		"no capability":    {VolumeId: testVolume, StagingTargetPath: "/s", TargetPath: "/t"},
		"relative target":  {VolumeId: testVolume, StagingTargetPath: "/s", TargetPath: "t", VolumeCapability: blockCap()},
		"relative staging": {VolumeId: testVolume, StagingTargetPath: "s", TargetPath: "/t", VolumeCapability: blockCap()},
		"unclean target":   {VolumeId: testVolume, StagingTargetPath: "/s", TargetPath: "/t/../../etc", VolumeCapability: blockCap()},
		"NUL in target":    {VolumeId: testVolume, StagingTargetPath: "/s", TargetPath: "/t\x00", VolumeCapability: blockCap()},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := h.node.NodePublishVolume(context.Background(), req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	for _, req := range []*csi.NodeUnpublishVolumeRequest{{TargetPath: "/t"}, {VolumeId: testVolume},
		{VolumeId: testVolume, TargetPath: "t"}, {VolumeId: testVolume, TargetPath: "/t//x"}, {VolumeId: testVolume, TargetPath: "/t\x00"}} {
		_, err := h.node.NodeUnpublishVolume(context.Background(), req)
		wantCode(t, err, codes.InvalidArgument)
	}
}

func TestSingleWriterVolumeIsPublishedOnlyOnce(t *testing.T) {
	h := newHarness(t)
	snsw := csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
	h.stage(mountCap("ext4", snsw))
	first, second := h.path("pods", "p1", "mount"), h.path("pods", "p2", "mount")
	for range 2 { // the same target again is idempotent
		if _, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(mountCap("ext4", snsw), first)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(mountCap("ext4", snsw), second))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second target: %v, want FailedPrecondition", err)
	}
	if _, err := h.node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: first}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.node.NodePublishVolume(context.Background(), h.publishRequest(mountCap("ext4", snsw), second)); err != nil {
		t.Fatalf("after the first target went: %v", err)
	}
}
