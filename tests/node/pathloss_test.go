//go:build vm

package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestCuttingOnePathKeepsIOGoing runs an fio verify job on a raw block volume with two
// NVMe/TCP paths (round-robin I/O, so both carry I/O), drops all traffic of one portal with
// nftables, then lets it through again. fio must see no error, the node must report the
// volume DEGRADED while the path is down, and the path must come back.
func TestCuttingOnePathKeepsIOGoing(t *testing.T) {
	e := newEnv(t)
	v := e.newVolume(128, tcpA, tcpB)
	c := blockCap()
	ctx := vmenv.Context(t, 4*time.Minute)
	must(t, "stage", e.stage(ctx, v, c))
	target := filepath.Join(e.dir, "publish", "fio")
	must(t, "publish", e.publish(ctx, v, c, target))
	setIOPolicy(t, v.NQN, "round-robin")

	fio := vmenv.StartFioVerify(t, ctx, 45*time.Second, target)

	time.Sleep(3 * time.Second)
	cut := time.Now()
	restore := vmenv.CutNVMeTCP(t, "nodetest", 4420, vmtest.PortalB)

	waitPath(t, e, v, vmtest.PortalB, false, 45*time.Second)
	t.Logf("path to %s down after %s", vmtest.PortalB, time.Since(cut).Round(100*time.Millisecond))
	wantHealth(t, e, v, csi.VolumeHealthErrorType_DEGRADED)
	time.Sleep(5 * time.Second) // I/O runs on the remaining path
	restore()
	back := time.Now()
	waitPath(t, e, v, vmtest.PortalB, true, 45*time.Second)
	t.Logf("path to %s live again after %s", vmtest.PortalB, time.Since(back).Round(100*time.Millisecond))
	wantHealth(t, e, v, csi.VolumeHealthErrorType_UNKNOWN_VOLUME_HEALTH_TYPE)

	t.Logf("fio: %s", fio())
	must(t, "unpublish", e.unpublish(ctx, v, target))
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
}

// waitPath waits until the controller to addr is live (or not live).
func waitPath(t *testing.T, e *env, v *volume, addr string, live bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctrls, err := e.in.Controllers(v.NQN)
		must(t, "controllers", err)
		for _, c := range ctrls {
			if c.Address == addr && (c.State == "live") == live {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("path to %s not live=%t within %s: %+v", addr, live, d, ctrls)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantHealth checks the node's health report: status UNKNOWN_VOLUME_HEALTH_TYPE means none.
func wantHealth(t *testing.T, e *env, v *volume, status csi.VolumeHealthErrorType) {
	t.Helper()
	resp, err := e.node.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: v.ID})
	must(t, "health", err)
	got := resp.GetVolumeHealth().GetHealthStatuses()
	if status == csi.VolumeHealthErrorType_UNKNOWN_VOLUME_HEALTH_TYPE {
		if len(got) != 0 {
			t.Errorf("health %v, want none", got)
		}
		return
	}
	if len(got) != 1 || got[0].GetStatus() != status {
		t.Errorf("health %v, want %s", got, status)
		return
	}
	t.Logf("health: %s %s: %s", got[0].GetStatus(), got[0].GetReason(), got[0].GetMessage())
}

// setIOPolicy sets the native multipath I/O policy of the subsystem nqn.
func setIOPolicy(t *testing.T, nqn, policy string) {
	t.Helper()
	dirs, _ := filepath.Glob("/sys/class/nvme-subsystem/*")
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "subsysnqn"))
		if err == nil && strings.TrimSpace(string(raw)) == nqn {
			must(t, "iopolicy", os.WriteFile(filepath.Join(d, "iopolicy"), []byte(policy), 0))
			return
		}
	}
	t.Fatalf("no nvme-subsystem for %s", nqn)
}

// TestAllPathsDownAMinuteThenBack (fault suite 1): every path of a mounted ext4 volume is cut
// for 60 s while fio writes and verifies through it, then restored. Native multipath queues
// the I/O while the controllers reconnect (ctrl_loss_tmo 180 s, as a StorageClass would set
// for outages this long): the application's writes stall and resume, fio reports no error,
// the file system stays read-write, and the kernel logs no I/O or file-system error.
func TestAllPathsDownAMinuteThenBack(t *testing.T) {
	e := newEnv(t)
	v := e.newVolume(256, tcpA, tcpB)
	c := fsCap("ext4")
	ctx := vmenv.Context(t, 8*time.Minute)
	must(t, "stage", e.stageWith(ctx, v, c, map[string]string{contract.ParamCtrlLossTmo: "180", contract.ParamReconnectDelay: "2", contract.ParamKeepAliveTmo: "5"}))
	target := filepath.Join(e.dir, "publish", "app")
	must(t, "publish", e.publish(ctx, v, c, target))
	_, _ = vmenv.RunE("dmesg", "-C")

	fio := vmenv.StartFioVerify(t, ctx, 100*time.Second, filepath.Join(target, "fio.dat"))

	time.Sleep(5 * time.Second)
	restore := vmenv.CutNVMeTCP(t, "outage", 4420, vmtest.PortalA, vmtest.PortalB)
	waitPath(t, e, v, vmtest.PortalA, false, 45*time.Second)
	waitPath(t, e, v, vmtest.PortalB, false, 45*time.Second)
	wantHealth(t, e, v, csi.VolumeHealthErrorType_INACCESSIBLE)
	time.Sleep(60 * time.Second)
	restore()
	back := time.Now()
	waitPath(t, e, v, vmtest.PortalA, true, 60*time.Second)
	waitPath(t, e, v, vmtest.PortalB, true, 60*time.Second)
	t.Logf("all paths down for 60 s; both live again %s after the network came back", time.Since(back).Round(100*time.Millisecond))

	t.Logf("fio: %s", fio())
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	must(t, "mountinfo", err)
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 5 && (f[4] == target || f[4] == e.stagingPath(v)) && !strings.HasPrefix(f[5], "rw") {
			t.Errorf("%s is mounted %s after the outage; want rw", f[4], f[5])
		}
	}
	klog, _ := vmenv.RunE("dmesg")
	for _, bad := range []string{"EXT4-fs error", "Buffer I/O error", "I/O error, dev nvme"} {
		if strings.Contains(klog, bad) {
			t.Errorf("the kernel logged %q during the outage:\n%s", bad, klog)
		}
	}
	must(t, "unpublish", e.unpublish(ctx, v, target))
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
}
