//go:build vm

package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestHeldVGLockFailsOnlyThatCall: another program holds the volume group's LVM lock (as a
// stuck lvm command would). A CreateVolume on the lvm backend then fails within its deadline
// (DeadlineExceeded) instead of hanging, the agent keeps answering every call that needs no
// lvm command, and once the lock is free the retry succeeds.
func TestHeldVGLockFailsOnlyThatCall(t *testing.T) {
	const vg = "lockvg"
	loop := vmenv.ThinPool(t, vg, "2G")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	vmenv.StartAgent(t, fmt.Sprintf(`
nodeName: sn14
pool: {backend: lvm, volumeGroup: %s, thinPool: pool, devices: [%s]}
portals: [{id: 141, transport: tcp, address: 192.0.2.1, port: 4434}]
listen: unix://%s
`, vg, loop, sock))
	c := vmenv.Dial(t, "unix://"+sock, nil)
	ctx := vmenv.Context(t, 5*time.Minute)
	held, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "before", SizeBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}

	// LVM's file lock of the VG, held here (as a stuck lvm command holds it) until released.
	lock, err := os.OpenFile("/run/lock/lvm/V_"+vg, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	released := false
	unlock := func() {
		if !released {
			released = true
			lock.Close()
		}
	}
	t.Cleanup(unlock)

	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	start := time.Now()
	_, err = c.CreateVolume(callCtx, &agentapi.CreateVolumeRequest{Name: "during", SizeBytes: 64 << 20})
	cancel()
	took := time.Since(start)
	if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Unavailable {
		t.Fatalf("CreateVolume with the VG lock held: %v after %s; want DeadlineExceeded", err, took)
	}
	if took > 10*time.Second {
		t.Errorf("CreateVolume with the VG lock held took %s; want it to end with its 5 s deadline", took.Round(100*time.Millisecond))
	}
	t.Logf("CreateVolume with the VG lock held: %s after %s", status.Code(err), took.Round(100*time.Millisecond))

	// The rest of the agent answers meanwhile.
	for name, call := range map[string]func(context.Context) error{
		"GetVolume": func(ctx context.Context) error {
			_, err := c.GetVolume(ctx, &agentapi.GetVolumeRequest{Id: held.Volume.Id})
			return err
		},
		"ListVolumes": func(ctx context.Context) error {
			_, err := c.ListVolumes(ctx, &agentapi.ListVolumesRequest{})
			return err
		},
		"Info": func(ctx context.Context) error { _, err := c.Info(ctx, &agentapi.InfoRequest{}); return err },
	} {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		if err := call(cctx); err != nil {
			t.Errorf("%s with the VG lock held: %v", name, err)
		}
		ccancel()
	}

	unlock()
	waitFor(t, time.Minute, "CreateVolume once the lock is free", func() error {
		_, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "during", SizeBytes: 64 << 20})
		return err
	})
	for _, name := range []string{"before", "during"} {
		if _, err := c.DeleteVolume(ctx, &agentapi.DeleteVolumeRequest{Id: agentapi.VolumeID(name)}); err != nil {
			t.Fatal(err)
		}
	}
}
