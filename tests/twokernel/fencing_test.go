//go:build vm

package twokernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// Fault 4: a worker loses power while it holds a volume and writes to it; the volume moves to
// a second worker; the first, when it returns, can no longer write with its old identity.

type connectAsIn struct {
	Identity  nvme.Identity
	Transport string
	Portal    string // host:port
	SubsysNQN string
	// Secret and CtrlSecret are the DH-HMAC-CHAP keys the host presented before.
	Secret, CtrlSecret string
	// Write: try to write to each namespace the connection shows.
	Write bool
}

type connectAsOut struct {
	// ConnectErr is the kernel's answer to the connect, if it refused it.
	ConnectErr string
	// Devices are the block devices of the subsystem's namespaces, if it connected;
	// WriteErrs the outcome of a 4 KiB O_DIRECT write + fsync to each.
	Devices   []string
	WriteErrs []string
}

// connectAs connects to a subsystem with a given host identity and keys, as nvme connect
// would (no CSI call), and tries to write to every namespace it sees; then it disconnects.
var connectAs = vmtest.NewStep("connect-as", func(s *vmtest.Step, in connectAsIn) connectAsOut {
	host, port, ok := strings.Cut(in.Portal, ":")
	if !ok {
		s.Fatalf("portal %q", in.Portal)
	}
	var init nvme.Initiator
	ctx, cancel := context.WithTimeout(s.Context(), 2*time.Minute)
	defer cancel()
	ctrl, err := init.Connect(ctx, nvme.ConnectOptions{
		Transport: in.Transport, Address: host, ServiceID: port, SubsysNQN: in.SubsysNQN,
		HostNQN: in.Identity.HostNQN, HostID: in.Identity.HostID,
		CtrlLossTmo: 5, ReconnectDelay: 1,
		DHChapSecret: in.Secret, DHChapCtrlSecret: in.CtrlSecret,
	})
	if err != nil {
		return connectAsOut{ConnectErr: err.Error()}
	}
	defer func() { _ = init.Disconnect(context.Background(), in.SubsysNQN) }()
	s.Logf("connected as %s: %s", in.Identity.HostNQN, ctrl)
	var out connectAsOut
	// Give the kernel a moment to scan the namespaces.
	time.Sleep(3 * time.Second)
	blocks, _ := filepath.Glob("/sys/block/nvme*n*")
	for _, b := range blocks {
		if !namespaceHead.MatchString(filepath.Base(b)) {
			continue // a hidden path device (nvmeXcYnZ) of native multipath
		}
		raw, err := os.ReadFile(filepath.Join(b, "device", "subsysnqn"))
		if err != nil || strings.TrimSpace(string(raw)) != in.SubsysNQN {
			continue
		}
		dev := "/dev/" + filepath.Base(b)
		out.Devices = append(out.Devices, dev)
		if in.Write {
			out.WriteErrs = append(out.WriteErrs, fmt.Sprint(writeBlock(dev)))
		}
	}
	return out
})

var namespaceHead = regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`)

// writeBlock writes 4 KiB at offset 0 of dev with O_DIRECT and fsyncs it.
func writeBlock(dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return err
	}
	copy(buf, "fenced worker was here")
	done := make(chan error, 1)
	go func() {
		_, err := f.WriteAt(buf, 0)
		if err == nil {
			err = f.Sync()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		return errors.New("the write hung for a minute")
	}
}

// TestWorkerPowerCutFencing cuts the power of a worker that holds a volume (staged, published,
// an application writing to it with DH-HMAC-CHAP authentication). Through a second worker's
// controller service the volume is unpublished from the dead worker's node and published,
// staged and written on the second worker, every acknowledged write verified. The dead
// worker, booted again, presents its old host NQN, host ID and keys to the volume's old
// subsystem and to the second worker's: the target refuses both, and nothing it could reach
// is writable; while the same kernel, presenting the second worker's identity and keys,
// connects (a control: the refusals are the fencing). It logs the takeover time.
func TestWorkerPowerCutFencing(t *testing.T) {
	c := vmtest.NewCluster(t)
	storage := c.Add(t, vmtest.MachineConfig{
		Name: "storage", MemoryMiB: storageMemoryMiB,
		Disks: []vmtest.Disk{{Name: "meta", Size: metaDiskBytes}, {Name: "data", Size: dataDiskBytes}},
	})
	w1 := c.Add(t, vmtest.MachineConfig{Name: "worker", MemoryMiB: workerMemoryMiB})
	w2 := c.Add(t, vmtest.MachineConfig{Name: "second", MemoryMiB: workerMemoryMiB})
	tls := newTLSBundle(t, storage.Addr())
	c.Boot(t, storage, w1, w2)
	addr := storage.Addr()
	startAgent.Run(t, storage, agentIn{Addr: addr, TLS: tls})
	plugin := func(m *vmtest.Machine, name string) {
		startPlugin.Run(t, m, pluginIn{AgentAddr: addr + ":" + agentPort, ServerName: addr, TLS: tls, NodeName: name})
	}
	plugin(w1, workerNodeName)
	plugin(w2, "worker-2")

	secrets := map[string]string{
		contract.SecretHostKeyPrefix + workerNodeName: vmenv.DHCHAPSecret(t),
		contract.SecretHostKeyPrefix + "worker-2":     vmenv.DHCHAPSecret(t),
		contract.SecretCtrlKey:                        vmenv.DHCHAPSecret(t),
	}
	first := publishBlockVolume.Run(t, w1, volumeIn{
		Name: "fenced", Bytes: 256 << 20, Secrets: secrets,
		Params: map[string]string{"transport": "tcp", "ctrlLossTmo": "600", "reconnectDelay": "2"},
	})
	if first.PublishContext[contract.PublishDHCHAP] != "true" {
		t.Fatalf("the volume is published without DH-HMAC-CHAP: %v", first.PublishContext)
	}
	oldID := hostIdentity.Run(t, w1, struct{}{})
	startWriter.Run(t, w1, writerIn{Name: "app", Device: first.Device, Blocks: 4096, Batch: 8})
	waitAcks(t, w1, "app", func(st vmenv.AckStatus) bool { return st.Acks >= 20 })

	w1.PowerCut(t)
	cut := time.Now()
	controllerUnpublishStep.Run(t, w2, first)
	second := attachVolumeStep.Run(t, w2, attachIn{VolumeID: first.VolumeID, VolumeContext: first.VolumeContext, Secrets: secrets})
	tookOver := time.Since(cut)
	if second.NQN == first.NQN {
		t.Errorf("the second worker reaches the volume through the dead worker's subsystem %s", first.NQN)
	}
	exports := listExports.Run(t, storage, struct{}{})
	var forVolume []string
	for _, e := range exports {
		if strings.Contains(e, first.NQN) {
			t.Errorf("the dead worker's subsystem is still exported: %s", e)
		}
		if strings.Contains(e, second.NQN) {
			forVolume = append(forVolume, e)
			if strings.Contains(e, oldID.HostNQN) {
				t.Errorf("the dead worker's host NQN may still connect: %s", e)
			}
		}
	}
	if len(forVolume) != 1 {
		t.Errorf("the second worker's subsystem is exported %d times: %v", len(forVolume), exports)
	}
	// The second worker writes: first zeros over the application's 16 MiB (the dead worker's
	// blocks there are not this writer's), then the application.
	runCommand.Run(t, w2, []string{"dd", "if=/dev/zero", "of=" + second.Device, "bs=1M", "count=16", "oflag=direct", "conv=fsync"})
	startWriter.Run(t, w2, writerIn{Name: "app", Device: second.Device, Blocks: 4096, Batch: 8})
	waitAcks(t, w2, "app", func(st vmenv.AckStatus) bool { return st.Acks >= 20 })

	w1.Boot(t)
	portal := strings.Split(first.PublishContext[contract.PublishPortals], ",")[0]
	// A control: the returned worker's kernel connects with an identity that may (the second
	// worker's, its keys), so a refusal below is the target fencing the old identity.
	control := connectAs.Run(t, w1, connectAsIn{
		Identity: hostIdentity.Run(t, w2, struct{}{}), Transport: "tcp", Portal: portal, SubsysNQN: second.NQN,
		Secret: secrets[contract.SecretHostKeyPrefix+"worker-2"], CtrlSecret: secrets[contract.SecretCtrlKey],
	})
	if control.ConnectErr != "" || len(control.Devices) != 1 {
		t.Fatalf("the returned worker cannot connect with the second worker's identity either (%s, devices %v): the fencing checks below would prove nothing",
			control.ConnectErr, control.Devices)
	}
	for _, target := range []struct{ what, nqn string }{
		{"its old subsystem", first.NQN}, {"the second worker's subsystem", second.NQN},
	} {
		res := connectAs.Run(t, w1, connectAsIn{
			Identity: oldID, Transport: "tcp", Portal: portal, SubsysNQN: target.nqn, Write: true, Secret: secrets[contract.SecretHostKeyPrefix+workerNodeName], CtrlSecret: secrets[contract.SecretCtrlKey],
		})
		if res.ConnectErr == "" {
			t.Errorf("the dead worker's identity connected to %s (%s); devices %v, writes: %v", target.what, target.nqn, res.Devices, res.WriteErrs)
			for _, e := range res.WriteErrs {
				if e == "<nil>" {
					t.Errorf("the dead worker's identity wrote to %s", target.what)
				}
			}
		} else {
			t.Logf("the dead worker's identity, connecting to %s: %s", target.what, res.ConnectErr)
		}
	}

	waitAcks(t, w2, "app", func(st vmenv.AckStatus) bool { return st.Acks >= 40 })
	res := stopAndVerifyWriter.Run(t, w2, "app")
	if res.Status.Errors > 0 || res.Report.BadCount > 0 {
		t.Errorf("the second worker: %d I/O errors %v, %d bad blocks %v", res.Status.Errors, res.Status.FirstErrors, res.Report.BadCount, res.Report.Bad)
	}
	unpublishVolume.Run(t, w2, second)
	t.Logf("worker power cut: volume unpublished from the dead worker and staged on the second %s after the cut; "+
		"%d acknowledged blocks written there verified; the dead worker's identity refused on return",
		tookOver.Round(100*time.Millisecond), res.Report.Durable)
}
