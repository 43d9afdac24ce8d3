//go:build vm

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
)

// TestNothingLeft runs last (file order): after every scenario and the external suite deleted
// what they made, the cluster and the node hold no volume, no snapshot, no attachment; the
// agent's pool no volume or snapshot; and the kernel no thin device of the pool, no NVMe-oF
// subsystem, no NVMe controller and no mount of one.
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
	t.Log("no PV, VolumeAttachment or VolumeSnapshotContent; no volume or snapshot in the pool, no thin device, no subsystem, no NVMe controller, no mount")
}

// guestLeftovers lists what the driver left on the node: every volume and snapshot of the
// agent's pool, every device-mapper device of the pool but the pool's own and every device
// node the agent made for one, every nvmet subsystem and NVMe controller (the VM has no
// others), and every mount in the kubelet's CSI directories (staging, block publish, and the
// pods' volumes).
func guestLeftovers() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	left := poolLeftovers(ctx)
	h, err := inventory.Take(ctx, inventory.Scope{
		MountDirs: []string{
			"/var/lib/kubelet/plugins/kubernetes.io/csi",
			"/var/lib/kubelet/pods/*/volumes/kubernetes.io~csi",
		},
	})
	left = append(left, h.Items()...)
	if err != nil {
		left = append(left, err.Error())
	}
	return left
}

// poolDevices are the device-mapper devices of the pool itself (pkg/pool/dmthin: "# Devices
// in the kernel"); any other device named after the pool is a thin device.
var poolDevices = map[string]bool{poolName + "-pool": true, poolName + "-pool_tmeta": true, poolName + "-pool_tdata": true}

// poolLeftovers lists what the pool holds besides itself: the volumes and snapshots the
// agent's API reports (its own records), the thin devices active in the kernel, and the
// device nodes under the agent's node directory.
func poolLeftovers(ctx context.Context) []string {
	var left []string
	vols, snaps, err := agentInventory(ctx)
	if err != nil {
		left = append(left, "agent: "+err.Error())
	}
	for _, v := range vols {
		left = append(left, fmt.Sprintf("volume %s (%s)", v.GetId(), v.GetName()))
	}
	for _, s := range snaps {
		left = append(left, fmt.Sprintf("snapshot %s (%s)", s.GetId(), s.GetName()))
	}
	c, err := dm.Open()
	if err != nil {
		return append(left, err.Error())
	}
	defer c.Close()
	devs, err := c.List(poolName + "-")
	if err != nil {
		left = append(left, err.Error())
	}
	for _, d := range devs {
		if !poolDevices[d.Name] {
			left = append(left, "device-mapper device "+d.Name)
		}
	}
	dir := filepath.Join(dmthin.DefaultNodeDir, poolName)
	nodes, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		left = append(left, err.Error())
	}
	for _, n := range nodes {
		left = append(left, "device node "+filepath.Join(dir, n.Name()))
	}
	return left
}

// agentInventory asks the agent, as the controller does (its client certificate, the agents'
// server name), for every volume and snapshot of its pool.
func agentInventory(ctx context.Context) ([]*agentapi.Volume, []*agentapi.Snapshot, error) {
	agent, closeAgent, err := agentClient()
	if err != nil {
		return nil, nil, err
	}
	defer closeAgent()
	vols, err := agent.ListVolumes(ctx, &agentapi.ListVolumesRequest{})
	if err != nil {
		return nil, nil, err
	}
	snaps, err := agent.ListSnapshots(ctx, &agentapi.ListSnapshotsRequest{})
	if err != nil {
		return nil, nil, err
	}
	return vols.GetVolumes(), snaps.GetSnapshots(), nil
}
