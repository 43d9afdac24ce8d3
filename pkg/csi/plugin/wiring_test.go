package plugin

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/controller"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/identity"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/grpcserver"
)

// TestServeIdentityAndController wires the services the way cmd/nvmeof-csi does in controller
// mode (with fake agents instead of an agentclient.Pool) and drives them through the socket.
func TestServeIdentityAndController(t *testing.T) {
	cfg, err := agentclient.ParseConfig([]byte(`storageNodes: [{name: s1, address: "unix:///run/s1.sock"}]`))
	if err != nil {
		t.Fatal(err)
	}
	agents := fakeagent.NewCluster(fakeagent.New("s1", 100<<30))
	ids := identity.New(identity.Options{Controller: true, Ready: agentclient.Ready(cfg.StorageNodes, agents, 0)})
	ctl := controller.New(controller.Options{StorageNodes: cfg.StorageNodes, Agents: agents})

	endpoint := "unix://" + filepath.Join(t.TempDir(), "csi.sock")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan error, 1)
	go func() {
		done <- grpcserver.Serve(ctx, endpoint, func(s *grpc.Server) {
			csi.RegisterIdentityServer(s, ids)
			csi.RegisterControllerServer(s, ctl)
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	// Serve creates the socket asynchronously: wait for it.
	probe, err := csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{}, grpc.WaitForReady(true))
	if err != nil || !probe.GetReady().GetValue() {
		t.Fatalf("Probe = %v, %v", probe, err)
	}
	cc := csi.NewControllerClient(conn)
	vol, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:    "pvc-1",
		Secrets: map[string]string{"token": "s3cret"},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	})
	if err != nil || vol.GetVolume().GetCapacityBytes() != 1<<30 {
		t.Fatalf("CreateVolume = %v, %v", vol, err)
	}
	_, err = cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), NodeId: "no-such-node"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("publish without a capability = %v, want InvalidArgument", err)
	}
}
