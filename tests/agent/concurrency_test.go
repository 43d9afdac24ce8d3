//go:build vm

package agent_test

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// startDMThinAgent starts an agent on a fresh dm-thin pool (no overcommit) and returns its client, its pool's
// options (for the thin oracle once it is stopped) and the process.
func startDMThinAgent(t *testing.T, node, dataSize string, port int) (agentapi.AgentClient, dmthin.Options, *vmenv.Agent) {
	meta, data := vmenv.DMThinDevices(t, "nvmeof-"+node, "256M", dataSize)
	sock := t.TempDir() + "/agent.sock"
	proc := vmenv.StartAgent(t, fmt.Sprintf(`
nodeName: %s
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s}
portals: [{id: %d, transport: tcp, address: 192.0.2.1, port: %d}]
listen: unix://%s
`, node, meta, data, port, port, sock))
	opts := dmthin.Options{MetadataDevice: meta, DataDevice: data, Name: "nvmeof-" + node}
	return vmenv.Dial(t, "unix://"+sock, nil), opts, proc
}

// checkPool stops the agent and checks its pool with thin_check and thin_ls: exactly want
// volumes and snapshots, nothing orphaned.
func checkPool(t *testing.T, proc *vmenv.Agent, opts dmthin.Options, want int) {
	t.Helper()
	proc.Stop(syscall.SIGTERM)
	ctx := vmenv.Context(t, 2*time.Minute)
	p, err := dmthin.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.ThinIDs()); n != want {
		t.Errorf("the pool records %d thin devices, want %d", n, want)
	}
	vmenv.ShutdownAndCheckThin(ctx, t, p, opts)
}

// TestConcurrentCreatesAreExactlyOncePerName sends 50 CreateVolume calls at once, 10 of them
// repeating a name: exactly 40 volumes must exist afterwards, each name once.
func TestConcurrentCreatesAreExactlyOncePerName(t *testing.T) {
	c, opts, proc := startDMThinAgent(t, "sn2", "8G", 4421)
	ctx := vmenv.Context(t, 10*time.Minute)

	names := make([]string, 0, 50)
	for i := range 40 {
		names = append(names, fmt.Sprintf("pvc-%02d", i))
	}
	for i := range 10 {
		names = append(names, fmt.Sprintf("pvc-%02d", i*4))
	}
	ids := make([]string, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			resp, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: name, SizeBytes: 64 << 20})
			errs[i] = err
			if err == nil {
				ids[i] = resp.Volume.Id
			}
		})
	}
	wg.Wait()
	byName := map[string]string{}
	for i, name := range names {
		if errs[i] != nil {
			t.Fatalf("CreateVolume(%s): %v", name, errs[i])
		}
		if prev, ok := byName[name]; ok && prev != ids[i] {
			t.Fatalf("name %s got two IDs: %s and %s", name, prev, ids[i])
		}
		byName[name] = ids[i]
	}
	list, err := c.ListVolumes(ctx, &agentapi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Volumes) != 40 {
		t.Fatalf("%d volumes listed, want 40", len(list.Volumes))
	}
	checkPool(t, proc, opts, 40)
}

// TestConcurrentCreatesNearTheLimitNeverOvercommit races 64 creations for a pool that holds
// fewer of them (no overcommit): exactly as many as fit succeed, the rest are
// ResourceExhausted, and what the pool holds never exceeds its size.
func TestConcurrentCreatesNearTheLimitNeverOvercommit(t *testing.T) {
	c, opts, proc := startDMThinAgent(t, "sn3", "2G", 4423)
	ctx := vmenv.Context(t, 10*time.Minute)
	capBefore, err := c.GetCapacity(ctx, &agentapi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	// Admission is bounded by the overcommit headroom (the maximum volume size); available
	// bytes are also capped by the physical fill level, which creations do not reach here.
	fit := int(capBefore.GetMaximumVolumeBytes() / size)
	if fit < 8 || fit >= 64 {
		t.Fatalf("the pool fits %d volumes of 64 MiB: the test needs a limit well inside 64", fit)
	}
	errs := make([]error, 64)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: fmt.Sprintf("race-%02d", i), SizeBytes: size})
		})
	}
	wg.Wait()
	var ok, full int
	for i, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			full++
		default:
			t.Errorf("CreateVolume(race-%02d): %v", i, err)
		}
	}
	capAfter, err := c.GetCapacity(ctx, &agentapi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d created, %d refused; provisioned %d of %d bytes", ok, full, capAfter.GetProvisionedBytes(), capAfter.GetDataBytes())
	if ok != fit || full != 64-fit {
		t.Fatalf("%d created and %d refused, want exactly %d and %d", ok, full, fit, 64-fit)
	}
	if capAfter.GetProvisionedBytes() > capAfter.GetDataBytes() {
		t.Fatalf("provisioned %d bytes in a pool of %d with no overcommit", capAfter.GetProvisionedBytes(), capAfter.GetDataBytes())
	}
	checkPool(t, proc, opts, fit)
}
