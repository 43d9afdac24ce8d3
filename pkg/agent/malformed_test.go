package agent

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/internal/grpctest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// TestMalformedRequestsGetTheirCodeAndCreateNothing sends what a hostile or careless caller
// would, over gRPC through the server the binary runs: each call gets its documented code
// (never Internal or Unknown), the server keeps answering, and neither the pool nor configfs
// gains anything.
func TestMalformedRequestsGetTheirCodeAndCreateNothing(t *testing.T) {
	e := newEnv(t)
	c := agentapi.NewAgentClient(grpctest.Serve(t, func(s *grpc.Server) { agentapi.RegisterAgentServer(s, e.srv) }))
	ctx := context.Background()
	mutations := e.fs.Mutations()
	missing := agentapi.VolumeID("missing")
	tcp := agentapi.Transport_TRANSPORT_TCP
	long := strings.Repeat("n", 1<<16)

	grpctest.Run(t, []grpctest.Case{
		{"create: no name", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{SizeBytes: gib}), codes.InvalidArgument},
		{"create: huge name", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: long, SizeBytes: gib}), codes.InvalidArgument},
		{"create: NUL in the name", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: "a\x00b", SizeBytes: gib}), codes.InvalidArgument},
		{"create: zero size", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: "a"}), codes.InvalidArgument},
		{"create: negative size", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: "a", SizeBytes: -gib}), codes.InvalidArgument},
		{"create: beyond the pool", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: "a", SizeBytes: 1 << 62}), codes.ResourceExhausted},
		{"create: empty source", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: "a", SizeBytes: gib, Source: &agentapi.ContentSource{}}), codes.InvalidArgument},
		{"create: malformed source", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: "a", SizeBytes: gib,
			Source: &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: "../snap"}}}), codes.NotFound},
		{"create: newline in a label key", grpctest.Call(c.CreateVolume, ctx, &agentapi.CreateVolumeRequest{Name: "a", SizeBytes: gib,
			Labels: map[string]string{"k\nv": "x"}}), codes.InvalidArgument},
		{"delete: malformed ID", grpctest.Call(c.DeleteVolume, ctx, &agentapi.DeleteVolumeRequest{Id: "vol-../../x"}), codes.NotFound},
		{"get: malformed ID", grpctest.Call(c.GetVolume, ctx, &agentapi.GetVolumeRequest{Id: long}), codes.NotFound},
		{"expand: malformed ID", grpctest.Call(c.ExpandVolume, ctx, &agentapi.ExpandVolumeRequest{Id: "x", SizeBytes: gib}), codes.NotFound},
		{"expand: missing", grpctest.Call(c.ExpandVolume, ctx, &agentapi.ExpandVolumeRequest{Id: missing, SizeBytes: gib}), codes.NotFound},
		{"publish: malformed volume", grpctest.Call(c.PublishVolume, ctx, &agentapi.PublishVolumeRequest{VolumeId: "x", HostNqn: hostA, NodeId: "n", Transport: tcp}), codes.NotFound},
		{"publish: missing volume", grpctest.Call(c.PublishVolume, ctx, &agentapi.PublishVolumeRequest{VolumeId: missing, HostNqn: hostA, NodeId: "n", Transport: tcp}), codes.NotFound},
		{"publish: NQN with a slash", grpctest.Call(c.PublishVolume, ctx, &agentapi.PublishVolumeRequest{VolumeId: missing, HostNqn: "nqn.2014-08.a/../b", NodeId: "n", Transport: tcp}), codes.InvalidArgument},
		{"publish: discovery NQN", grpctest.Call(c.PublishVolume, ctx, &agentapi.PublishVolumeRequest{VolumeId: missing,
			HostNqn: "nqn.2014-08.org.nvmexpress.discovery", NodeId: "n", Transport: tcp}), codes.InvalidArgument},
		{"publish: node ID with a newline", grpctest.Call(c.PublishVolume, ctx, &agentapi.PublishVolumeRequest{VolumeId: missing, HostNqn: hostA, NodeId: "n\nrw", Transport: tcp}), codes.InvalidArgument},
		{"publish: unknown transport", grpctest.Call(c.PublishVolume, ctx, &agentapi.PublishVolumeRequest{VolumeId: missing, HostNqn: hostA, NodeId: "n", Transport: 99}), codes.InvalidArgument},
		{"snapshot: no name", grpctest.Call(c.CreateSnapshot, ctx, &agentapi.CreateSnapshotRequest{SourceVolumeId: missing}), codes.InvalidArgument},
		{"snapshot: malformed source", grpctest.Call(c.CreateSnapshot, ctx, &agentapi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "/dev/sda"}), codes.NotFound},
		{"snapshot: missing source", grpctest.Call(c.CreateSnapshot, ctx, &agentapi.CreateSnapshotRequest{Name: "s", SourceVolumeId: missing}), codes.NotFound},
		{"delete snapshot: malformed ID", grpctest.Call(c.DeleteSnapshot, ctx, &agentapi.DeleteSnapshotRequest{Id: "snap-\x00"}), codes.NotFound},
	})
	if _, err := c.Info(ctx, &agentapi.InfoRequest{}); err != nil {
		t.Fatalf("the server stopped answering: %v", err)
	}
	if n := len(e.pool.entries); n != 0 {
		t.Errorf("%d thin devices in the pool after malformed requests", n)
	}
	if n := e.fs.Mutations() - mutations; n != 0 {
		t.Errorf("%d configfs changes after malformed requests", n)
	}
}
