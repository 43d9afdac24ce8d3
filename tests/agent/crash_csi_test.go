//go:build vm

package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// storageNode is an agent process on a dm-thin pool of its own, reached over a unix socket.
type storageNode struct {
	name, sock, cfgPath string
	opts                dmthin.Options
	proc                *vmenv.Agent
}

func startStorageNode(t *testing.T, name string, id uint16, port int) *storageNode {
	t.Helper()
	meta, data := vmenv.DMThinDevices(t, "nvmeof-"+name, "256M", "8G")
	dir := t.TempDir()
	sn := &storageNode{name: name, sock: filepath.Join(dir, "agent.sock"), cfgPath: filepath.Join(dir, "agent.yaml"),
		opts: dmthin.Options{MetadataDevice: meta, DataDevice: data, Name: "nvmeof-" + name}}
	cfg := fmt.Sprintf(`
nodeName: %s
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s, overcommitRatio: 4}
portals: [{id: %d, transport: tcp, address: 192.0.2.1, port: %d}]
listen: unix://%s
`, name, meta, data, id, port, sn.sock)
	if err := os.WriteFile(sn.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sn.start(t)
	return sn
}

func (sn *storageNode) start(t *testing.T) {
	t.Helper()
	sn.proc = vmenv.StartAgentFile(t, sn.cfgPath)
	vmenv.Dial(t, "unix://"+sn.sock, nil)
}

func (sn *storageNode) yaml() string {
	return fmt.Sprintf("- name: %s\n  address: unix://%s\n", sn.name, sn.sock)
}

// volumesByName lists the storage node's volumes: name → agent ID.
func (sn *storageNode) volumesByName(t *testing.T) map[string]string {
	t.Helper()
	c := vmenv.Dial(t, "unix://"+sn.sock, nil)
	list, err := c.ListVolumes(vmenv.Context(t, time.Minute), &agentapi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, v := range list.GetVolumes() {
		out[v.GetName()] = v.GetId()
	}
	return out
}

// creator creates a 64 MiB block volume by name through the CSI controller, on storage node
// pin when it is not "" (the storageNodes parameter).
type creator func(name, pin string) (string, error)

// startController runs the CSI controller over the storage nodes and returns a creator whose
// calls are bounded by a minute.
func startController(t *testing.T, nodes ...*storageNode) creator {
	t.Helper()
	dir := t.TempDir()
	cfg := "storageNodes:\n"
	for _, sn := range nodes {
		cfg += sn.yaml()
	}
	nodesFile := filepath.Join(dir, "storage-nodes.yaml")
	if err := os.WriteFile(nodesFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctrl := csi.NewControllerClient(vmenv.StartPlugin(t, plugin.Options{
		Mode: plugin.ModeController, StorageNodes: nodesFile, AgentTimeout: 30 * time.Second, ProbeTimeout: 5 * time.Second,
	}))
	ctx := vmenv.Context(t, 10*time.Minute)
	create := func(name, pin string) (string, error) {
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		defer ccancel()
		params := map[string]string{}
		if pin != "" {
			params["storageNodes"] = pin
		}
		resp, err := ctrl.CreateVolume(cctx, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
			Parameters: params,
			VolumeCapabilities: []*csi.VolumeCapability{{
				AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
			}}})
		return resp.GetVolume().GetVolumeId(), err
	}
	waitFor(t, time.Minute, "the controller reaches the storage nodes", func() error {
		_, err := create("warm-up", "")
		return err
	})
	return create
}

// createAllKillingOnce sends n creations at once (name i on storage node pin(i)) and SIGKILLs
// victim when ten have returned; it returns the IDs of those that succeeded ("" for the others).
func createAllKillingOnce(t *testing.T, create creator, n int, pin func(int) string, victim *storageNode) []string {
	t.Helper()
	first := make([]string, n)
	var succeeded atomic.Int32
	var once sync.Once
	kill := func() { once.Do(func() { victim.proc.Stop(syscall.SIGKILL) }) }
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id, err := create(fmt.Sprintf("pvc-crash-%02d", i), pin(i))
			if err == nil {
				first[i] = id
				if succeeded.Add(1) == 10 {
					kill()
				}
			}
		})
	}
	wg.Wait()
	kill()
	t.Logf("%d of %d creations returned before and while storage node %s was killed", succeeded.Load(), n, victim.name)
	return first
}

// retryAll retries every name until it succeeds (bounded) and checks that a name that had an
// ID keeps it.
func retryAll(t *testing.T, create creator, pin func(int) string, first []string) {
	t.Helper()
	for i := range first {
		name := fmt.Sprintf("pvc-crash-%02d", i)
		var id string
		waitFor(t, 2*time.Minute, "CreateVolume("+name+") after the restart", func() error {
			var err error
			id, err = create(name, pin(i))
			return err
		})
		if first[i] != "" && first[i] != id {
			t.Errorf("%s: ID %s before the kill, %s after", name, first[i], id)
		}
	}
}

// TestCSICreatesSurviveAnAgentKill (fault suite 3): 40 CreateVolume calls through the CSI
// controller at once; the agent is SIGKILLed while they run and restarted; every name is
// retried, as the external-provisioner does, until it succeeds. Afterwards there are exactly
// 40 volumes (and the warm-up's), each name's ID is the one any earlier success returned, and
// the pool holds exactly as many thin devices (thin_check clean, nothing orphaned).
func TestCSICreatesSurviveAnAgentKill(t *testing.T) {
	sn := startStorageNode(t, "sn9", 91, 4429)
	create := startController(t, sn)
	const n = 40
	anywhere := func(int) string { return "" }
	first := createAllKillingOnce(t, create, n, anywhere, sn)
	sn.start(t)
	restarted := time.Now()
	retryAll(t, create, anywhere, first)
	t.Logf("all %d names created %s after the agent restarted", n, time.Since(restarted).Round(100*time.Millisecond))
	if got := len(sn.volumesByName(t)); got != n+1 {
		t.Fatalf("%d volumes, want %d and the warm-up's", got, n)
	}
	checkPool(t, sn.proc, sn.opts, n+1)
}

// TestCSICreatesWithOneOfTwoStorageNodesKilled: the same with two storage nodes, one of them
// SIGKILLed, the names placed on both (even ones on the victim). While it is down, no name is
// created anywhere, not even one placed on the other node (the victim may hold it from an
// earlier attempt: Unavailable); once it is back, every name exists exactly once across both,
// on its node, with the ID any earlier success returned, and each pool holds exactly its
// volumes.
func TestCSICreatesWithOneOfTwoStorageNodesKilled(t *testing.T) {
	victim := startStorageNode(t, "sn12", 121, 4432)
	other := startStorageNode(t, "sn13", 131, 4433)
	create := startController(t, victim, other)
	const n = 40
	pin := func(i int) string { return []string{victim.name, other.name}[i%2] }
	first := createAllKillingOnce(t, create, n, pin, victim)
	for i, id := range first {
		if id != "" {
			continue
		}
		if _, err := create(fmt.Sprintf("pvc-crash-%02d", i), pin(i)); status.Code(err) != codes.Unavailable {
			t.Fatalf("retry of pvc-crash-%02d with a storage node down: %v; want Unavailable (it may hold the name)", i, err)
		}
	}
	victim.start(t)
	retryAll(t, create, pin, first)
	a, b := victim.volumesByName(t), other.volumesByName(t)
	for i := range n {
		name := fmt.Sprintf("pvc-crash-%02d", i)
		_, onA := a[name]
		_, onB := b[name]
		if onA == onB || onA != (pin(i) == victim.name) {
			t.Errorf("%s: on %s %v, on %s %v; want it once, on %s", name, victim.name, onA, other.name, onB, pin(i))
		}
	}
	t.Logf("after the restart: %d volumes on %s, %d on %s, each name once", len(a), victim.name, len(b), other.name)
	checkPool(t, victim.proc, victim.opts, len(a))
	checkPool(t, other.proc, other.opts, len(b))
}
