//go:build vm

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// connectWith connects one host to a published volume over every portal with a short
// ctrl_loss_tmo, so that a fenced host's queued I/O fails within seconds, and returns its
// controllers' names.
func connectWith(t *testing.T, in *nvme.Initiator, h nvme.Identity, pub *agentapi.PublishVolumeResponse, ctrlLossTmo int) []string {
	t.Helper()
	ctx := vmenv.Context(t, time.Minute)
	var names []string
	for _, p := range pub.Portals {
		name, err := in.Connect(ctx, nvme.ConnectOptions{
			Transport: "tcp", Address: p.Address, ServiceID: p.ServiceId,
			SubsysNQN: pub.SubsystemNqn, HostNQN: h.HostNQN, HostID: h.HostID,
			CtrlLossTmo: ctrlLossTmo, ReconnectDelay: 1,
		})
		if err != nil {
			t.Fatalf("connect %s via %s: %v", pub.SubsystemNqn, p.Address, err)
		}
		names = append(names, name)
	}
	t.Cleanup(func() { in.Disconnect(context.Background(), pub.SubsystemNqn) })
	return names
}

func publishTo(t *testing.T, c agentapi.AgentClient, id string, h nvme.Identity, node string) *agentapi.PublishVolumeResponse {
	t.Helper()
	pub, err := c.PublishVolume(vmenv.Context(t, time.Minute), &agentapi.PublishVolumeRequest{VolumeId: id, HostNqn: h.HostNQN,
		NodeId: node + "/" + h.HostNQN, Transport: agentapi.Transport_TRANSPORT_TCP})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestUnpublishFencesTheHost: once UnpublishVolume for host A returns, A's controllers
// complete no further I/O — a write A issues afterwards never reaches the volume, and fails
// once ctrl_loss_tmo ends the wait — and A can open no new connection.
func TestUnpublishFencesTheHost(t *testing.T) {
	c, opts, proc := startDMThinAgent(t, "sn5", "4G", 4425)
	ctx := vmenv.Context(t, 5*time.Minute)
	in := &nvme.Initiator{}
	hostA := newHost(t)
	vol, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "fenced", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pub := publishTo(t, c, vol.Volume.Id, hostA, "wa")
	// Another volume exported to another host keeps the portal listening (the kernel stops
	// listening on a port with no subsystem), as on any storage node in use.
	other, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "other", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	hostB := newHost(t)
	publishTo(t, c, other.Volume.Id, hostB, "wb")
	const ctrlLossTmo = 5
	connectWith(t, in, hostA, pub, ctrlLossTmo)
	dev, err := in.WaitNamespace(ctx, pub.SubsystemNqn, pub.NamespaceUuid, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	before, after := blocktest.Pattern(1, 1<<20), blocktest.Pattern(2, 1<<20)
	blocktest.Write(t, dev, 0, before)

	start := time.Now()
	if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: vol.Volume.Id, HostNqn: hostA.HostNQN}); err != nil {
		t.Fatal(err)
	}
	t.Logf("UnpublishVolume took %v", time.Since(start).Round(time.Millisecond))
	written := make(chan error, 1)
	issued := time.Now()
	go func() { written <- blocktest.WriteAt(dev, 0, after) }()

	// The volume as the storage node holds it, read beside the target: A's write must not
	// be there, however long it is given.
	local := fmt.Sprintf("%s/%s/%s", dmthin.DefaultNodeDir, opts.Name, vol.Volume.Id)
	time.Sleep(2 * time.Second)
	blocktest.Expect(t, local, 0, before, "the volume 2s after a write by the fenced host")
	select {
	case err := <-written:
		if err == nil {
			t.Fatal("the fenced host's write succeeded")
		}
		t.Logf("the fenced host's write failed after %v: %v", time.Since(issued).Round(time.Millisecond), err)
	case <-time.After(time.Duration(ctrlLossTmo)*time.Second + 30*time.Second):
		t.Fatalf("the fenced host's write neither failed nor completed %ds after ctrl_loss_tmo", 30)
	}
	blocktest.Expect(t, local, 0, before, "the volume after the fenced host's write failed")

	// Once its old controller is gone, the kernel target refuses a new connect.
	waitFor(t, 30*time.Second, "the fenced host's controller is gone", func() error {
		if cs, err := in.Controllers(pub.SubsystemNqn); err != nil || len(cs) > 0 {
			return fmt.Errorf("controllers %v (%v)", cs, err)
		}
		return nil
	})
	_, err = in.Connect(ctx, nvme.ConnectOptions{Transport: "tcp", Address: pub.Portals[0].Address, ServiceID: pub.Portals[0].ServiceId,
		SubsysNQN: pub.SubsystemNqn, HostNQN: hostA.HostNQN, HostID: hostA.HostID})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("a new connect by the fenced host: %v, want the target's refusal (EIO)", err)
	}
	t.Logf("a new connect by the fenced host: %v", err)
	if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: other.Volume.Id, HostNqn: hostB.HostNQN}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{vol.Volume.Id, other.Volume.Id} {
		if _, err := c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	checkPool(t, proc, opts, 0)
}

// TestUnpublishSparesTheOtherHosts: revoking host A from a volume published to A and B leaves
// B's controllers live (the same ones, never reset) and B's I/O without a single error, while
// A's controllers lose their paths. Both hosts live in this one kernel, which refuses a second
// namespace with the same identifiers from another subsystem (nvme_global_check_duplicate_ids),
// so only B gets a namespace device here; A's controllers are what A holds.
func TestUnpublishSparesTheOtherHosts(t *testing.T) {
	c, opts, proc := startDMThinAgent(t, "sn6", "4G", 4426)
	ctx := vmenv.Context(t, 5*time.Minute)
	in := &nvme.Initiator{}
	hostA, hostB := newHost(t), newHost(t)
	vol, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "shared", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pubA := publishTo(t, c, vol.Volume.Id, hostA, "wa")
	pubB := publishTo(t, c, vol.Volume.Id, hostB, "wb")
	if pubA.SubsystemNqn == pubB.SubsystemNqn {
		t.Fatalf("both hosts got subsystem %s", pubA.SubsystemNqn)
	}
	ctrlsB := connectWith(t, in, hostB, pubB, 120)
	devB, err := in.WaitNamespace(ctx, pubB.SubsystemNqn, pubB.NamespaceUuid, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	connectWith(t, in, hostA, pubA, 5)

	// B writes and reads back, and B's controllers are sampled, until told to stop.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ios, ioErrs atomic.Int64
	var firstErr atomic.Value
	wg.Go(func() {
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := blocktest.Pattern(100+i, 64<<10)
			off := int64(i%16) * (1 << 20)
			err := blocktest.WriteAt(devB, off, p)
			if err == nil {
				var got []byte
				if got, err = blocktest.ReadAt(devB, off, len(p)); err == nil && !bytes.Equal(got, p) {
					err = errors.New("read back other data")
				}
			}
			ios.Add(1)
			if err != nil {
				ioErrs.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}
	})
	var changes []string
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			cs, err := in.Controllers(pubB.SubsystemNqn)
			var now []string
			for _, c := range cs {
				now = append(now, c.Name+"="+c.State)
			}
			want := []string{}
			for _, n := range ctrlsB {
				want = append(want, n+"=live")
			}
			if err != nil || fmt.Sprint(now) != fmt.Sprint(want) {
				changes = append(changes, fmt.Sprintf("%v (%v)", now, err))
			}
		}
	})

	time.Sleep(time.Second)
	if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: vol.Volume.Id, HostNqn: hostA.HostNQN}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "host A's controllers lose their paths", func() error {
		cs, err := in.Controllers(pubA.SubsystemNqn)
		for _, c := range cs {
			if c.State == "live" {
				return fmt.Errorf("%s is still live", c.Name)
			}
		}
		return err
	})
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	t.Logf("host B: %d write+read rounds across the revocation of host A, %d errors", ios.Load(), ioErrs.Load())
	if n := ioErrs.Load(); n != 0 {
		t.Errorf("host B saw %d I/O errors, first %v", n, firstErr.Load())
	}
	if ios.Load() < 10 {
		t.Errorf("host B did only %d rounds of I/O", ios.Load())
	}
	if len(changes) > 0 {
		t.Errorf("host B's controllers changed %d times, first: %s", len(changes), changes[0])
	}

	for _, h := range []nvme.Identity{hostA, hostB} {
		if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: vol.Volume.Id, HostNqn: h.HostNQN}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pub := range []*agentapi.PublishVolumeResponse{pubA, pubB} {
		if err := in.Disconnect(ctx, pub.SubsystemNqn); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: vol.Volume.Id}); err != nil {
		t.Fatal(err)
	}
	checkPool(t, proc, opts, 0)
}
