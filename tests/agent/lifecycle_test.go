//go:build vm

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls/mtlstest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestVolumeLifecycleOverTheRealTarget drives a real agent process (TCP + mTLS) against real
// dm-thin and nvmet, and checks every step from a real initiator in the same kernel.
func TestVolumeLifecycleOverTheRealTarget(t *testing.T) {
	meta, data := vmenv.DMThinDevices(t, "nvmeof-sn1", "256M", "8G")
	ca := mtlstest.NewCA(t, "ops")
	server := ca.Issue(t, "127.0.0.1")
	cfg := fmt.Sprintf(`
nodeName: sn1
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s, overcommitRatio: 4}
portals:
- {id: 11, transport: tcp, address: %s, port: 4420}
- {id: 12, transport: tcp, address: %s, port: 4420}
listen: tcp://127.0.0.1:9500
tls: {cert: %s, key: %s, ca: %s}
reconcileInterval: 5s
`, meta, data, vmtest.PortalA, vmtest.PortalB, server.Cert, server.Key, server.CA)
	proc := vmenv.StartAgent(t, cfg)
	c := vmenv.Dial(t, "127.0.0.1:9500", vmenv.MTLS(t, ca.Issue(t, "controller"), "127.0.0.1"))
	ctx := vmenv.Context(t, 10*time.Minute)

	t.Run("clients without a valid certificate are refused", func(t *testing.T) {
		rogue := mtlstest.NewCA(t, "rogue").Issue(t, "intruder")
		rogue.CA = server.CA // it trusts the agent; only its own certificate is foreign
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := vmenv.Client(t, "127.0.0.1:9500", vmenv.MTLS(t, rogue, "127.0.0.1")).Info(cctx, &agentapi.InfoRequest{})
		cancel()
		if err == nil {
			t.Fatal("a client certificate from another CA was accepted")
		}
		cctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := vmenv.Client(t, "127.0.0.1:9500", nil).Info(cctx, &agentapi.InfoRequest{}); err == nil {
			t.Fatal("plaintext client accepted on the TCP listener")
		}
	})

	outer := t
	in := &nvme.Initiator{}
	hostA, hostB := newHost(t), newHost(t)
	prod, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "prod", SizeBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.PublishVolume(ctx, &agentapi.PublishVolumeRequest{VolumeId: prod.Volume.Id, HostNqn: hostA.HostNQN, NodeId: "w1/" + hostA.HostNQN, Transport: agentapi.Transport_TRANSPORT_TCP})
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.Portals) != 2 {
		t.Fatalf("portals %v", pub.Portals)
	}
	dev := connect(t, in, hostA, pub)
	p := blocktest.Pattern(1, 1<<20)
	blocktest.Write(t, dev, 0, p)

	snap, err := c.CreateSnapshot(ctx, &agentapi.CreateSnapshotRequest{Name: "nightly", SourceVolumeId: prod.Volume.Id})
	if err != nil {
		t.Fatal(err)
	}
	clone, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "dev-1", SizeBytes: 256 << 20,
		Source: &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: snap.Snapshot.Id}}})
	if err != nil {
		t.Fatal(err)
	}
	cpub, err := c.PublishVolume(ctx, &agentapi.PublishVolumeRequest{VolumeId: clone.Volume.Id, HostNqn: hostA.HostNQN, NodeId: "w1/" + hostA.HostNQN, Transport: agentapi.Transport_TRANSPORT_TCP})
	if err != nil {
		t.Fatal(err)
	}
	cdev := connect(t, in, hostA, cpub)
	if cdev == dev {
		t.Fatalf("clone and origin share device %s", dev)
	}
	if !bytes.Equal(blocktest.Read(t, cdev, 0, len(p)), p) {
		t.Fatal("the clone does not hold the origin's data")
	}
	blocktest.Write(t, cdev, 0, blocktest.Pattern(2, 1<<20))
	if !bytes.Equal(blocktest.Read(t, dev, 0, len(p)), p) {
		t.Fatal("a write to the clone changed the origin")
	}

	t.Run("a host that is not published is refused", func(t *testing.T) {
		_, err := in.Connect(ctx, nvme.ConnectOptions{Transport: "tcp", Address: vmtest.PortalA, ServiceID: "4420",
			SubsysNQN: pub.SubsystemNqn, HostNQN: hostB.HostNQN, HostID: hostB.HostID})
		if err == nil {
			t.Fatal("unpublished host connected")
		}
	})

	t.Run("expansion reaches the connected host", func(t *testing.T) {
		if _, err := c.ExpandVolume(ctx, &agentapi.ExpandVolumeRequest{Id: prod.Volume.Id, SizeBytes: 512 << 20}); err != nil {
			t.Fatal(err)
		}
		if err := in.Rescan(dev); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the host sees 512 MiB", func() error {
			size, err := in.DeviceSize(dev)
			if err == nil && size != 512<<20 {
				err = fmt.Errorf("size %d", size)
			}
			return err
		})
	})

	t.Run("exports come back after an agent crash and a configfs wipe", func(t *testing.T) {
		proc.Stop(syscall.SIGKILL)
		wipe := &nvmet.Target{Prefix: "nqn.2026-11.io.nvmeof-csi:sn1:"}
		subs, err := wipe.List(ctx)
		if err != nil || len(subs) != 2 {
			t.Fatalf("our subsystems before the wipe: %v, %v", subs, err)
		}
		for _, s := range subs {
			if err := wipe.RemoveSubsystem(ctx, s.NQN); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range []uint16{11, 12} {
			if err := wipe.RemovePort(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		// The new agent and client outlive this subtest.
		vmenv.StartAgentFile(outer, proc.ConfigPath)
		c = vmenv.Dial(outer, "127.0.0.1:9500", vmenv.MTLS(t, ca.Issue(t, "controller2"), "127.0.0.1"))
		waitFor(t, 90*time.Second, "I/O through the reconnected host", func() error {
			got, err := blocktest.ReadAt(dev, 0, len(p))
			if err == nil && !bytes.Equal(got, p) {
				return errors.New("data differs")
			}
			return err
		})
		subs, _ = wipe.List(ctx)
		if len(subs) != 2 {
			t.Fatalf("subsystems after restart: %+v", subs)
		}
	})

	for i, v := range []*agentapi.Volume{prod.Volume, clone.Volume} {
		in.Disconnect(ctx, []string{pub.SubsystemNqn, cpub.SubsystemNqn}[i])
		if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: v.Id, HostNqn: hostA.HostNQN}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: v.Id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteSnapshot(ctx, &agentapi.DeleteSnapshotRequest{Id: snap.Snapshot.Id}); err != nil {
		t.Fatal(err)
	}
	if subs, _ := (&nvmet.Target{Prefix: "nqn.2026-11.io.nvmeof-csi:sn1:"}).List(ctx); len(subs) != 0 {
		t.Fatalf("subsystems left: %+v", subs)
	}
}

func waitFor(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, d, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
