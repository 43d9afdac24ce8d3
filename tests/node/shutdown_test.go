//go:build vm

package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestShutdownReleaseBoundsUnmount: a worker shuts down while a mounted volume's storage is
// unreachable (every path cut) and its ctrl_loss_tmo is 600 s, with unwritten data in the page
// cache. After what the shutdown unit runs (nvmeof-csi --release-paths: nvme.ReleaseTimeouts),
// the shutdown's unmounts end within 30 s instead of waiting out the ten minutes.
func TestShutdownReleaseBoundsUnmount(t *testing.T) {
	e := newEnv(t)
	v := e.newVolume(128, tcpA, tcpB)
	c := fsCap("ext4")
	ctx := vmenv.Context(t, 5*time.Minute)
	must(t, "stage", e.stageWith(ctx, v, c, map[string]string{contract.ParamCtrlLossTmo: "600", contract.ParamReconnectDelay: "2", contract.ParamKeepAliveTmo: "5"}))
	target := filepath.Join(e.dir, "publish", "app")
	must(t, "publish", e.publish(ctx, v, c, target))
	// Data the application wrote and the kernel has not written back yet.
	must(t, "write", os.WriteFile(filepath.Join(target, "unsynced"), randomBytes(t, 16<<20), 0o644))

	vmenv.CutNVMeTCP(t, "shutdown", 4420, vmtest.PortalA, vmtest.PortalB)
	waitPath(t, e, v, vmtest.PortalA, false, 45*time.Second)
	waitPath(t, e, v, vmtest.PortalB, false, 45*time.Second)

	start := time.Now()
	changed, err := e.in.ReleaseTimeouts(prefix, 5)
	must(t, "release", err)
	if len(changed) != 2 {
		t.Fatalf("released %v; want the volume's two controllers", changed)
	}
	uctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, mnt := range []string{target, e.stagingPath(v)} {
		if out, err := exec.CommandContext(uctx, "umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount %s after %s: %v\n%s", mnt, time.Since(start).Round(100*time.Millisecond), err, out)
		}
	}
	took := time.Since(start)
	if took > 30*time.Second {
		t.Errorf("the unmounts ended %s after the release; want within 30 s", took.Round(100*time.Millisecond))
	}
	t.Logf("storage unreachable, ctrl_loss_tmo 600 s: unmounts done %s after --release-paths (ctrl_loss_tmo 5 s)", took.Round(100*time.Millisecond))
	waitFor := func() error {
		ctrls, err := e.in.Controllers(v.NQN)
		if err != nil || len(ctrls) > 0 {
			return fmt.Errorf("controllers %v (%v)", ctrls, err)
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for err := waitFor(); err != nil; err = waitFor() {
		if time.Now().After(deadline) {
			t.Fatalf("the released controllers are still there: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	must(t, "unstage", e.unstage(ctx, v))
}
