//go:build vm

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
)

// TestNothingLeft runs last (file order): after every scenario and the external suite deleted
// what they made, the cluster and the node hold no volume, no snapshot, no attachment, and the
// kernel no LV but the pool, no NVMe-oF subsystem, no NVMe controller and no mount of one.
func TestNothingLeft(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	err := poll(ctx, 8*time.Minute, func() (bool, string, error) {
		pvs, err := k8s.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		vas, err := k8s.Client.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		contents, err := k8s.Dynamic.Resource(volumeSnapshotContents).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		left := guestLeftovers()
		waiting := fmt.Sprintf("%d PersistentVolumes, %d VolumeAttachments, %d VolumeSnapshotContents; node: %s",
			len(pvs.Items), len(vas.Items), len(contents.Items), strings.Join(left, "; "))
		return len(pvs.Items) == 0 && len(vas.Items) == 0 && len(contents.Items) == 0 && len(left) == 0, waiting, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("no PV, VolumeAttachment or VolumeSnapshotContent; no LV but the pool, no subsystem, no NVMe controller, no mount")
}

// guestLeftovers lists what the driver left in the node's kernel.
func guestLeftovers() []string {
	var left []string
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The thin LVs of the pool, from the project's own lvm package (a JSON report).
	pool := &lvm.Pool{VG: vgName, ThinPool: "pool", Runner: command.Exec{}, ExtraConfig: lvm.DeviceFilter(poolDevice)}
	lvs, err := pool.List(ctx)
	if err != nil {
		left = append(left, err.Error())
	}
	for _, lv := range lvs {
		left = append(left, "LV "+lv.Name)
	}
	subs, _ := os.ReadDir("/sys/kernel/config/nvmet/subsystems")
	for _, s := range subs {
		left = append(left, "subsystem "+s.Name())
	}
	ctrls, _ := filepath.Glob("/sys/class/nvme/nvme*")
	for _, c := range ctrls {
		left = append(left, "controller "+filepath.Base(c))
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		left = append(left, err.Error())
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, "/dev/nvme") || strings.Contains(line, "kubernetes.io/csi") || strings.Contains(line, "kubernetes.io~csi") {
			left = append(left, "mount "+line)
		}
	}
	return left
}
