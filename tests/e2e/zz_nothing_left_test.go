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
// what they made, the cluster and the node hold no volume, no snapshot or group snapshot, no
// attachment; the storage nodes' pools no volume or snapshot; and the kernel no thin device of
// a pool, no NVMe-oF subsystem, no NVMe controller and no mount of one.
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
		groups, err := k8s.Dynamic.Resource(volumeGroupSnapshotContents).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		left := guestLeftovers()
		waiting := fmt.Sprintf("%d PersistentVolumes, %d VolumeAttachments, %d VolumeSnapshotContents, %d VolumeGroupSnapshotContents; node: %s",
			len(pvs.Items), len(vas.Items), len(contents.Items), len(groups.Items), strings.Join(left, "; "))
		return len(pvs.Items) == 0 && len(vas.Items) == 0 && len(contents.Items) == 0 && len(groups.Items) == 0 && len(left) == 0, waiting, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("no PV, VolumeAttachment, VolumeSnapshotContent or VolumeGroupSnapshotContent; no volume or snapshot in either pool, no thin device, no subsystem, no NVMe controller, no mount")
}

// guestLeftovers lists what the driver left on the node: every volume and snapshot of each
// storage node's pool, every device-mapper device of a pool but the pool's own and every
// device node an agent made for one, every nvmet subsystem and NVMe controller (the VM has no
// others), and every mount in the kubelet's CSI directories (staging, block publish, and the
// pods' volumes).
func guestLeftovers() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var left []string
	for _, n := range storageNodes {
		left = append(left, poolLeftovers(ctx, n)...)
	}
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

// poolLeftovers lists what a storage node's pool holds besides itself: the volumes and
// snapshots the agent's API reports (its own records), the thin devices active in the kernel,
// and the device nodes under the agent's node directory.
func poolLeftovers(ctx context.Context, n storageNode) []string {
	var left []string
	vols, snaps, err := agentInventory(ctx, n)
	if err != nil {
		left = append(left, n.name+": agent: "+err.Error())
	}
	for _, v := range vols {
		left = append(left, fmt.Sprintf("%s: volume %s (%s)", n.name, v.GetId(), v.GetName()))
	}
	for _, s := range snaps {
		left = append(left, fmt.Sprintf("%s: snapshot %s (%s)", n.name, s.GetId(), s.GetName()))
	}
	c, err := dm.Open()
	if err != nil {
		return append(left, err.Error())
	}
	defer c.Close()
	// The device-mapper devices of the pool itself (pkg/pool/dmthin: "# Devices in the
	// kernel"); any other device named after the pool is a thin device.
	pool := n.pool()
	own := map[string]bool{pool + "-pool": true, pool + "-pool_tmeta": true, pool + "-pool_tdata": true}
	devs, err := c.List(pool + "-")
	if err != nil {
		left = append(left, err.Error())
	}
	for _, d := range devs {
		if !own[d.Name] {
			left = append(left, "device-mapper device "+d.Name)
		}
	}
	dir := filepath.Join(dmthin.DefaultNodeDir, pool)
	nodes, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		left = append(left, err.Error())
	}
	for _, n := range nodes {
		left = append(left, "device node "+filepath.Join(dir, n.Name()))
	}
	return left
}

// agentInventory asks a storage node's agent, as the controller does (its client certificate,
// the agents' server name), for every volume and snapshot of its pool.
func agentInventory(ctx context.Context, n storageNode) ([]*agentapi.Volume, []*agentapi.Snapshot, error) {
	agent, closeAgent, err := agentClient(n)
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
