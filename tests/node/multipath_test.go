//go:build vm

package node

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	csinode "github.com/nvmeof-csi/nvmeof-csi/pkg/csi/node"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestTwoPortalsStageOneMultipathHead stages a volume exported on two NVMe/TCP portals: both
// paths connect, and the kernel merges them into a single head device, which is what gets
// formatted and mounted.
func TestTwoPortalsStageOneMultipathHead(t *testing.T) {
	e := newEnv(t)
	if !e.in.MultipathEnabled() {
		t.Fatal("native NVMe multipath is off in the guest; this test needs the kernel default")
	}
	v := e.newVolume(64, tcpA, tcpB)
	ctx := vmenv.Context(t, 2*time.Minute)
	must(t, "stage", e.stage(ctx, v, fsCap("ext4")))

	ctrls, err := e.in.Controllers(v.NQN)
	must(t, "controllers", err)
	if len(ctrls) != 2 || ctrls[0].Address == ctrls[1].Address {
		t.Fatalf("controllers %+v, want one per portal", ctrls)
	}
	for _, c := range ctrls {
		if c.HostNQN != e.id.HostNQN || c.HostID != e.id.HostID {
			t.Errorf("%s connected as %s/%s, want the node's identity", c.Name, c.HostNQN, c.HostID)
		}
	}
	head, err := e.in.FindNamespace(v.NQN, v.UUID)
	must(t, "find namespace", err)
	var heads, paths []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		heads, paths, err = e.in.NamespaceDevices(v.UUID)
		must(t, "namespace devices", err)
		if len(paths) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(heads) != 1 || "/dev/"+heads[0] != head || len(paths) != 2 {
		t.Fatalf("visible %v, hidden paths %v; want the head %s and two paths", heads, paths, head)
	}
	// The staging mount is on the head.
	mnt := mountsUnder(t, e.stagingPath(v))
	if len(mnt) != 1 {
		t.Fatalf("staging mounts %v", mnt)
	}
	src := mountSource(t, e.stagingPath(v))
	if src != head {
		t.Errorf("staging path mounted from %s, want the head %s", src, head)
	}
	h, err := e.node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v.ID, StagingTargetPath: e.stagingPath(v)})
	must(t, "health", err)
	if s := h.GetVolumeHealth().GetHealthStatuses(); len(s) != 0 {
		t.Errorf("healthy volume reports %v", s)
	}
	t.Logf("head %s, paths %v, controllers %s and %s", head, paths, ctrls[0].Name, ctrls[1].Name)
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
	if heads, paths, err := e.in.NamespaceDevices(v.UUID); err != nil || len(heads)+len(paths) != 0 {
		t.Errorf("after unstage: devices %v, paths %v remain (%v)", heads, paths, err)
	}
}

// mountSource returns the source device of the mount at path, from /proc/self/mountinfo.
func mountSource(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	must(t, "mountinfo", err)
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != path {
			continue
		}
		for i, x := range f {
			if x == "-" && i+2 < len(f) {
				return f[i+2]
			}
		}
	}
	return ""
}

// TestHealReconnectsADroppedPathWhileMounted: a path of a mounted volume is deleted, as the
// kernel deletes a controller after ctrl_loss_tmo; the node's healer connects it again, the
// multipath head keeps its mount, and the health report goes from degraded to healthy.
func TestHealReconnectsADroppedPathWhileMounted(t *testing.T) {
	e := newEnv(t)
	v := e.newVolume(64, tcpA, tcpB)
	ctx := vmenv.Context(t, 2*time.Minute)
	must(t, "stage", e.stage(ctx, v, fsCap("ext4")))
	ctrls, err := e.in.Controllers(v.NQN)
	must(t, "controllers", err)
	if len(ctrls) != 2 {
		t.Fatalf("controllers %+v, want two", ctrls)
	}
	must(t, "drop a path", e.in.DeleteControllers(ctx, v.NQN, []string{ctrls[1].Name}))
	health := func() []*csi.VolumeHealth_VolumeHealthEntry {
		h, err := e.node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v.ID, StagingTargetPath: e.stagingPath(v)})
		must(t, "health", err)
		return h.GetVolumeHealth().GetHealthStatuses()
	}
	if left, _ := e.in.Controllers(v.NQN); len(left) != 1 {
		t.Fatalf("controllers after dropping one: %+v", left)
	}
	if s := health(); len(s) != 1 || s[0].GetReason() != csinode.ReasonPathMissing {
		t.Errorf("health with a path dropped: %v, want %s", s, csinode.ReasonPathMissing)
	}

	start := time.Now()
	done := e.node.Heal(ctx)
	t.Logf("healed in %v: %v", time.Since(start).Round(time.Millisecond), done)
	after, err := e.in.Controllers(v.NQN)
	must(t, "controllers", err)
	if len(after) != 2 || after[0].Address == after[1].Address {
		t.Fatalf("controllers after healing %+v, want one per portal again", after)
	}
	if len(done) != 1 {
		t.Errorf("the healer reported %v, want one reconnect", done)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(health()) != 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if s := health(); len(s) != 0 {
		t.Errorf("health after healing: %v", s)
	}
	if mnt := mountsUnder(t, e.stagingPath(v)); len(mnt) != 1 {
		t.Errorf("staging mounts after healing: %v", mnt)
	}
	if again := e.node.Heal(ctx); len(again) != 0 {
		t.Errorf("a second round did %v on a healthy volume", again)
	}
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
}
