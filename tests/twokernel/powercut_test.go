//go:build vm

package twokernel

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// ctrlLossTmo is the volume's ctrl_loss_tmo in the power-cut test: the storage VM must be
// back, and the worker reconnected, well within it.
const ctrlLossTmo = 300 * time.Second

// TestPowerCutLosesNoAcknowledgedWrite cuts the storage VM's power while an application on
// the worker writes to a volume with an fsync after every 8 writes, then boots it again and
// starts its agent: the pool's dm-thin metadata is clean as the cut left it; every export
// comes back; the worker's controller reconnects within ctrl_loss_tmo and the application goes
// on with no I/O error; every block whose fsync returned before the cut reads back with that
// write or a newer one; the pool holds exactly its one volume. It logs the recovery times.
//
// It runs on each pool backend in turn (subtests), on one pair of machines: the backends'
// pools live on different disks of the storage VM.
func TestPowerCutLosesNoAcknowledgedWrite(t *testing.T) {
	tk := newTwoKernel(t)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { powerCutDuringWrites(t, tk, backend) })
	}
}

func powerCutDuringWrites(t *testing.T, tk *twoKernel, backend string) {
	startAgent.Run(t, tk.storage, agentIn{Addr: tk.storage.Addr(), TLS: tk.tls, Backend: backend})
	tk.startPluginOnce(t, pluginIn{AgentAddr: tk.agentAddr(), ServerName: tk.storage.Addr(), TLS: tk.tls})
	vol := publishBlockVolume.Run(t, tk.worker, volumeIn{
		Name:  "power-cut-" + backend,
		Bytes: 1 << 30,
		Params: map[string]string{
			"transport":      "tcp",
			"ctrlLossTmo":    strconv.Itoa(int(ctrlLossTmo.Seconds())),
			"reconnectDelay": "1",
		},
	})
	exports := listExports.Run(t, tk.storage, struct{}{})
	if len(exports) != 1 {
		t.Fatalf("the storage VM exports %d subsystems, want 1: %v", len(exports), exports)
	}

	// 16384 blocks of 4 KiB: 64 MiB, 64 thin-pool blocks' worth of random writes, so new
	// blocks are still being provisioned (pool metadata changing) when the power goes.
	startWriter.Run(t, tk.worker, writerIn{Name: "app", Device: vol.Device, Blocks: 16384, Batch: 8})
	waitAcks(t, tk.worker, "app", func(st vmenv.AckStatus) bool { return st.Acks >= 40 })

	tk.storage.PowerCut(t)
	cut := time.Now()
	before := markWriter.Run(t, tk.worker, "app")
	t.Logf("power cut with %d writes done, %d fsyncs acknowledged, %d blocks holding acknowledged data",
		before.Writes, before.Acks, before.DurableBlocks)
	if before.Errors > 0 {
		t.Fatalf("I/O errors before the cut: %v", before.FirstErrors)
	}
	noticed := waitNotLive(t, tk.worker, vol.NQN, time.Minute)
	t.Logf("the worker's controller left the live state %s after the cut", noticed.Sub(cut).Round(100*time.Millisecond))

	tk.storage.Boot(t)
	booted := time.Now()
	atBoot := checkMetadataAtBoot.Run(t, tk.storage, backend)
	t.Logf("%s: thin metadata after the cut: thin_check clean, %d thin device(s)", backend, atBoot.ThinIDs)
	if atBoot.ThinIDs != 1 {
		t.Errorf("the thin metadata after the cut holds %d thin devices, want 1", atBoot.ThinIDs)
	}
	agent := startAgent.Run(t, tk.storage, agentIn{Addr: tk.storage.Addr(), TLS: tk.tls, Backend: backend})
	agentUp := time.Now()
	if after := listExports.Run(t, tk.storage, struct{}{}); !slices.Equal(after, exports) {
		t.Errorf("exports after the power cut:\n%v\nbefore:\n%v", after, exports)
	}

	live := waitLive.Run(t, tk.worker, liveIn{NQN: vol.NQN, Timeout: ctrlLossTmo - time.Since(cut)})
	reconnected := time.Now()
	resumed := waitAcks(t, tk.worker, "app", func(st vmenv.AckStatus) bool { return st.AcksThisEpoch >= 20 })
	if reconnected.Sub(cut) >= ctrlLossTmo {
		t.Errorf("the worker reconnected %s after the cut, not within ctrl_loss_tmo (%s)", reconnected.Sub(cut), ctrlLossTmo)
	}

	res := stopAndVerifyWriter.Run(t, tk.worker, "app")
	if res.Status.Errors > 0 {
		t.Errorf("the application saw %d I/O errors: %v", res.Status.Errors, res.Status.FirstErrors)
	}
	if res.Report.BadCount > 0 {
		t.Errorf("%d blocks lost acknowledged data or hold foreign data: %v", res.Report.BadCount, res.Report.Bad)
	}
	if res.Report.Durable < before.DurableBlocks {
		t.Errorf("%d blocks hold acknowledged data at the end, fewer than the %d before the cut", res.Report.Durable, before.DurableBlocks)
	}
	t.Logf("verified %d blocks holding acknowledged data (%d with a newer write), %d writes in all",
		res.Report.Durable, res.Report.Newer, res.Status.Writes)

	unpublishVolume.Run(t, tk.worker, vol)
	pool := stopAgentAndCheckPool.Run(t, tk.storage, backend)
	if pool.ThinIDs != 1 {
		t.Errorf("the pool holds %d thin devices, want 1", pool.ThinIDs)
	}

	stall := resumed.FirstAckThisEpoch.Sub(resumed.LastAckBefore)
	t.Logf("%s recovery: storage VM serving steps %s after the cut (boot %s); agent answering %s after boot (pool recovered, exports back); "+
		"worker controller live %s after the agent (%s after the cut; waited %s, %v); application's fsyncs stalled %s (worker clock)",
		backend, booted.Sub(cut).Round(100*time.Millisecond), tk.storage.LastBoot().Round(100*time.Millisecond),
		agent.Ready.Round(100*time.Millisecond), reconnected.Sub(agentUp).Round(100*time.Millisecond),
		reconnected.Sub(cut).Round(100*time.Millisecond), live.Waited.Round(100*time.Millisecond), live.States,
		stall.Round(100*time.Millisecond))
}

// waitAcks polls a writer's status until done says so, failing the test after three minutes
// or on the first I/O error.
func waitAcks(t *testing.T, m *vmtest.Machine, writer string, done func(vmenv.AckStatus) bool) vmenv.AckStatus {
	t.Helper()
	const timeout = 3 * time.Minute
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		st, err := writerStatus.Call(ctx, m, writer)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if st.Errors > 0 {
			t.Fatalf("the application saw I/O errors: %v", st.FirstErrors)
		}
		if done(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer made too little progress in %s: %+v", timeout, st)
		}
		time.Sleep(time.Second)
	}
}

// waitNotLive waits until none of the subsystem's controllers is live (the worker noticed the
// loss of its target) and returns when.
func waitNotLive(t *testing.T, m *vmtest.Machine, nqn string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		states := controllerStates.Run(t, m, nqn)
		live := false
		for _, st := range states {
			live = live || strings.HasSuffix(st, "=live")
		}
		if !live {
			t.Logf("worker controllers: %v", states)
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's controllers still live %s after the storage VM's power cut: %v", timeout, states)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
