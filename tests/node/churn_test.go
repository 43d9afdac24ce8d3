//go:build vm

package node

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// churnIterations is how many stage/unstage cycles TestStageUnstageChurn runs:
// NVMEOF_NODE_CHURN, else 200 (fault suite 4: attach/detach churn ×200).
func churnIterations(t *testing.T) int {
	if v := os.Getenv("NVMEOF_NODE_CHURN"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("NVMEOF_NODE_CHURN=%q", v)
		}
		return n
	}
	return 200
}

// TestStageUnstageChurn (fault suite 4) stages and unstages one filesystem volume over two
// paths 200 times (tns-csi#204 corrupted ext4 this way). After every unstage no controller may
// be left in sysfs and nothing mounted; the data written in the first cycle must survive them
// all, and fsck finds the file system clean.
func TestStageUnstageChurn(t *testing.T) {
	e := newEnv(t)
	v := e.newVolume(64, tcpA, tcpB)
	c := fsCap("ext4")
	n := churnIterations(t)
	ctx := vmenv.Context(t, time.Duration(n)*30*time.Second+time.Minute)
	data := randomBytes(t, 256<<10)
	var total, slowest, staging time.Duration
	for i := range n {
		start := time.Now()
		must(t, "stage", e.stage(ctx, v, c))
		staging += time.Since(start)
		file := filepath.Join(e.stagingPath(v), "data")
		if i == 0 {
			writeSynced(t, file, data)
		} else if got, err := os.ReadFile(file); err != nil || string(got) != string(data) {
			t.Fatalf("iteration %d: data read back %d bytes, %v", i, len(got), err)
		}
		must(t, "unstage", e.unstage(ctx, v))
		d := time.Since(start)
		total += d
		slowest = max(slowest, d)
		if ctrls, err := e.in.Controllers(v.NQN); err != nil || len(ctrls) != 0 {
			t.Fatalf("iteration %d: controllers left after unstage: %+v, %v", i, ctrls, err)
		}
		if m := mountsUnder(t, e.dir); len(m) != 0 {
			t.Fatalf("iteration %d: mounts left after unstage: %v", i, m)
		}
	}
	avg := func(d time.Duration) time.Duration { return (d / time.Duration(n)).Round(time.Millisecond) }
	t.Logf("%d stage/unstage cycles: %s in all, %s per cycle on average (stage %s, unstage %s), slowest %s",
		n, total.Round(time.Millisecond), avg(total), avg(staging), avg(total-staging), slowest.Round(time.Millisecond))
	vmenv.Run(t, "fsck.ext4", "-n", "-f", v.Loop)
}

// TestUnstageFailsWhileAControllerCannotBeRemoved makes the kernel keep a controller (its
// delete_controller attribute is shadowed by a bind mount, so the write deletes nothing) and
// expects NodeUnstageVolume to report an error that makes kubelet retry, keeping the stash,
// until the controller can go; then the retry succeeds.
func TestUnstageFailsWhileAControllerCannotBeRemoved(t *testing.T) {
	e := newEnv(t)
	v := e.newVolume(64, tcpA)
	ctx := vmenv.Context(t, 2*time.Minute)
	must(t, "stage", e.stage(ctx, v, fsCap("ext4")))
	ctrls, err := e.in.Controllers(v.NQN)
	if err != nil || len(ctrls) != 1 {
		t.Fatalf("controllers %+v, %v", ctrls, err)
	}
	attr := filepath.Join("/sys/class/nvme", ctrls[0].Name, "delete_controller")
	decoy := filepath.Join(e.dir, "decoy")
	must(t, "decoy", os.WriteFile(decoy, nil, 0o600))
	vmenv.Run(t, "mount", "--bind", decoy, attr)
	shadowed := true
	t.Cleanup(func() {
		if shadowed {
			vmenv.RunE("umount", attr)
		}
	})

	uctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err = e.unstage(uctx, v)
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("unstage with an undeletable controller: %v, want Unavailable", err)
	}
	t.Logf("unstage refused: %v", err)
	if left, _ := e.in.Controllers(v.NQN); len(left) != 1 {
		t.Fatalf("controllers %+v, want the one that cannot go", left)
	}
	if m := mountsUnder(t, e.stagingPath(v)); len(m) != 0 {
		t.Errorf("staging path still mounted: %v", m)
	}

	vmenv.Run(t, "umount", attr)
	shadowed = false
	must(t, "retry", e.unstage(ctx, v))
	e.assertGone(v)
}
