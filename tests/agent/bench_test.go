//go:build vm

package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// BenchmarkAgentOperations measures, against real LVM and nvmet, the latency of the agent's
// CreateVolume, CreateSnapshot, clone (CreateVolume from a snapshot) and PublishVolume, and of
// a bare `lvcreate` of the same size in the same pool, interleaved in the same run so the
// ratio compares like with like.
func BenchmarkAgentOperations(b *testing.B) {
	// The framework calls a benchmark more than once (N=1 first) and cleans up at the end:
	// every call gets its own volume group.
	benchRuns++
	vg := fmt.Sprintf("benchvg%d", benchRuns)
	loop := vmenv.ThinPool(b, vg, "16G")
	sock := b.TempDir() + "/agent.sock"
	vmenv.StartAgent(b, fmt.Sprintf(`
nodeName: bench%d
pool: {volumeGroup: %s, thinPool: pool, overcommitRatio: 8, devices: [%s]}
portals: [{id: %d, transport: tcp, address: 192.0.2.1, port: %d}]
listen: unix://%s
`, benchRuns, vg, loop, 30+benchRuns, 4430+benchRuns, sock))
	c := vmenv.Dial(b, "unix://"+sock, nil)
	ctx := vmenv.Context(b, 30*time.Minute)
	filter := lvm.DeviceFilter(loop)
	host := newHost(b)

	var create, lvcreate, snapshot, clone, publish time.Duration
	timed := func(total *time.Duration, f func() error) {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*total += time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var vol *agentapi.Volume
		var snap *agentapi.Snapshot
		timed(&create, func() error {
			r, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: fmt.Sprintf("bench-%d", i), SizeBytes: 1 << 30})
			vol = r.GetVolume()
			return err
		})
		timed(&lvcreate, func() error {
			_, err := command.Exec{}.Run(ctx, "lvcreate", "--config", filter, "-q", "-V", "1G", "-T", vg+"/pool", "-n", fmt.Sprintf("bare-%d", i))
			return err
		})
		timed(&snapshot, func() error {
			r, err := c.CreateSnapshot(ctx, &agentapi.CreateSnapshotRequest{Name: fmt.Sprintf("snap-%d", i), SourceVolumeId: vol.Id})
			snap = r.GetSnapshot()
			return err
		})
		timed(&clone, func() error {
			_, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: fmt.Sprintf("clone-%d", i), SizeBytes: 1 << 30,
				Source: &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: snap.Id}}})
			return err
		})
		timed(&publish, func() error {
			_, err := c.PublishVolume(ctx, &agentapi.PublishVolumeRequest{VolumeId: vol.Id, HostNqn: host.HostNQN,
				NodeId: vg + "/" + host.HostNQN, Transport: agentapi.Transport_TRANSPORT_TCP})
			return err
		})
	}
	b.StopTimer()
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / n }
	b.ReportMetric(ms(create), "create-ms/op")
	b.ReportMetric(ms(lvcreate), "lvcreate-ms/op")
	b.ReportMetric(float64(create)/float64(lvcreate), "create/lvcreate")
	b.ReportMetric(ms(snapshot), "snapshot-ms/op")
	b.ReportMetric(ms(clone), "clone-ms/op")
	b.ReportMetric(ms(publish), "publish-ms/op")
}

var benchRuns int
