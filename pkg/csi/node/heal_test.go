package node

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics/metricstest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// dropController removes the test volume's controller of portal p, as the kernel does after
// ctrl_loss_tmo.
func (f *fakeConnector) dropController(p int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctrls[testNQN] = slices.DeleteFunc(f.ctrls[testNQN], func(c nvme.Controller) bool { return c.Address == testPortals[p].Address })
}

func TestHealReconnectsAPortalTheKernelDropped(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	if done := h.node.Heal(context.Background()); len(done) != 0 {
		t.Fatalf("a healthy volume was healed: %v", done)
	}
	connects := len(h.conn.connects)
	h.conn.dropController(1)
	wantHealth(t, health(t, h), csi.VolumeHealthErrorType_DEGRADED, ReasonPathMissing)
	done := h.node.Heal(context.Background())
	if got := health(t, h); len(got) != 0 {
		t.Errorf("health after healing: %v", got)
	}
	if h.conn.controllerCount() != 2 || len(h.conn.connects) != connects+1 {
		t.Fatalf("%d controllers after healing, %d connects", h.conn.controllerCount(), len(h.conn.connects)-connects)
	}
	last := h.conn.connects[len(h.conn.connects)-1]
	if last.Address != testPortals[1].Address || last.CtrlLossTmo != 60 || last.ReconnectDelay != 3 || last.HostNQN != testHost {
		t.Errorf("reconnected with %+v, want portal 2 with the stage's settings", last)
	}
	if len(done) != 1 || !strings.Contains(done[0], "reconnected portal") {
		t.Errorf("reported %v", done)
	}
}

func TestHealDeletesDeadAndSupersededControllers(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	h.conn.setState("dead", 0)
	// A second controller of the other portal, stuck connecting while the first is live.
	h.conn.mu.Lock()
	stale := h.conn.ctrls[testNQN][1]
	stale.Name, stale.State = "nvme99", "connecting"
	h.conn.ctrls[testNQN] = append(h.conn.ctrls[testNQN], stale)
	dead := h.conn.ctrls[testNQN][0].Name
	h.conn.mu.Unlock()

	h.node.Heal(context.Background())
	if !slices.Contains(h.conn.deleted, dead) || !slices.Contains(h.conn.deleted, "nvme99") || len(h.conn.deleted) != 2 {
		t.Fatalf("deleted %v, want %s and nvme99", h.conn.deleted, dead)
	}
	// The dead one's portal is connected again.
	if h.conn.controllerCount() != 2 {
		t.Fatalf("%d controllers after healing, want 2 live", h.conn.controllerCount())
	}
}

func TestHealRescansWhenTheNamespaceIsMissing(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	h.conn.mu.Lock()
	h.conn.hideNS = true
	h.conn.mu.Unlock()
	h.node.Heal(context.Background())
	if !slices.Equal(h.conn.subRescans, []string{testNQN}) {
		t.Fatalf("rescans %v", h.conn.subRescans)
	}
	if _, err := h.conn.FindNamespace(testNQN, testUUID); err != nil {
		t.Fatal(err)
	}
}

func TestHealLeavesABusyVolumeAndASinglePathAlone(t *testing.T) {
	h := newHarness(t)
	h.stage(mountCap("ext4", snw))
	h.conn.dropController(1)
	_, release, ok := h.node.volumes.TryHold(context.Background(), testVolume)
	if !ok {
		t.Fatal("lock taken")
	}
	connects := len(h.conn.connects)
	h.node.Heal(context.Background())
	release()
	if len(h.conn.connects) != connects {
		t.Fatal("the healer worked on a volume another operation holds")
	}
	// Without multipath, one path is all a volume has: nothing to reconnect.
	h.conn.mu.Lock()
	h.conn.multipath = false
	h.conn.mu.Unlock()
	h.node.Heal(context.Background())
	if len(h.conn.connects) != connects {
		t.Fatal("the healer added a second path without multipath")
	}
	// With no path left, it connects one.
	h.conn.dropController(0)
	h.node.Heal(context.Background())
	if h.conn.controllerCount() != 1 {
		t.Fatalf("%d controllers, want the one path reconnected", h.conn.controllerCount())
	}
}

var _ Connector = (*fakeConnector)(nil)
var _ Connector = (*nvme.Initiator)(nil)

// The node's metrics follow its paths: per volume and state, a missing portal, the health
// reasons, and the healer's repairs by action.
func TestNodeMetricsFollowThePaths(t *testing.T) {
	h := newHarness(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(h.node)
	h.stage(mountCap("ext4", snw))
	live := `nvmeof_node_volume_paths{volume_id="` + testVolume + `",state="live"}`
	missing := `nvmeof_node_volume_paths{volume_id="` + testVolume + `",state="missing"}`
	abnormal := `nvmeof_node_volume_abnormal{volume_id="` + testVolume + `",reason="` + ReasonPathMissing + `"}`
	if metricstest.Value(t, reg, live) != 2 || metricstest.Value(t, reg, missing) != 0 || metricstest.Value(t, reg, abnormal) != 0 {
		t.Fatalf("healthy volume: live %v, missing %v, abnormal %v", metricstest.Value(t, reg, live), metricstest.Value(t, reg, missing), metricstest.Value(t, reg, abnormal))
	}
	h.conn.dropController(1)
	if metricstest.Value(t, reg, live) != 1 || metricstest.Value(t, reg, missing) != 1 || metricstest.Value(t, reg, abnormal) != 1 {
		t.Fatalf("a path dropped: live %v, missing %v, abnormal %v", metricstest.Value(t, reg, live), metricstest.Value(t, reg, missing), metricstest.Value(t, reg, abnormal))
	}
	h.node.Heal(context.Background())
	if metricstest.Value(t, reg, live) != 2 || metricstest.Value(t, reg, `nvmeof_node_path_repairs_total{action="reconnect"}`) != 1 {
		t.Fatalf("after healing: live %v, reconnects %v", metricstest.Value(t, reg, live), metricstest.Value(t, reg, `nvmeof_node_path_repairs_total{action="reconnect"}`))
	}
	if err := h.unstage(); err != nil {
		t.Fatal(err)
	}
	if v := metricstest.Value(t, reg, live); v != 0 {
		t.Fatalf("an unstaged volume still has %v live paths in the metrics", v)
	}
}
