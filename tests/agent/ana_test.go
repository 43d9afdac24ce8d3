//go:build vm

package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestANAStateMovesIO: each portal reports the ANA state its configuration gives it; the
// host's native multipath writes through the optimized portal only, and when the states are
// swapped (configuration changed, agent restarted) the host's writes move to the other one.
func TestANAStateMovesIO(t *testing.T) {
	meta, data := vmenv.DMThinDevices(t, "nvmeof-sn8", "64M", "2G")
	dir := t.TempDir()
	sock, cfgPath := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "agent.yaml")
	const port = 4428
	configure := func(stateA, stateB string) {
		t.Helper()
		cfg := fmt.Sprintf(`
nodeName: sn8
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s}
portals:
- {id: 81, transport: tcp, address: %s, port: %d, anaState: %s}
- {id: 82, transport: tcp, address: %s, port: %d, anaState: %s}
listen: unix://%s
`, meta, data, vmtest.PortalA, port, stateA, vmtest.PortalB, port, stateB, sock)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	configure("optimized", "non-optimized")
	proc := vmenv.StartAgentFile(t, cfgPath)
	c := vmenv.Dial(t, "unix://"+sock, nil)
	ctx := vmenv.Context(t, 5*time.Minute)
	in := &nvme.Initiator{}
	host := newHost(t)
	vol, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "ana", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pub := publishTo(t, c, vol.Volume.Id, host, "wa")
	dev := connect(t, in, host, pub)

	// The controller of each portal, and its path device's count of written sectors.
	ctrls, err := in.Controllers(pub.SubsystemNqn)
	if err != nil || len(ctrls) != 2 {
		t.Fatalf("controllers %v, %v; want one per portal", ctrls, err)
	}
	ctrlOf := map[string]string{}
	for _, c := range ctrls {
		ctrlOf[c.Address] = c.Name
	}
	written := func() map[string]int64 {
		out := map[string]int64{}
		for addr, ctrl := range ctrlOf {
			out[addr] = pathWriteSectors(t, ctrl)
		}
		return out
	}
	expect := func(stateA, stateB, busy, idle string, pattern uint64) {
		t.Helper()
		waitFor(t, 30*time.Second, "the host sees the portals' ANA states", func() error {
			a, _ := in.ANAState(ctrlOf[vmtest.PortalA])
			b, _ := in.ANAState(ctrlOf[vmtest.PortalB])
			if a != stateA || b != stateB {
				return fmt.Errorf("portal A %q, portal B %q; want %s, %s", a, b, stateA, stateB)
			}
			return nil
		})
		before := written()
		blocktest.Write(t, dev, 0, blocktest.Pattern(pattern, 8<<20))
		after := written()
		if after[busy]-before[busy] < 8<<20/512 || after[idle] != before[idle] {
			t.Fatalf("8 MiB written: %d sectors through %s (%s), %d through %s; want all through the optimized one",
				after[busy]-before[busy], busy, stateA, after[idle]-before[idle], idle)
		}
		t.Logf("A %s, B %s: 8 MiB written through %s only", stateA, stateB, busy)
	}
	expect("optimized", "non-optimized", vmtest.PortalA, vmtest.PortalB, 1)

	// Swap the states: the I/O follows.
	proc.Stop(syscall.SIGTERM)
	configure("inaccessible", "optimized")
	vmenv.StartAgentFile(t, cfgPath)
	c = vmenv.Dial(t, "unix://"+sock, nil)
	expect("inaccessible", "optimized", vmtest.PortalB, vmtest.PortalA, 2)
	blocktest.Expect(t, dev, 0, blocktest.Pattern(2, 8<<20), "the data written through portal B")

	// Nothing left: the pool's devices can go when the test ends.
	if err := in.Disconnect(ctx, pub.SubsystemNqn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: vol.Volume.Id, HostNqn: host.HostNQN}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: vol.Volume.Id}); err != nil {
		t.Fatal(err)
	}
}

var pathNSRE = regexp.MustCompile(`^nvme[0-9]+c[0-9]+n[0-9]+$`)

// pathWriteSectors reads the sectors written through a controller's path device (field 7
// of its block stat).
func pathWriteSectors(t *testing.T, ctrl string) int64 {
	t.Helper()
	dir := filepath.Join("/sys/class/nvme", ctrl)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !pathNSRE.MatchString(e.Name()) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(raw))
		n, err := strconv.ParseInt(f[6], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("controller %s has no path device", ctrl)
	return 0
}
