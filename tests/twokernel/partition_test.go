//go:build vm

package twokernel

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestPartitionOfAMinute cuts the link between the worker and the storage VM for 60 s while
// applications write to two volumes: one whose ctrl_loss_tmo (300 s) outlasts the cut sees no
// I/O error, stalls, and goes on once the link is back, every acknowledged block intact; one
// whose ctrl_loss_tmo (10 s) is shorter sees its I/O fail once the kernel gives its controller
// up, and the node's path repair connects it again after the link returns; both then unstage and
// unpublish cleanly. It logs when each happened.
func TestPartitionOfAMinute(t *testing.T) {
	const cutFor, shortLossTmo = 60 * time.Second, 10 * time.Second
	tk := newTwoKernel(t)
	startAgent.Run(t, tk.storage, agentIn{Addr: tk.storage.Addr(), TLS: tk.tls})
	startPlugin.Run(t, tk.worker, pluginIn{AgentAddr: tk.agentAddr(), ServerName: tk.storage.Addr(), TLS: tk.tls, HealInterval: 5 * time.Second})
	publish := func(name string, lossTmo time.Duration) volumeOut {
		return publishBlockVolume.Run(t, tk.worker, volumeIn{Name: name, Bytes: 256 << 20, Params: map[string]string{
			"transport": "tcp", "ctrlLossTmo": strconv.Itoa(int(lossTmo.Seconds())), "reconnectDelay": "2",
		}})
	}
	ride, expire := publish("rides-it-out", ctrlLossTmo), publish("gives-up", shortLossTmo)
	startWriter.Run(t, tk.worker, writerIn{Name: "ride", Device: ride.Device, Blocks: 4096, Batch: 8})
	startWriter.Run(t, tk.worker, writerIn{Name: "expire", Device: expire.Device, Blocks: 4096, Batch: 8})
	for _, w := range []string{"ride", "expire"} {
		waitAcks(t, tk.worker, w, func(st vmenv.AckStatus) bool { return st.Acks >= 20 })
	}

	tk.c.Cut(tk.storage, tk.worker)
	cut := time.Now()
	var failedAfter time.Duration
	for time.Since(cut) < cutFor {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		st, err := writerStatus.Call(ctx, tk.worker, "expire")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if st.Errors > 0 && failedAfter == 0 {
			failedAfter = time.Since(cut)
			t.Logf("the short-ctrl_loss_tmo volume's writes fail %s into the cut: %v", failedAfter.Round(time.Second), st.FirstErrors)
		}
		time.Sleep(time.Second)
	}
	atHeal := writerStatus.Run(t, tk.worker, "ride")
	if atHeal.Errors > 0 {
		t.Errorf("a volume whose ctrl_loss_tmo outlasts the cut saw I/O errors: %v", atHeal.FirstErrors)
	}
	if states := controllerStates.Run(t, tk.worker, expire.NQN); len(states) != 0 {
		t.Errorf("the kernel kept the controller of the volume whose ctrl_loss_tmo passed: %v", states)
	}
	tk.c.Heal(tk.storage, tk.worker)
	healed := time.Now()

	live := waitLive.Run(t, tk.worker, liveIn{NQN: ride.NQN, Timeout: 2 * time.Minute})
	liveAfter := time.Since(healed)
	waitAcks(t, tk.worker, "ride", func(st vmenv.AckStatus) bool { return st.Acks >= atHeal.Acks+20 })
	resumedAfter := time.Since(healed)
	res := stopAndVerifyWriter.Run(t, tk.worker, "ride")
	if res.Status.Errors > 0 || res.Report.BadCount > 0 {
		t.Errorf("rides-it-out: %d I/O errors %v, %d bad blocks %v", res.Status.Errors, res.Status.FirstErrors, res.Report.BadCount, res.Report.Bad)
	}

	if failedAfter == 0 {
		t.Errorf("the volume with ctrl_loss_tmo %s saw no I/O error during a %s cut", shortLossTmo, cutFor)
	} else if failedAfter < shortLossTmo {
		t.Errorf("the volume with ctrl_loss_tmo %s failed I/O %s into the cut, before ctrl_loss_tmo", shortLossTmo, failedAfter)
	}
	stopWriter.Run(t, tk.worker, "expire")
	repaired := waitLive.Run(t, tk.worker, liveIn{NQN: expire.NQN, Timeout: 2 * time.Minute})
	repairedAfter := time.Since(healed)
	// Both volumes leave the worker cleanly: unpublish, unstage (disconnect) and
	// ControllerUnpublishVolume succeed, and no controller of either is left behind.
	for _, v := range []volumeOut{ride, expire} {
		unpublishVolume.Run(t, tk.worker, v)
		if states := controllerStates.Run(t, tk.worker, v.NQN); len(states) != 0 {
			t.Errorf("controllers of %s remain after NodeUnstageVolume: %v", v.NQN, states)
		}
	}

	t.Logf("partition of %s: ctrl_loss_tmo %s: 0 I/O errors, controller live %s after the link returned (%v), writes acknowledged again within %s; "+
		"ctrl_loss_tmo %s: writes failed %s into the cut, controller removed, reconnected by the node's path repair %s after the link returned (%v); "+
		"%d acknowledged blocks verified",
		cutFor, ctrlLossTmo, liveAfter.Round(100*time.Millisecond), live.States, resumedAfter.Round(time.Second),
		shortLossTmo, failedAfter.Round(time.Second), repairedAfter.Round(100*time.Millisecond), repaired.States, res.Report.Durable)
}
