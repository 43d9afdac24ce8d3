//go:build vm

package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestStageWithoutNativeMultipathUsesOnePath reloads nvme_core with multipath=N (and back
// afterwards), which needs a quiet kernel, and stages a volume exported on two portals: the
// node connects a single path and mounts that controller's own namespace device.
func TestStageWithoutNativeMultipathUsesOnePath(t *testing.T) {
	if ctrls, err := (&nvme.Initiator{}).Controllers(""); err != nil || len(ctrls) != 0 {
		t.Fatalf("controllers left by other tests: %+v, %v", ctrls, err)
	}
	vmenv.ReloadNVMe(t, "N")
	t.Cleanup(func() { vmenv.ReloadNVMe(t, "Y") }) // runs last, once the target is gone
	e := newEnv(t)
	if e.in.MultipathEnabled() {
		t.Fatal("MultipathEnabled after loading nvme_core multipath=N")
	}
	v := e.newVolume(64, tcpA, tcpB)
	ctx := vmenv.Context(t, 2*time.Minute)
	must(t, "stage", e.stage(ctx, v, fsCap("ext4")))
	ctrls, err := e.in.Controllers(v.NQN)
	must(t, "controllers", err)
	if len(ctrls) != 1 {
		t.Fatalf("controllers %+v, want a single path", ctrls)
	}
	src := mountSource(t, e.stagingPath(v))
	if !strings.HasPrefix(src, "/dev/"+ctrls[0].Name+"n") {
		t.Errorf("staging path mounted from %s, want %s's namespace", src, ctrls[0].Name)
	}
	data := randomBytes(t, 64<<10)
	writeSynced(t, filepath.Join(e.stagingPath(v), "data"), data)
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
	must(t, "restage", e.stage(ctx, v, fsCap("ext4")))
	got, err := os.ReadFile(filepath.Join(e.stagingPath(v), "data"))
	if err != nil || string(got) != string(data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	must(t, "unstage", e.unstage(ctx, v))
	e.assertGone(v)
}
