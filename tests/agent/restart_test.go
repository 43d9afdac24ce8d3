//go:build vm

package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestStorageNodeRestartUnderWrites (fault suite 2): while a host writes and verifies with
// fio through two exported volumes, the agent is SIGKILLed and the kernel target's
// configuration wiped (subsystems, hosts, ports: what a reboot leaves); a new agent rebuilds
// every export from the pool's records within 5 s of its start, the host's controllers
// reconnect on their own, and fio finishes with every block verified.
func TestStorageNodeRestartUnderWrites(t *testing.T) {
	meta, data := vmenv.DMThinDevices(t, "nvmeof-sn11", "64M", "2G")
	dir := t.TempDir()
	sock, cfgPath := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "agent.yaml")
	const port = 4431
	cfg := fmt.Sprintf(`
nodeName: sn11
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s}
portals: [{id: 111, transport: tcp, address: 192.0.2.1, port: %d}]
listen: unix://%s
`, meta, data, port, sock)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := vmenv.StartAgentFile(t, cfgPath)
	c := vmenv.Dial(t, "unix://"+sock, nil)
	ctx := vmenv.Context(t, 6*time.Minute)
	in := &nvme.Initiator{}
	host := newHost(t)

	var devs, nqns []string
	for i := range 2 {
		vol, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: fmt.Sprintf("restart-%d", i), SizeBytes: 128 << 20})
		if err != nil {
			t.Fatal(err)
		}
		pub := publishTo(t, c, vol.Volume.Id, host, "wa")
		_, err = in.Connect(ctx, nvme.ConnectOptions{Transport: "tcp", Address: pub.Portals[0].Address, ServiceID: pub.Portals[0].ServiceId,
			SubsysNQN: pub.SubsystemNqn, HostNQN: host.HostNQN, HostID: host.HostID, CtrlLossTmo: 120, ReconnectDelay: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Disconnect(context.Background(), pub.SubsystemNqn) })
		dev, err := in.WaitNamespace(ctx, pub.SubsystemNqn, pub.NamespaceUuid, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		devs, nqns = append(devs, dev), append(nqns, pub.SubsystemNqn)
	}

	fio := vmenv.StartFioVerify(t, ctx, 40*time.Second, devs...)

	time.Sleep(5 * time.Second)
	proc.Stop(syscall.SIGKILL)
	// What a reboot leaves of the target: nothing.
	target := &nvmet.Target{Prefix: "nqn.2026-11.io.nvmeof-csi:sn11:"}
	for _, nqn := range nqns {
		if err := target.RemoveSubsystem(ctx, nqn); err != nil {
			t.Fatal(err)
		}
	}
	if err := target.RemoveHost(ctx, host.HostNQN); err != nil {
		t.Fatal(err)
	}
	if err := target.RemovePort(ctx, 111); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the host notices and starts reconnecting

	start := time.Now()
	vmenv.StartAgentFile(t, cfgPath)
	waitFor(t, 30*time.Second, "every export back in configfs", func() error {
		have, err := target.NQNs(ctx)
		if err != nil {
			return err
		}
		if len(have) != len(nqns) {
			return fmt.Errorf("subsystems %v, want %v", have, nqns)
		}
		return nil
	})
	rebuilt := time.Since(start)
	if rebuilt > 5*time.Second {
		t.Errorf("the exports took %s to come back after the agent started; want at most 5 s", rebuilt.Round(100*time.Millisecond))
	}
	t.Logf("every export back %s after the agent started (SIGKILL and configfs wiped under writes)", rebuilt.Round(10*time.Millisecond))
	waitFor(t, time.Minute, "the host's controllers live again", func() error {
		for _, nqn := range nqns {
			cs, err := in.Controllers(nqn)
			if err != nil || len(cs) != 1 || cs[0].State != "live" {
				return fmt.Errorf("%s: %v (%v)", nqn, cs, err)
			}
		}
		return nil
	})
	t.Logf("the host's controllers live again %s after the agent started", time.Since(start).Round(100*time.Millisecond))
	t.Logf("fio verified both volumes with no error across the restart: %s", fio())

	c = vmenv.Dial(t, "unix://"+sock, nil)
	for _, nqn := range nqns {
		if err := in.Disconnect(ctx, nqn); err != nil {
			t.Fatal(err)
		}
	}
	list, err := c.ListVolumes(ctx, &agentapi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range list.GetVolumes() {
		if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: v.GetId(), HostNqn: host.HostNQN}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: v.GetId()}); err != nil {
			t.Fatal(err)
		}
	}
}
