//go:build vm

package agent_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/internal/blocktest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// seqSlots is how many 4 KiB slots of each volume the sequence writer cycles through.
const seqSlots = 256

// seqWriter is the application of the group snapshot tests: one writer that writes sequence
// number n to every volume in turn, each write acknowledged (O_DIRECT|O_DSYNC) before the
// next is issued, then n+1. Its writes are thus causally ordered — (n, vol 0) before
// (n, vol 1) … before (n+1, vol 0) — and a crash-consistent image of the volumes holds a
// prefix of that order: volume by volume, the highest numbers m0 ≥ m1 ≥ … ≥ m0-1.
type seqWriter struct {
	files []*os.File
	seq   atomic.Int64 // the last number written to every volume
	// window, when not 0, is the UnixNano from which writes count for maxStall.
	window   atomic.Int64
	maxStall atomic.Int64
	stop     chan struct{}
	done     chan error
}

func startSeqWriter(t *testing.T, devs []string) *seqWriter {
	t.Helper()
	w := &seqWriter{stop: make(chan struct{}), done: make(chan error, 1)}
	for _, d := range devs {
		f, err := os.OpenFile(d, os.O_RDWR|unix.O_DIRECT|unix.O_DSYNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.files = append(w.files, f)
	}
	go func() { w.done <- w.run() }()
	t.Cleanup(func() { w.halt(t) })
	return w
}

func (w *seqWriter) run() error {
	buf := blocktest.Aligned(blocktest.BlockSize)
	for n := int64(1); ; n++ {
		select {
		case <-w.stop:
			return nil
		default:
		}
		binary.LittleEndian.PutUint64(buf, uint64(n))
		for i, f := range w.files {
			start := time.Now()
			if _, err := f.WriteAt(buf, (n%seqSlots)*blocktest.BlockSize); err != nil {
				return fmt.Errorf("write %d to volume %d: %w", n, i, err)
			}
			if from := w.window.Load(); from != 0 && start.UnixNano() >= from {
				d := int64(time.Since(start))
				for {
					old := w.maxStall.Load()
					if d <= old || w.maxStall.CompareAndSwap(old, d) {
						break
					}
				}
			}
		}
		w.seq.Store(n)
	}
}

// measure starts counting the longest write from now on.
func (w *seqWriter) measure() {
	w.maxStall.Store(0)
	w.window.Store(time.Now().UnixNano())
}

func (w *seqWriter) stall() time.Duration { return time.Duration(w.maxStall.Load()) }

// waitPast waits until the writer has written beyond n (it makes progress).
func (w *seqWriter) waitPast(t *testing.T, n int64, what string) {
	t.Helper()
	waitFor(t, 30*time.Second, what, func() error {
		if got := w.seq.Load(); got <= n {
			return fmt.Errorf("writer at %d", got)
		}
		return nil
	})
}

func (w *seqWriter) halt(t *testing.T) {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	if err := <-w.done; err != nil {
		t.Errorf("sequence writer: %v", err)
	}
	for _, f := range w.files {
		_ = f.Close()
	}
}

// highest returns the highest sequence number on a device.
func highest(t *testing.T, dev string) int64 {
	t.Helper()
	b := blocktest.Read(t, dev, 0, seqSlots*blocktest.BlockSize)
	var m int64
	for i := range seqSlots {
		m = max(m, int64(binary.LittleEndian.Uint64(b[i*blocktest.BlockSize:])))
	}
	return m
}

// groupEnv is a CSI controller (with its group controller) over two dm-thin storage nodes,
// and a host connected to volumes on them.
type groupEnv struct {
	names [2]string // the storage nodes' names
	nodes map[string]*storageNode
	// published are the volumes published to the host (node and agent ID), unpublished at
	// the end so that the pools' devices can go.
	published [][2]string
	ctrl      csi.ControllerClient
	group     csi.GroupControllerClient
	in        *nvme.Initiator
	host      nvme.Identity
	ctx       context.Context
}

// newGroupEnv starts storage nodes <prefix>1 and <prefix>2 on ports port and port+1.
func newGroupEnv(t *testing.T, prefix string, id uint16, port int) *groupEnv {
	t.Helper()
	e := &groupEnv{nodes: map[string]*storageNode{}, in: &nvme.Initiator{}, host: newHost(t), ctx: vmenv.Context(t, 15*time.Minute)}
	cfg := "storageNodes:\n"
	for i := range e.names {
		e.names[i] = fmt.Sprintf("%s%d", prefix, i+1)
		sn := startStorageNode(t, e.names[i], id+uint16(i), port+i)
		e.nodes[e.names[i]] = sn
		cfg += sn.yaml()
	}
	t.Cleanup(func() { // before the storage nodes stop, after the host disconnected
		ctx := vmenv.Context(t, time.Minute)
		for _, p := range e.published {
			c := vmenv.Dial(t, "unix://"+e.nodes[p[0]].sock, nil)
			if _, err := c.UnpublishVolume(ctx, &agentapi.UnpublishVolumeRequest{VolumeId: p[1], HostNqn: e.host.HostNQN}); err != nil {
				t.Errorf("unpublish %s: %v", p[1], err)
			}
		}
	})
	nodesFile := filepath.Join(t.TempDir(), "storage-nodes.yaml")
	if err := os.WriteFile(nodesFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	conn := vmenv.StartPlugin(t, plugin.Options{
		Mode: plugin.ModeController, StorageNodes: nodesFile, AgentTimeout: 30 * time.Second, ProbeTimeout: 5 * time.Second,
	})
	e.ctrl, e.group = csi.NewControllerClient(conn), csi.NewGroupControllerClient(conn)
	return e
}

var blockRWO = []*csi.VolumeCapability{{
	AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}}

// volume creates a 64 MiB block volume on a storage node (from a snapshot if src is set) and
// returns its CSI ID.
func (e *groupEnv) volume(t *testing.T, name, node, src string) string {
	t.Helper()
	req := &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
		Parameters: map[string]string{"storageNodes": node}, VolumeCapabilities: blockRWO}
	if src != "" {
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: src}}}
	}
	var id string
	waitFor(t, time.Minute, "CreateVolume "+name, func() error {
		resp, err := e.ctrl.CreateVolume(e.ctx, req)
		id = resp.GetVolume().GetVolumeId()
		return err
	})
	return id
}

// connect publishes a volume to the host and returns its namespace device.
func (e *groupEnv) connect(t *testing.T, volumeID string) string {
	t.Helper()
	node, agentID, ok := contract.ParseObjectID(volumeID, "vol")
	if !ok {
		t.Fatalf("volume ID %q", volumeID)
	}
	c := vmenv.Dial(t, "unix://"+e.nodes[node].sock, nil)
	pub := publishTo(t, c, agentID, e.host, "app")
	e.published = append(e.published, [2]string{node, agentID})
	return connect(t, e.in, e.host, pub)
}

// TestGroupSnapshotsAreCrashConsistent: an application writes increasing sequence numbers to
// three volumes, each write acknowledged before the next; group snapshots taken while it
// writes, restored, show the three volumes at one instant — never a number on one volume
// that the write order says must be on another and is not — with the three volumes on one
// storage node, then spread over two. The longest write stall the application saw during
// each group snapshot is the write-hold time it pays.
func TestGroupSnapshotsAreCrashConsistent(t *testing.T) {
	e := newGroupEnv(t, "gs", 151, 4440)
	a, b := e.names[0], e.names[1]
	for _, layout := range []struct {
		name  string
		nodes [3]string
	}{
		{"one storage node", [3]string{a, a, a}},
		{"two storage nodes", [3]string{a, b, a}},
	} {
		t.Run(layout.name, func(t *testing.T) {
			tag := map[bool]string{true: "one", false: "two"}[layout.nodes[1] == a]
			var vols, devs []string
			for i, node := range layout.nodes {
				id := e.volume(t, fmt.Sprintf("%s-app-%d", tag, i), node, "")
				vols = append(vols, id)
				devs = append(devs, e.connect(t, id))
			}
			w := startSeqWriter(t, devs)
			w.waitPast(t, 50, "the application writes")
			var stalls, calls []time.Duration
			for round := range 4 {
				before := w.seq.Load()
				w.measure()
				start := time.Now()
				resp, err := e.group.CreateVolumeGroupSnapshot(e.ctx, &csi.CreateVolumeGroupSnapshotRequest{
					Name: fmt.Sprintf("%s-group-%d", tag, round), SourceVolumeIds: vols})
				took := time.Since(start)
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				after := w.seq.Load()
				w.waitPast(t, after, "the application writes on after the group snapshot")
				stalls, calls = append(stalls, w.stall()), append(calls, took)
				members := map[string]string{} // source → snapshot
				for _, s := range resp.GroupSnapshot.Snapshots {
					members[s.SourceVolumeId] = s.SnapshotId
				}
				var m []int64
				for i, v := range vols {
					snap, ok := members[v]
					if !ok {
						t.Fatalf("round %d: no member of %s in %v", round, v, resp.GroupSnapshot.Snapshots)
					}
					restored := e.volume(t, fmt.Sprintf("%s-restore-%d-%d", tag, round, i), layout.nodes[i], snap)
					m = append(m, highest(t, e.connect(t, restored)))
				}
				t.Logf("round %d: highest numbers %v (writer at %d before the call, %d after); call %v, longest write %v",
					round, m, before, after, took.Round(time.Millisecond), w.stall().Round(time.Millisecond))
				if m[0] < before || m[0] > after+1 {
					t.Errorf("round %d: volume 0 holds %d, outside what was written around the call (%d..%d)", round, m[0], before, after+1)
				}
				for i := 1; i < len(m); i++ {
					if m[i] > m[i-1] || m[i] < m[0]-1 {
						t.Errorf("round %d: not one instant: volume %d holds %d after volume %d's %d (all: %v)", round, i, m[i], i-1, m[i-1], m)
					}
				}
				if _, err := e.group.DeleteVolumeGroupSnapshot(e.ctx, &csi.DeleteVolumeGroupSnapshotRequest{
					GroupSnapshotId: resp.GroupSnapshot.GroupSnapshotId}); err != nil {
					t.Fatal(err)
				}
			}
			w.halt(t)
			t.Logf("GROUP-SNAPSHOT %s: longest application write during each call %v; calls took %v", layout.name, stalls, calls)
		})
	}
}

// TestWriteHoldEndsWithoutTheController: a storage node's write hold (phase one of a group
// snapshot across nodes) ends by itself at its timeout when no phase two comes, as when the
// controller dies between the phases: the application's writes resume, and a late phase two
// is refused (Aborted) without making a snapshot.
func TestWriteHoldEndsWithoutTheController(t *testing.T) {
	e := newGroupEnv(t, "gh", 153, 4442)
	node := e.names[1]
	vol := e.volume(t, "held", node, "")
	w := startSeqWriter(t, []string{e.connect(t, vol)})
	w.waitPast(t, 50, "the application writes")
	_, agentID, _ := contract.ParseObjectID(vol, "vol")
	c := vmenv.Dial(t, "unix://"+e.nodes[node].sock, nil)
	const timeout = 2 * time.Second
	w.measure()
	if _, err := c.HoldWrites(e.ctx, &agentapi.HoldWritesRequest{HoldId: "orphan", VolumeIds: []string{agentID}, TimeoutMs: timeout.Milliseconds()}); err != nil {
		t.Fatal(err)
	}
	at := w.seq.Load()
	time.Sleep(timeout / 2)
	if got := w.seq.Load(); got > at+1 {
		t.Errorf("writes went on during the hold: %d → %d", at, got)
	}
	w.waitPast(t, at+1, "the application writes after the hold's timeout")
	t.Logf("HOLD-BOUND: the application's longest write while a hold of %v was left to expire: %v", timeout, w.stall().Round(time.Millisecond))
	_, err := c.CreateGroupSnapshot(e.ctx, &agentapi.CreateGroupSnapshotRequest{GroupId: agentapi.GroupSnapshotID("late"), HoldId: "orphan",
		Members: []*agentapi.GroupMember{{Name: "late/" + agentID, SourceVolumeId: agentID}}})
	if status.Code(err) != codes.Aborted {
		t.Errorf("phase two after the hold expired: %v, want Aborted", err)
	}
	snaps, err := c.ListSnapshots(e.ctx, &agentapi.ListSnapshotsRequest{})
	if err != nil || len(snaps.Snapshots) != 0 {
		t.Errorf("snapshots after a refused phase two: %v, %v", snaps, err)
	}
	w.halt(t)
}
