//go:build vm

package twokernel

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
)

// Fault 2: the storage VM loses power during a burst of concurrent CreateVolume,
// CreateSnapshot and DeleteVolume calls, made through the CSI controller service of the plugin
// in the worker VM.

const (
	burstWorkers = 32
	// Of the burst's workers, i%3 == 0 create volumes, 1 snapshot a source volume, 2 delete
	// volumes made for them beforehand.
	burstSources          = 4 // source volumes the snapshotters share
	burstDeletesPerWorker = 2
	burstVolumeBytes      = 16 << 20
)

// burstOp is one controller call of the burst and what it returned.
type burstOp struct {
	Kind string // "create", "snapshot" or "delete"
	Name string // the volume or snapshot name (create, snapshot)
	// Bytes is the requested size (create); Source the source volume (snapshot); ID the
	// volume to delete (delete), or the ID the call returned (create, snapshot).
	Bytes  int64
	Source string
	ID     string
	// OK: the call returned success; Capacity is the volume's or snapshot's size it returned.
	OK       bool
	Capacity int64
	Err      string
}

var burst struct {
	sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ops    []*burstOp
}

func controllerClient(s *vmtest.Step) csi.ControllerClient {
	return csi.NewControllerClient(pluginConn(s))
}

// do makes one burst call and records its outcome in op.
func (op *burstOp) do(ctx context.Context, ctrl csi.ControllerClient) error {
	var err error
	switch op.Kind {
	case "create":
		var resp *csi.CreateVolumeResponse
		resp, err = ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name: op.Name, CapacityRange: &csi.CapacityRange{RequiredBytes: op.Bytes},
			VolumeCapabilities: []*csi.VolumeCapability{blockCap}, Parameters: map[string]string{"transport": "tcp"},
		})
		op.ID, op.Capacity = resp.GetVolume().GetVolumeId(), resp.GetVolume().GetCapacityBytes()
	case "snapshot":
		var resp *csi.CreateSnapshotResponse
		resp, err = ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: op.Name, SourceVolumeId: op.Source})
		op.ID, op.Capacity = resp.GetSnapshot().GetSnapshotId(), resp.GetSnapshot().GetSizeBytes()
	case "delete":
		_, err = ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: op.ID})
	default:
		return fmt.Errorf("unknown operation %q", op.Kind)
	}
	op.OK = err == nil
	if err != nil {
		op.Err = err.Error()
	}
	return err
}

type burstPlan struct {
	// Sources are the snapshotters' source volumes; Doomed the volumes the deleters delete,
	// burstDeletesPerWorker per deleter in worker order.
	Sources, Doomed []string
}

// prepareBurst creates the burst's source volumes and the volumes it deletes.
var prepareBurst = vmtest.NewStep("prepare-burst", func(s *vmtest.Step, prefix string) burstPlan {
	ctrl := controllerClient(s)
	var plan burstPlan
	create := func(name string) string {
		op := &burstOp{Kind: "create", Name: name, Bytes: burstVolumeBytes}
		if err := op.do(s.Context(), ctrl); err != nil {
			s.Fatalf("CreateVolume %s: %v", name, err)
		}
		return op.ID
	}
	for i := range burstSources {
		plan.Sources = append(plan.Sources, create(fmt.Sprintf("%s-source-%d", prefix, i)))
	}
	for w := range burstWorkers {
		if w%3 == 2 {
			for k := range burstDeletesPerWorker {
				plan.Doomed = append(plan.Doomed, create(fmt.Sprintf("%s-doomed-%d-%d", prefix, w, k)))
			}
		}
	}
	return plan
})

type burstIn struct {
	Prefix string
	Plan   burstPlan
}

// startBurst starts burstWorkers goroutines, each making its kind of call one after the other
// (new names each time; a deleter until its volumes are gone) until stopBurst.
var startBurst = vmtest.NewStep("start-burst", func(s *vmtest.Step, in burstIn) struct{} {
	ctrl := controllerClient(s)
	ctx, cancel := context.WithCancel(context.Background())
	burst.Lock()
	defer burst.Unlock()
	burst.cancel, burst.ops = cancel, nil
	doomed := in.Plan.Doomed
	for w := range burstWorkers {
		var mine []string
		if w%3 == 2 {
			mine, doomed = doomed[:burstDeletesPerWorker], doomed[burstDeletesPerWorker:]
		}
		burst.wg.Add(1)
		go func() {
			defer burst.wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				var op *burstOp
				switch w % 3 {
				case 0:
					op = &burstOp{Kind: "create", Name: fmt.Sprintf("%s-vol-%d-%d", in.Prefix, w, k), Bytes: burstVolumeBytes + int64(w)<<20}
				case 1:
					op = &burstOp{Kind: "snapshot", Name: fmt.Sprintf("%s-snap-%d-%d", in.Prefix, w, k), Source: in.Plan.Sources[w%burstSources]}
				default:
					if k >= len(mine) {
						return
					}
					op = &burstOp{Kind: "delete", ID: mine[k]}
				}
				burst.Lock()
				burst.ops = append(burst.ops, op)
				burst.Unlock()
				res := *op
				err := res.do(ctx, ctrl)
				burst.Lock()
				*op = res
				burst.Unlock()
				if err != nil {
					// The first failure (the storage VM is gone) ends this worker.
					return
				}
			}
		}()
	}
	return struct{}{}
})

type burstCount struct{ Started, OK, Failed int }

// burstStatus counts the burst's calls so far.
var burstStatus = vmtest.NewStep("burst-status", func(s *vmtest.Step, _ struct{}) burstCount {
	burst.Lock()
	defer burst.Unlock()
	var c burstCount
	for _, op := range burst.ops {
		c.Started++
		switch {
		case op.OK:
			c.OK++
		case op.Err != "":
			c.Failed++
		}
	}
	return c
})

// stopBurst cancels the calls in flight, waits for every worker and returns every call of
// the burst.
var stopBurst = vmtest.NewStep("stop-burst", func(s *vmtest.Step, _ struct{}) []burstOp {
	burst.Lock()
	cancel := burst.cancel
	burst.Unlock()
	if cancel == nil {
		s.Fatal("no burst runs")
	}
	cancel()
	burst.wg.Wait()
	burst.Lock()
	defer burst.Unlock()
	out := make([]burstOp, len(burst.ops))
	for i, op := range burst.ops {
		out[i] = *op
	}
	return out
})

// retryBurstOp makes one call again (with the same name, size, source or ID), retrying for a
// minute while the controller answers Unavailable or Aborted, and returns its outcome.
var retryBurstOp = vmtest.NewStep("retry-burst-op", func(s *vmtest.Step, op burstOp) burstOp {
	ctrl := controllerClient(s)
	deadline := time.Now().Add(time.Minute)
	for {
		again := op
		again.OK, again.Err, again.Capacity = false, "", 0
		if again.Kind != "delete" {
			again.ID = ""
		}
		err := again.do(s.Context(), ctrl)
		code := status.Code(err)
		if err == nil || (code != codes.Unavailable && code != codes.Aborted) || time.Now().After(deadline) {
			return again
		}
		time.Sleep(time.Second)
	}
})

type listedVolume struct {
	ID       string
	Capacity int64
}

type listedSnapshot struct {
	ID, Source string
	Size       int64
	Ready      bool
}

type listing struct {
	Volumes   []listedVolume
	Snapshots []listedSnapshot
}

// listAll lists every volume and snapshot through the controller service (all pages).
var listAll = vmtest.NewStep("list-all", func(s *vmtest.Step, _ struct{}) listing {
	ctrl := controllerClient(s)
	var out listing
	for token := ""; ; {
		resp, err := ctrl.ListVolumes(s.Context(), &csi.ListVolumesRequest{StartingToken: token})
		if err != nil {
			s.Fatalf("ListVolumes: %v", err)
		}
		for _, e := range resp.GetEntries() {
			out.Volumes = append(out.Volumes, listedVolume{ID: e.GetVolume().GetVolumeId(), Capacity: e.GetVolume().GetCapacityBytes()})
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	for token := ""; ; {
		resp, err := ctrl.ListSnapshots(s.Context(), &csi.ListSnapshotsRequest{StartingToken: token})
		if err != nil {
			s.Fatalf("ListSnapshots: %v", err)
		}
		for _, e := range resp.GetEntries() {
			sn := e.GetSnapshot()
			out.Snapshots = append(out.Snapshots, listedSnapshot{ID: sn.GetSnapshotId(), Source: sn.GetSourceVolumeId(), Size: sn.GetSizeBytes(), Ready: sn.GetReadyToUse()})
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	return out
})

// TestPowerCutDuringControlBurst cuts the storage VM's power while 32 workers make
// CreateVolume, CreateSnapshot and DeleteVolume calls through the CSI controller service, then
// boots it and starts its agent: every call that returned OK holds (its volume or snapshot
// exists with the size it returned and, for a snapshot, its source; a deleted volume is
// gone); every call that had not returned, made again, succeeds, and nothing that no call
// made, or half made, shows in the lists; the pool holds exactly the listed volumes and
// snapshots, its thin metadata clean. It runs on each pool backend (subtests, one pair of
// machines).
func TestPowerCutDuringControlBurst(t *testing.T) {
	tk := newTwoKernel(t)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { powerCutDuringBurst(t, tk, backend) })
	}
}

func powerCutDuringBurst(t *testing.T, tk *twoKernel, backend string) {
	agentCfg := agentIn{Addr: tk.storage.Addr(), TLS: tk.tls, Backend: backend}
	startAgent.Run(t, tk.storage, agentCfg)
	tk.startPluginOnce(t, pluginIn{AgentAddr: tk.agentAddr(), ServerName: tk.storage.Addr(), TLS: tk.tls})
	// The subtests share the controller, whose only storage node is this agent: objects of an
	// earlier backend are not listed here (they are on the other pool).
	baseline := listAll.Run(t, tk.worker, struct{}{})
	if len(baseline.Volumes) != 0 || len(baseline.Snapshots) != 0 {
		t.Fatalf("the %s pool is not empty before the burst: %+v", backend, baseline)
	}
	prefix := "burst-" + backend
	plan := prepareBurst.Run(t, tk.worker, prefix)

	start := time.Now()
	startBurst.Run(t, tk.worker, burstIn{Prefix: prefix, Plan: plan})
	var atCut burstCount
	for {
		atCut = burstStatus.Run(t, tk.worker, struct{}{})
		if atCut.Failed > 0 {
			t.Fatalf("burst calls failed before the power cut: %+v", stopBurst.Run(t, tk.worker, struct{}{}))
		}
		if atCut.OK >= burstWorkers {
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("the burst made too little progress in 5 minutes: %+v", atCut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	tk.storage.PowerCut(t)
	ops := stopBurst.Run(t, tk.worker, struct{}{})
	var ok, unreturned []burstOp
	for _, op := range ops {
		if op.OK {
			ok = append(ok, op)
		} else {
			unreturned = append(unreturned, op)
		}
	}
	t.Logf("%s: power cut %s into the burst: %d calls returned OK, %d had not returned (%+v at the cut)",
		backend, time.Since(start).Round(100*time.Millisecond), len(ok), len(unreturned), atCut)
	if len(unreturned) == 0 {
		t.Errorf("every call of the burst had returned before the power cut: the cut hit no call in flight")
	}

	tk.storage.Boot(t)
	atBoot := checkMetadataAtBoot.Run(t, tk.storage, backend)
	agent := startAgent.Run(t, tk.storage, agentCfg)
	t.Logf("%s: thin metadata after the cut: thin_check clean, %d thin devices; agent answering %s after its start",
		backend, atBoot.ThinIDs, agent.Ready.Round(100*time.Millisecond))

	// Every call that returned OK holds.
	before := listWithRetry(t, tk)
	volumes := map[string]int64{}
	for _, v := range before.Volumes {
		volumes[v.ID] = v.Capacity
	}
	snapshots := map[string]listedSnapshot{}
	for _, sn := range before.Snapshots {
		snapshots[sn.ID] = sn
	}
	for _, op := range ok {
		checkOp(t, "acknowledged", op, volumes, snapshots)
	}

	// Every call that had not returned, made again, succeeds and holds.
	var redone []burstOp
	for _, op := range unreturned {
		again := retryBurstOp.Run(t, tk.worker, op)
		if !again.OK {
			t.Errorf("%s %s%s made again after the power cut: %s", op.Kind, op.Name, op.ID, again.Err)
			continue
		}
		redone = append(redone, again)
	}
	after := listWithRetry(t, tk)
	volumes, snapshots = map[string]int64{}, map[string]listedSnapshot{}
	for _, v := range after.Volumes {
		volumes[v.ID] = v.Capacity
	}
	for _, sn := range after.Snapshots {
		snapshots[sn.ID] = sn
	}
	all := slices.Concat(ok, redone)
	for _, op := range all {
		checkOp(t, "made again", op, volumes, snapshots)
	}

	// Nothing else shows, before or after the calls were made again: the lists hold exactly
	// the sources, the volumes not deleted and what the burst created.
	wantVolumes := map[string]bool{}
	for _, id := range plan.Sources {
		wantVolumes[id] = true
	}
	deleted := map[string]bool{}
	for _, op := range all {
		switch op.Kind {
		case "create":
			wantVolumes[op.ID] = true
		case "delete":
			deleted[op.ID] = true
		}
	}
	for _, id := range plan.Doomed {
		if !deleted[id] {
			wantVolumes[id] = true
		}
	}
	wantSnapshots := map[string]bool{}
	for _, op := range all {
		if op.Kind == "snapshot" {
			wantSnapshots[op.ID] = true
		}
	}
	for _, l := range []struct {
		when string
		list listing
	}{{"after the reboot", before}, {"after the calls were made again", after}} {
		for _, v := range l.list.Volumes {
			if !wantVolumes[v.ID] && !deleted[v.ID] {
				t.Errorf("%s: volume %s (%d bytes) is listed, but no call made it", l.when, v.ID, v.Capacity)
			}
		}
		for _, sn := range l.list.Snapshots {
			if !wantSnapshots[sn.ID] {
				t.Errorf("%s: snapshot %+v is listed, but no call made it", l.when, sn)
			}
		}
	}
	if len(after.Volumes) != len(wantVolumes) || len(after.Snapshots) != len(wantSnapshots) {
		t.Errorf("after the calls were made again: %d volumes and %d snapshots listed, want %d and %d",
			len(after.Volumes), len(after.Snapshots), len(wantVolumes), len(wantSnapshots))
	}

	// No orphan: the pool holds exactly the listed volumes and snapshots.
	pool := stopAgentAndCheckPool.Run(t, tk.storage, backend)
	if want := len(after.Volumes) + len(after.Snapshots); pool.ThinIDs != want {
		t.Errorf("the pool holds %d thin devices; %d volumes and snapshots are listed", pool.ThinIDs, want)
	}
	t.Logf("%s: %d calls acknowledged before the cut all held; %d unreturned made again; pool: %d thin devices = %d volumes + %d snapshots, thin_check clean",
		backend, len(ok), len(redone), pool.ThinIDs, len(after.Volumes), len(after.Snapshots))
}

// checkOp checks that a call's effect is in the lists.
func checkOp(t *testing.T, what string, op burstOp, volumes map[string]int64, snapshots map[string]listedSnapshot) {
	t.Helper()
	switch op.Kind {
	case "create":
		got, ok := volumes[op.ID]
		switch {
		case !ok:
			t.Errorf("%s CreateVolume %s (%s) is not listed", what, op.Name, op.ID)
		case got != op.Capacity || got < op.Bytes:
			t.Errorf("%s CreateVolume %s: listed with %d bytes; the call returned %d for %d requested", what, op.Name, got, op.Capacity, op.Bytes)
		}
	case "snapshot":
		got, ok := snapshots[op.ID]
		switch {
		case !ok:
			t.Errorf("%s CreateSnapshot %s (%s) is not listed", what, op.Name, op.ID)
		case got.Source != op.Source || got.Size != op.Capacity || !got.Ready:
			t.Errorf("%s CreateSnapshot %s: listed as %+v; the call returned %d bytes of %s", what, op.Name, got, op.Capacity, op.Source)
		}
	case "delete":
		if _, ok := volumes[op.ID]; ok {
			t.Errorf("%s DeleteVolume %s: the volume is still listed", what, op.ID)
		}
	}
}

// listWithRetry lists everything once the controller reaches the agent again (its gRPC
// connection to the agent that lost power may fail a first call).
func listWithRetry(t *testing.T, tk *twoKernel) listing {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		l, err := listAll.Call(ctx, tk.worker, struct{}{})
		cancel()
		if err == nil {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		t.Logf("listing: %v; retrying", err)
		time.Sleep(time.Second)
	}
}
