//go:build vm

package node

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// TestOnlineExpansionOfAMountedVolume grows the backing device on the target while the
// volume is staged and published, has nvmet revalidate the namespace, and expects
// NodeExpandVolume to bring the mounted file system (seen through the pod's mount) to the new
// size.
func TestOnlineExpansionOfAMountedVolume(t *testing.T) {
	for _, fsType := range []string{"ext4", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			e := newEnv(t)
			v := e.newVolume(512, tcpA, tcpB)
			c := fsCap(fsType)
			ctx := vmenv.Context(t, 3*time.Minute)
			must(t, "stage", e.stage(ctx, v, c))
			target := filepath.Join(e.dir, "pod", "mount")
			must(t, "publish", e.publish(ctx, v, c, target))
			before := fsSize(t, target)
			writeSynced(t, filepath.Join(target, "before"), randomBytes(t, 1<<20))

			v.grow(t, 1024)
			start := time.Now()
			resp, err := e.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{
				VolumeId: v.ID, VolumePath: target, StagingTargetPath: e.stagingPath(v),
				CapacityRange: &csi.CapacityRange{RequiredBytes: 1024 << 20}, VolumeCapability: c,
			})
			must(t, "expand", err)
			t.Logf("NodeExpandVolume %s: %s", fsType, time.Since(start).Round(time.Millisecond))
			if resp.GetCapacityBytes() != 1024<<20 {
				t.Errorf("capacity %d, want 1 GiB", resp.GetCapacityBytes())
			}
			after := fsSize(t, target)
			t.Logf("%s: %d MiB before, %d MiB after", fsType, before>>20, after>>20)
			if after < before+400<<20 {
				t.Errorf("file system is %d bytes after expansion, was %d: not grown to the device", after, before)
			}
			writeSynced(t, filepath.Join(target, "after"), randomBytes(t, 1<<20))
			// Expansion is idempotent.
			_, err = e.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{
				VolumeId: v.ID, VolumePath: target, CapacityRange: &csi.CapacityRange{RequiredBytes: 1024 << 20},
			})
			must(t, "expand again", err)
			must(t, "unpublish", e.unpublish(ctx, v, target))
			must(t, "unstage", e.unstage(ctx, v))
			e.assertGone(v)
		})
	}
}

// fsSize is the size of the file system holding path, as df reports it.
func fsSize(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	must(t, "statfs", unix.Statfs(path, &st))
	return int64(st.Blocks) * st.Bsize
}
