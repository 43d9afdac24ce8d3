package node

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/internal/grpctest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// TestMalformedRequestsGetTheirCodeAndTouchNothing sends what a hostile or careless caller
// would, over gRPC through the server the binary runs: each call gets its documented code
// (never Internal or Unknown), the server keeps answering, and nothing is connected, mounted,
// created or recorded.
func TestMalformedRequestsGetTheirCodeAndTouchNothing(t *testing.T) {
	h := newHarness(t)
	conn := grpctest.Serve(t, func(s *grpc.Server) { csi.RegisterNodeServer(s, h.node) })
	c := csi.NewNodeClient(conn)
	ctx := context.Background()
	entries := func() int {
		es, _ := os.ReadDir(h.dir)
		return len(es)
	}
	before := entries()
	stage := func(mod func(*csi.NodeStageVolumeRequest)) func() error {
		req := &csi.NodeStageVolumeRequest{VolumeId: testVolume, StagingTargetPath: h.stagingPath(),
			VolumeCapability: mountCap("ext4", snw), PublishContext: publishContext(), VolumeContext: map[string]string{}}
		mod(req)
		return func() error { _, err := c.NodeStageVolume(ctx, req); return err }
	}
	publish := func(mod func(*csi.NodePublishVolumeRequest)) func() error {
		req := &csi.NodePublishVolumeRequest{VolumeId: testVolume, StagingTargetPath: h.stagingPath(), TargetPath: h.path("target"),
			VolumeCapability: mountCap("ext4", snw), PublishContext: publishContext()}
		mod(req)
		return func() error { _, err := c.NodePublishVolume(ctx, req); return err }
	}
	inject := func(key, value string) func(*csi.NodeStageVolumeRequest) {
		return func(r *csi.NodeStageVolumeRequest) { r.PublishContext[key] = value }
	}

	grpctest.Run(t, []grpctest.Case{
		{"stage: relative path", stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = "staging" }), codes.InvalidArgument},
		{"stage: path escaping with ..", stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = h.dir + "/../../etc" }), codes.InvalidArgument},
		{"stage: NUL in the path", stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath += "\x00/etc" }), codes.InvalidArgument},
		{"stage: option injected through the NQN", stage(inject(contract.PublishSubsysNQN, testNQN+",hostnqn=nqn.evil")), codes.InvalidArgument},
		{"stage: newline in the NQN", stage(inject(contract.PublishSubsysNQN, testNQN+"\nctrl_loss_tmo=1")), codes.InvalidArgument},
		{"stage: UUID not a UUID", stage(inject(contract.PublishNSUUID, "../../dev/sda")), codes.InvalidArgument},
		{"stage: portal with options", stage(inject(contract.PublishPortals, "192.0.2.1:4420,traddr=x")), codes.InvalidArgument},
		{"stage: huge portal list", stage(inject(contract.PublishPortals, strings.Repeat("192.0.2.1:x,", 1<<12))), codes.InvalidArgument},
		{"stage: unknown transport", stage(inject(contract.PublishTransport, "loop")), codes.InvalidArgument},
		{"stage: bad volume context", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeContext["ctrlLossTmo"] = "1e9" }), codes.InvalidArgument},
		{"stage: mount flag of another kind", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = mountCap("ext4", snw, "bind,exec") }), codes.InvalidArgument},
		{"stage: no capability", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nil }), codes.InvalidArgument},
		{"publish: relative target", publish(func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "target" }), codes.InvalidArgument},
		{"publish: target with ..", publish(func(r *csi.NodePublishVolumeRequest) { r.TargetPath = h.dir + "/x/../../y" }), codes.InvalidArgument},
		{"publish: not staged", publish(func(*csi.NodePublishVolumeRequest) {}), codes.FailedPrecondition},
		{"unpublish: relative target", func() error {
			_, err := c.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: "."})
			return err
		}, codes.InvalidArgument},
		{"unstage: root", func() error {
			_, err := c.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: testVolume, StagingTargetPath: "/.."})
			return err
		}, codes.InvalidArgument},
		{"stats: another directory", func() error {
			_, err := c.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: "/"})
			return err
		}, codes.NotFound},
		{"stats: relative path", func() error {
			_, err := c.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: "etc"})
			return err
		}, codes.NotFound},
		{"expand: NUL in the path", func() error {
			_, err := c.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: testVolume, VolumePath: "/a\x00"})
			return err
		}, codes.InvalidArgument},
		{"expand: not staged", func() error {
			_, err := c.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: testVolume, VolumePath: h.dir})
			return err
		}, codes.NotFound},
	})
	if _, err := c.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{}); err != nil {
		t.Fatalf("the server stopped answering: %v", err)
	}
	if n := len(h.conn.connects); n != 0 {
		t.Errorf("%d connects after malformed requests", n)
	}
	if m := h.mnt.Mounts(); len(m) != 0 {
		t.Errorf("mounts after malformed requests: %v", m)
	}
	if h.stashExists() {
		t.Error("a stash was written")
	}
	if n := entries(); n != before {
		t.Errorf("%d entries in the test directory, %d before", n, before)
	}
	if _, err := os.Stat("staging"); err == nil {
		t.Error("a relative staging path was created in the working directory")
	}
}
