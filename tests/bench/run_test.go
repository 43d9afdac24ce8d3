//go:build vm && bench

package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/internal/timing"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// result is one backend's figures.
type result struct {
	ops                       map[string]time.Duration // p50 of each agent operation, with 10 volumes
	agentCreate, csiCreate    time.Duration            // p50, interleaved
	createSmall, createLarge  time.Duration            // agent CreateVolume p50 with 10 and with scale volumes
	publishSmall, publishLarg time.Duration            // CSI ControllerPublish p50, same
	scale                     int
}

var opNames = []string{"CreateVolume", "CreateSnapshot", "clone (CreateVolume from a snapshot)", "PublishVolume", "UnpublishVolume", "DeleteVolume"}

// TestBench measures every backend and prints the tables, with a column or row for each
// backend measured (`-run TestBench/dmthin` measures one).
func TestBench(t *testing.T) {
	results := map[string]*result{}
	var names []string
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { results[b.name] = measure(t, b) })
		if results[b.name] != nil {
			names = append(names, b.name)
		}
	}
	if len(names) == 0 {
		t.Fatal("no backend was measured")
	}
	header := append([]string{"operation"}, names...)
	if len(names) == 2 {
		header = append(header, names[1]+" / "+names[0])
	}
	var rows [][]string
	for _, op := range opNames {
		row := []string{op}
		for _, n := range names {
			row = append(row, ms(results[n].ops[op]))
		}
		if len(names) == 2 {
			row = append(row, fmt.Sprintf("%.1f×", float64(results[names[1]].ops[op])/float64(results[names[0]].ops[op])))
		}
		rows = append(rows, row)
	}
	table(t, fmt.Sprintf("Agent operations, p50 of %d, under 100 volumes in the pool (goal on dmthin: ≤ 50 ms each)", samples), header, rows)
	rows = nil
	for _, name := range names {
		r := results[name]
		rows = append(rows, []string{name, fmt.Sprintf("CreateVolume, 10 → %d volumes", r.scale), ms(r.createSmall), ms(r.createLarge),
			fmt.Sprintf("%.2f×", float64(r.createLarge)/float64(r.createSmall))})
		rows = append(rows, []string{name, fmt.Sprintf("ControllerPublish, 10 → %d volumes", r.scale), ms(r.publishSmall), ms(r.publishLarg),
			fmt.Sprintf("%.2f×", float64(r.publishLarg)/float64(r.publishSmall))})
	}
	table(t, "Scale: p50 as the pool grows (goal on dmthin with 1,000 volumes: ≤ 1.2× the p50 with 10)",
		[]string{"backend", "operation", "small pool", "large pool", "ratio"}, rows)
	rows = nil
	for _, name := range names {
		r := results[name]
		rows = append(rows, []string{name, ms(r.agentCreate), ms(r.csiCreate), fmt.Sprintf("%.2f×", float64(r.csiCreate)/float64(r.agentCreate))})
	}
	table(t, "CreateVolume through the CSI controller vs the agent's own (goal: ≤ 1.2×)",
		[]string{"backend", "agent", "CSI controller", "ratio"}, rows)
}

func measure(t *testing.T, b backend) *result {
	e := newEnv(t, b)
	r := &result{ops: map[string]time.Duration{}, scale: b.scale}
	e.fill(t, "fill", 10)

	// Scale: create and publish with the pool small, then large.
	scaled := func(tag string) (create, publish time.Duration) {
		var c, p timing.Samples
		for i := range samples {
			var vol *agentapi.Volume
			c.Time(t, func() (err error) { vol, err = e.createVolume(fmt.Sprintf("%s-%d", tag, i)); return err })
			p.Time(t, func() error {
				_, err := e.csi.ControllerPublishVolume(e.ctx, &csi.ControllerPublishVolumeRequest{
					VolumeId: contract.ObjectID(fmt.Sprintf("bench%d", e.n), vol.Id), NodeId: e.node, VolumeCapability: volumeCap(),
					VolumeContext: map[string]string{contract.ParamTransport: "tcp"}})
				return err
			})
		}
		return c.P50(), p.P50()
	}
	// Scale, small: 10 volumes in the pool (and the ones this measurement adds).
	r.createSmall, r.publishSmall = scaled("small")

	timers := map[string]*timing.Samples{}
	for _, op := range opNames {
		timers[op] = &timing.Samples{}
	}
	for i := range samples {
		var vol *agentapi.Volume
		var snap *agentapi.Snapshot
		timers["CreateVolume"].Time(t, func() (err error) { vol, err = e.createVolume(fmt.Sprintf("op-%d", i)); return err })
		timers["CreateSnapshot"].Time(t, func() error {
			s, err := e.agent.CreateSnapshot(e.ctx, &agentapi.CreateSnapshotRequest{Name: fmt.Sprintf("snap-%d", i), SourceVolumeId: vol.Id})
			snap = s.GetSnapshot()
			return err
		})
		var clone *agentapi.Volume
		timers["clone (CreateVolume from a snapshot)"].Time(t, func() error {
			c, err := e.agent.CreateVolume(e.ctx, &agentapi.CreateVolumeRequest{Name: fmt.Sprintf("clone-%d", i), SizeBytes: gib,
				Source: &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: snap.Id}}})
			clone = c.GetVolume()
			return err
		})
		timers["PublishVolume"].Time(t, func() error {
			_, err := e.agent.PublishVolume(e.ctx, &agentapi.PublishVolumeRequest{VolumeId: vol.Id, HostNqn: e.host.HostNQN, NodeId: e.node, Transport: agentapi.Transport_TRANSPORT_TCP})
			return err
		})
		timers["UnpublishVolume"].Time(t, func() error {
			_, err := e.agent.UnpublishVolume(e.ctx, &agentapi.UnpublishVolumeRequest{VolumeId: vol.Id, HostNqn: e.host.HostNQN})
			return err
		})
		timers["DeleteVolume"].Time(t, func() error {
			_, err := e.agent.DeleteVolume(e.ctx, &agentapi.DeleteVolumeRequest{Id: clone.Id})
			return err
		})
	}
	for op, tm := range timers {
		r.ops[op] = tm.P50()
	}

	// The controller in front: interleaved, so both see the same pool and machine.
	var agentCreate, csiCreate timing.Samples
	for i := range samples {
		agentCreate.Time(t, func() error { _, err := e.createVolume(fmt.Sprintf("a-%d", i)); return err })
		csiCreate.Time(t, func() error {
			_, err := e.csi.CreateVolume(e.ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("c-%d", i), VolumeCapabilities: []*csi.VolumeCapability{volumeCap()},
				CapacityRange: &csi.CapacityRange{RequiredBytes: gib}})
			return err
		})
	}
	r.agentCreate, r.csiCreate = agentCreate.P50(), csiCreate.P50()

	// Scale, large: fill the pool to the scale (counting what the measurements made).
	count := 10 + 5*samples
	start := time.Now()
	e.fill(t, "scale", b.scale-count)
	t.Logf("%s: filled the pool to about %d volumes and snapshots in %s", b.name, b.scale, time.Since(start).Round(time.Second))
	r.createLarge, r.publishLarg = scaled("large")
	return r
}
