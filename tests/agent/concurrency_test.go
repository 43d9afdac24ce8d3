//go:build vm

package agent_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestConcurrentCreatesAreExactlyOncePerName sends 50 CreateVolume calls at once, 10 of them
// repeating a name: exactly 40 volumes must exist afterwards, each name once.
func TestConcurrentCreatesAreExactlyOncePerName(t *testing.T) {
	loop := vmenv.ThinPool(t, "concvg", "8G")
	sock := t.TempDir() + "/agent.sock"
	vmenv.StartAgent(t, fmt.Sprintf(`
nodeName: sn2
pool: {volumeGroup: concvg, thinPool: pool, devices: [%s]}
portals: [{id: 21, transport: tcp, address: 192.0.2.1, port: 4421}]
listen: unix://%s
`, loop, sock))
	c := vmenv.Dial(t, "unix://"+sock, nil)
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: name, SizeBytes: 64 << 20})
			errs[i] = err
			if err == nil {
				ids[i] = resp.Volume.Id
			}
		}()
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
	lvs, err := (&lvm.Pool{VG: "concvg", ThinPool: "pool", Runner: command.Exec{}}).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lvs) != 40 {
		t.Fatalf("%d thin LVs in the pool, want 40", len(lvs))
	}
}
