//go:build vm && bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/controller"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvmet"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const gib = int64(1) << 30

// samples is how many times each operation is measured for its p50.
const samples = 21

// backend is one pool backend under measurement.
type backend struct {
	name string
	// pool returns the agent configuration's pool line for fresh devices.
	pool func(t *testing.T, n int) string
	// scale is the number of volumes the scale table fills the pool to.
	scale int
}

var backends = []backend{
	{
		name: "dmthin",
		pool: func(t *testing.T, n int) string {
			meta, data := vmenv.DMThinDevices(t, fmt.Sprintf("nvmeof-bench%d", n), "2G", "64G")
			return fmt.Sprintf("{backend: dmthin, metadataDevice: %s, dataDevice: %s, overcommitRatio: 100}", meta, data)
		},
		scale: 1000,
	},
	{
		name: "lvm",
		pool: func(t *testing.T, n int) string {
			vg := fmt.Sprintf("benchvg%d", n)
			loop := vmenv.ThinPool(t, vg, "64G")
			return fmt.Sprintf("{volumeGroup: %s, thinPool: pool, overcommitRatio: 100, devices: [%s]}", vg, loop)
		},
		// An lvcreate costs about a second under emulation, and more as the VG grows: 300
		// volumes keep the run under half an hour.
		scale: 300,
	},
}

// env is one agent with its pool, and a CSI controller in front of it.
type env struct {
	agent agentapi.AgentClient
	csi   *controller.Controller
	host  nvme.Identity
	node  string
	ctx   context.Context
	n     int
}

var envs int

func newEnv(t *testing.T, b backend) *env {
	envs++
	sock := t.TempDir() + "/agent.sock"
	poolLine := b.pool(t, envs)
	// After the agent stops (cleanups run last first), its exports go, so that the pool's
	// devices are free to remove.
	prefix := fmt.Sprintf("nqn.2026-11.io.nvmeof-csi:bench%d:", envs)
	t.Cleanup(func() {
		tg := &nvmet.Target{Prefix: prefix}
		nqns, err := tg.NQNs(context.Background())
		for _, nqn := range nqns {
			err = errors.Join(err, tg.RemoveSubsystem(context.Background(), nqn))
		}
		if err != nil {
			t.Errorf("removing the bench's exports: %v", err)
		}
	})
	vmenv.StartAgent(t, fmt.Sprintf(`
nodeName: bench%d
pool: %s
portals: [{id: %d, transport: tcp, address: 192.0.2.1, port: %d}]
listen: unix://%s
`, envs, poolLine, 40+envs, 4440+envs, sock))
	e := &env{agent: vmenv.Dial(t, "unix://"+sock, nil), ctx: vmenv.Context(t, 2*time.Hour), n: envs}
	cfg := agentclient.Config{StorageNodes: []agentclient.StorageNode{{Name: fmt.Sprintf("bench%d", envs), Address: "unix://" + sock}}}
	pool, err := agentclient.NewPool(cfg, agentclient.CallTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	e.csi = controller.New(controller.Options{StorageNodes: cfg.StorageNodes, Agents: pool})
	if e.host, err = nvme.LoadOrCreateIdentity(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	e.node = contract.NodeID("worker", e.host.HostNQN)
	return e
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// table prints a Markdown table to the test output and stdout (make bench's report).
func table(t *testing.T, title string, header []string, rows [][]string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s\n\n| %s |\n|%s\n", title, strings.Join(header, " | "), strings.Repeat(" --- |", len(header)))
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Fprint(os.Stdout, b.String())
	t.Log(b.String())
}

func (e *env) createVolume(name string) (*agentapi.Volume, error) {
	r, err := e.agent.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: name, SizeBytes: gib})
	return r.GetVolume(), err
}

func (e *env) fill(t *testing.T, prefix string, n int) {
	for i := range n {
		if _, err := e.createVolume(fmt.Sprintf("%s-%d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func volumeCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}
