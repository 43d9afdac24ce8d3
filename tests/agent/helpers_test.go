//go:build vm

package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

func newHost(t testing.TB) nvme.Identity {
	id, err := nvme.LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// connect connects a host to a published volume over every portal and returns its device.
func connect(t testing.TB, in *nvme.Initiator, h nvme.Identity, pub *agentapi.PublishVolumeResponse) string {
	t.Helper()
	ctx := vmenv.Context(t, time.Minute)
	for _, p := range pub.Portals {
		_, err := in.Connect(ctx, nvme.ConnectOptions{
			Transport: "tcp", Address: p.Address, ServiceID: p.ServiceId,
			SubsysNQN: pub.SubsystemNqn, HostNQN: h.HostNQN, HostID: h.HostID,
			CtrlLossTmo: 120, ReconnectDelay: 1,
		})
		if err != nil {
			t.Fatalf("connect %s via %s: %v", pub.SubsystemNqn, p.Address, err)
		}
	}
	t.Cleanup(func() { in.Disconnect(context.Background(), pub.SubsystemNqn) })
	dev, err := in.WaitNamespace(ctx, pub.SubsystemNqn, pub.NamespaceUuid, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}
