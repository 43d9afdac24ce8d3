//go:build vm

package agent_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestDHCHAPBidirectionalAuthentication: a volume published with a host key and a
// controller key admits its host only when the host proves its key and the target proves
// the controller key (bidirectional), refuses it without a key, with a wrong key, or when
// the target's key is not the expected one; a rotated host key applies to new connections
// while the live one keeps doing I/O; and no key ever appears in the agent's log, although
// it logs every request (-v=5).
func TestDHCHAPBidirectionalAuthentication(t *testing.T) {
	meta, data := vmenv.DMThinDevices(t, "nvmeof-sn7", "64M", "2G")
	sock := t.TempDir() + "/agent.sock"
	const port = 4427
	proc := vmenv.StartAgentVerbose(t, 5, fmt.Sprintf(`
nodeName: sn7
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s}
portals: [{id: %d, transport: tcp, address: 192.0.2.1, port: %d}]
listen: unix://%s
`, meta, data, port, port, sock))
	c := vmenv.Dial(t, "unix://"+sock, nil)
	ctx := vmenv.Context(t, 5*time.Minute)
	in := &nvme.Initiator{}
	host := newHost(t)
	hostKey, ctrlKey, rotated, wrong := vmenv.DHCHAPSecret(t), vmenv.DHCHAPSecret(t), vmenv.DHCHAPSecret(t), vmenv.DHCHAPSecret(t)

	vol, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "authenticated", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(key string) *agentapi.PublishVolumeResponse {
		t.Helper()
		pub, err := c.PublishVolume(ctx, &agentapi.PublishVolumeRequest{VolumeId: vol.Volume.Id, HostNqn: host.HostNQN,
			NodeId: "wa/" + host.HostNQN, Transport: agentapi.Transport_TRANSPORT_TCP, DhchapHostKey: key, DhchapCtrlKey: ctrlKey})
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	pub := publish(hostKey)
	connect := func(key, ctrl string) (string, error) {
		return in.Connect(ctx, nvme.ConnectOptions{Transport: "tcp", Address: pub.Portals[0].Address, ServiceID: pub.Portals[0].ServiceId,
			SubsysNQN: pub.SubsystemNqn, HostNQN: host.HostNQN, HostID: host.HostID, DHChapSecret: key, DHChapCtrlSecret: ctrl,
			CtrlLossTmo: 5, ReconnectDelay: 1})
	}
	t.Cleanup(func() { _ = in.Disconnect(vmenv.Context(t, time.Minute), pub.SubsystemNqn) })
	for _, bad := range []struct{ what, key, ctrl string }{
		{"without a key", "", ""},
		{"with a wrong host key", wrong, ""},
		{"with the right host key, expecting another controller key", hostKey, wrong},
	} {
		if name, err := connect(bad.key, bad.ctrl); err == nil {
			t.Fatalf("connect %s: admitted as %s", bad.what, name)
		} else {
			t.Logf("connect %s: refused (%v)", bad.what, err)
		}
	}
	if _, err := connect(hostKey, ctrlKey); err != nil {
		t.Fatalf("connect with both keys: %v", err)
	}
	dev, err := in.WaitNamespace(ctx, pub.SubsystemNqn, pub.NamespaceUuid, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	one, two := blocktest.Pattern(1, 1<<20), blocktest.Pattern(2, 1<<20)
	blocktest.Write(t, dev, 0, one)

	// Rotation: the host key changes; the live controller keeps working.
	publish(rotated)
	blocktest.Write(t, dev, 1<<20, two)
	blocktest.Expect(t, dev, 0, one, "data written before the rotation, read after it")
	blocktest.Expect(t, dev, 1<<20, two, "data written on the live connection after the rotation")
	if err := in.Disconnect(ctx, pub.SubsystemNqn); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(hostKey, ctrlKey); err == nil {
		t.Fatal("a new connect with the old host key after the rotation was admitted")
	}
	if _, err := connect(rotated, ctrlKey); err != nil {
		t.Fatalf("a new connect with the rotated host key: %v", err)
	}

	// A volume of a class without keys, published to the same host: while the keyed
	// publication stands the host must present its key (the kernel keeps one per host); once
	// it is unpublished the storage node drops the key and the host connects without one.
	plain, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "plain", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	plainPub, err := c.PublishVolume(ctx, &agentapi.PublishVolumeRequest{VolumeId: plain.Volume.Id, HostNqn: host.HostNQN,
		NodeId: "wa/" + host.HostNQN, Transport: agentapi.Transport_TRANSPORT_TCP})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Disconnect(ctx, pub.SubsystemNqn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: vol.Volume.Id, HostNqn: host.HostNQN}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Connect(ctx, nvme.ConnectOptions{Transport: "tcp", Address: plainPub.Portals[0].Address, ServiceID: plainPub.Portals[0].ServiceId,
		SubsysNQN: plainPub.SubsystemNqn, HostNQN: host.HostNQN, HostID: host.HostID, CtrlLossTmo: 5}); err != nil {
		t.Fatalf("connect without a key once the host's keyed publication is gone: %v", err)
	}
	t.Logf("the keyed publication gone, the host connects to its other volume without a key")

	// Nothing left, then the log, complete once the agent has stopped.
	if err := in.Disconnect(ctx, plainPub.SubsystemNqn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: plain.Volume.Id, HostNqn: host.HostNQN}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{vol.Volume.Id, plain.Volume.Id} {
		if _, err := c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	proc.Stop(syscall.SIGTERM)
	log := proc.Log()
	if !strings.Contains(log, "PublishVolume") {
		t.Fatalf("the agent's log shows no PublishVolume request; the check below would prove nothing:\n%s", log)
	}
	for name, k := range map[string]string{"host key": hostKey, "controller key": ctrlKey, "rotated key": rotated} {
		secret := strings.Split(k, ":")[2]
		if strings.Contains(log, secret) {
			t.Errorf("the agent's log contains the %s", name)
		}
	}
}
