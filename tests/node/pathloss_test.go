//go:build vm

package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
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

	fioCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	fio := exec.CommandContext(fioCtx, "fio", "--name=verify", "--filename="+target,
		"--rw=randwrite", "--bs=4k", "--size=64M", "--ioengine=libaio", "--iodepth=8", "--direct=1",
		"--verify=crc32c", "--verify_backlog=512", "--verify_fatal=1",
		"--time_based", "--runtime=45")
	fio.Env = append(os.Environ(), "LC_ALL=C")
	var out strings.Builder
	fio.Stdout, fio.Stderr = &out, &out
	must(t, "start fio", fio.Start())
	fioDone := make(chan error, 1)
	go func() { fioDone <- fio.Wait() }()

	time.Sleep(3 * time.Second)
	cut := time.Now()
	nft(t, "add table inet nodetest")
	nft(t, "add chain inet nodetest out { type filter hook output priority 0 ; policy accept ; }")
	nft(t, fmt.Sprintf("add rule inet nodetest out ip daddr %s tcp dport 4420 drop", vmtest.PortalB))
	nft(t, fmt.Sprintf("add rule inet nodetest out ip saddr %s tcp sport 4420 drop", vmtest.PortalB))
	restored := false
	restore := func() {
		if !restored {
			restored = true
			nft(t, "delete table inet nodetest")
		}
	}
	t.Cleanup(restore)

	waitPath(t, e, v, vmtest.PortalB, false, 45*time.Second)
	t.Logf("path to %s down after %s", vmtest.PortalB, time.Since(cut).Round(100*time.Millisecond))
	wantHealth(t, e, v, csi.VolumeHealthErrorType_DEGRADED)
	time.Sleep(5 * time.Second) // I/O runs on the remaining path
	restore()
	back := time.Now()
	waitPath(t, e, v, vmtest.PortalB, true, 45*time.Second)
	t.Logf("path to %s live again after %s", vmtest.PortalB, time.Since(back).Round(100*time.Millisecond))
	wantHealth(t, e, v, csi.VolumeHealthErrorType_UNKNOWN_VOLUME_HEALTH_TYPE)

	if err := <-fioDone; err != nil {
		t.Fatalf("fio: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "err= 0") {
		t.Fatalf("fio reported errors:\n%s", out.String())
	}
	t.Logf("fio: %s", fioSummary(out.String()))
	must(t, "unpublish", e.unpublish(ctx, v, target))
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
}

func nft(t *testing.T, rule string) {
	t.Helper()
	vmenv.Run(t, "nft", strings.Fields(rule)...)
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

// fioSummary picks fio's write and verify (read) lines.
func fioSummary(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "write: IOPS=") || strings.HasPrefix(l, "read: IOPS=") || strings.Contains(l, "err=") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, " | ")
}
