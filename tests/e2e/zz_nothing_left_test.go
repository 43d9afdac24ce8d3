//go:build vm

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
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

// guestLeftovers lists what the driver left in the node's kernel: every LV of the volume group
// but the pool, every nvmet subsystem and NVMe controller (the VM has no others), and every
// mount in the kubelet's CSI directories (staging, block publish, and the pods' volumes).
func guestLeftovers() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := inventory.Take(ctx, inventory.Scope{
		Pool: &lvm.Pool{VG: vgName, ThinPool: "pool", Runner: command.Exec{}, ExtraConfig: lvm.DeviceFilter(poolDevice)},
		MountDirs: []string{
			"/var/lib/kubelet/plugins/kubernetes.io/csi",
			"/var/lib/kubelet/pods/*/volumes/kubernetes.io~csi",
		},
	})
	left := h.Items()
	if err != nil {
		left = append(left, err.Error())
	}
	return left
}
