//go:build vm

package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// The group snapshot API of external-snapshotter v8.7.0 (its CRDs serve v1, v1beta2 and
// v1beta1; the sidecar and snapshot-controller use v1).
var (
	volumeGroupSnapshots        = schema.GroupVersionResource{Group: "groupsnapshot.storage.k8s.io", Version: "v1", Resource: "volumegroupsnapshots"}
	volumeGroupSnapshotContents = schema.GroupVersionResource{Group: "groupsnapshot.storage.k8s.io", Version: "v1", Resource: "volumegroupsnapshotcontents"}
)

// groupVolumes are the application's three claims, in its write order.
var groupVolumes = []string{"vol0", "vol1", "vol2"}

// appScript is the application: it writes increasing sequence numbers to the three block
// devices, each write fsynced before the next, in the order vol0, vol1, vol2, then the next
// number; once a number is on all three it prints it. Each write is one 4 KiB block at offset
// 0, so the number on a device is the highest it holds.
const appScript = `i=0
while true; do
  i=$((i+1))
  for d in /dev/vol0 /dev/vol1 /dev/vol2; do
    printf '%020d\n' $i | dd of=$d bs=4096 count=1 conv=notrunc,sync,fsync 2>/dev/null || exit 1
  done
  echo $i
done`

// groupReadScript prints, for each restored device, its name and the number on it (0 when none
// was written: a new thin volume reads zeros).
const groupReadScript = `set -e
for d in vol0 vol1 vol2; do
  n=$(dd if=/dev/$d bs=4096 count=1 2>/dev/null | head -n 1 | tr -cd 0-9)
  echo "$d ${n:-0}"
done`

// TestGroupSnapshot: an application writes increasing sequence numbers to three block claims
// of one pod, each write fsynced before the next; a VolumeGroupSnapshot of the three (by label
// selector) taken while it writes, restored from its member VolumeSnapshots, shows the three
// at one instant: the numbers are a prefix of the write order (m0 ≥ m1 ≥ m2 ≥ m0−1), and m0 is
// at least what the application had written on all three before the snapshot was asked for.
// Once with the three volumes on one storage node (one write hold), once spread over two (a
// hold on each, then the snapshots: the two-phase group snapshot).
func TestGroupSnapshot(t *testing.T) {
	for _, layout := range []struct {
		name  string
		nodes [3]storageNode // where vol0, vol1 and vol2 are
	}{
		{"one storage node", [3]storageNode{storageA, storageA, storageA}},
		{"two storage nodes", [3]storageNode{storageA, storageB, storageA}},
	} {
		t.Run(layout.name, func(t *testing.T) { testGroupSnapshot(t, layout.nodes) })
	}
}

func testGroupSnapshot(t *testing.T, nodes [3]storageNode) {
	ctx := testContext(t, 25*time.Minute)
	ns := newNamespace(t, ctx, "group")
	// One class per storage node: nvmeof-tcp's parameters plus storageNodes.
	classes := map[string]string{}
	for _, n := range nodes {
		if _, ok := classes[n.name]; !ok {
			classes[n.name] = pinnedClass(t, ctx, ns, n)
		}
	}
	selector := map[string]string{"app": "seq-" + ns}
	for i, v := range groupVolumes {
		createPVC(t, ctx, ns, claim{name: v, storageClass: classes[nodes[i].name], size: "1Gi", block: true, labels: selector})
	}
	startPod(t, ctx, ns, blockPod("app", groupVolumes, groupVolumes, appScript))
	if err := poll(ctx, 3*time.Minute, func() (bool, string, error) {
		n, err := lastWritten(ctx, ns)
		return n >= 20, fmt.Sprintf("the application wrote %d (%v)", n, err), nil
	}); err != nil {
		t.Fatal(err)
	}

	before, err := lastWritten(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	vgs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "groupsnapshot.storage.k8s.io/v1",
		"kind":       "VolumeGroupSnapshot",
		"metadata":   map[string]any{"name": "group"},
		"spec": map[string]any{
			"volumeGroupSnapshotClassName": "nvmeof-group-snapshots",
			"source":                       map[string]any{"selector": map[string]any{"matchLabels": toAny(selector)}},
		},
	}}
	if _, err := k8s.Dynamic.Resource(volumeGroupSnapshots).Namespace(ns).Create(ctx, vgs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The group goes before the namespace (cleanups run last first): its members and their
	// contents with it, through the snapshot-controller and the sidecar.
	t.Cleanup(func() { deleteGroupSnapshot(t, ns, "group") })
	var contentName string
	if err := poll(ctx, 8*time.Minute, func() (bool, string, error) {
		g, err := k8s.Dynamic.Resource(volumeGroupSnapshots).Namespace(ns).Get(ctx, "group", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ready, _, _ := unstructured.NestedBool(g.Object, "status", "readyToUse")
		contentName, _, _ = unstructured.NestedString(g.Object, "status", "boundVolumeGroupSnapshotContentName")
		msg, _, _ := unstructured.NestedString(g.Object, "status", "error", "message")
		return ready, "group snapshot not ready " + msg, nil
	}); err != nil {
		t.Fatalf("%v\nevents:\n%s", err, events(ctx, ns, "group"))
	}
	ready := time.Since(start).Round(100 * time.Millisecond)
	after, err := lastWritten(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("the application wrote nothing while the group snapshot was taken (%d before, %d after)", before, after)
	}

	members := groupMembers(t, ctx, ns, "group", contentName)
	for i, v := range groupVolumes {
		m, ok := members[v]
		if !ok {
			t.Fatalf("no member snapshot of %s in group snapshot content %s: %v", v, contentName, members)
		}
		if node, _, ok := contract.ParseObjectID(m.handle, "snap"); !ok || node != nodes[i].name {
			t.Errorf("%s's member snapshot %s is on storage node %q, want %s", v, m.handle, node, nodes[i].name)
		}
	}
	// The application's work is done; the restore does not need it to compete for the CPUs.
	deletePod(t, ctx, ns, "app")

	apiGroup := "snapshot.storage.k8s.io"
	restored := make([]string, len(groupVolumes))
	for i, v := range groupVolumes {
		restored[i] = "restored-" + v
		createPVC(t, ctx, ns, claim{name: restored[i], storageClass: classes[nodes[i].name], size: "1Gi", block: true,
			source: &corev1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: members[v].snapshot}})
	}
	out := runPod(t, ctx, ns, blockPod("reader", restored, groupVolumes, groupReadScript))
	m, err := parseNumbers(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("group snapshot ready %s after it was asked for; the application had written %d on all three before, %d by the time it was ready; restored: vol0=%d vol1=%d vol2=%d (snapshots %s, %s, %s)",
		ready, before, after, m[0], m[1], m[2], members["vol0"].handle, members["vol1"].handle, members["vol2"].handle)
	if m[0] < m[1] || m[1] < m[2] || m[2] < m[0]-1 {
		t.Errorf("restored numbers %v are not a prefix of the write order (want m0 ≥ m1 ≥ m2 ≥ m0−1): the group snapshot is not crash consistent", m)
	}
	if m[0] < before {
		t.Errorf("restored vol0 has %d, but the application had written %d on all three before the group snapshot was asked for", m[0], before)
	}
	if m[0] > after+1 {
		t.Errorf("restored vol0 has %d, more than the application had written (%d) when the group snapshot was ready", m[0], after)
	}
}

// pinnedClass creates a StorageClass with the parameters of the example class nvmeof-tcp plus
// storageNodes: the storage node n; the test's cleanup deletes it.
func pinnedClass(t *testing.T, ctx context.Context, ns string, n storageNode) string {
	t.Helper()
	base, err := k8s.Client.StorageV1().StorageClasses().Get(ctx, "nvmeof-tcp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	params := maps.Clone(base.Parameters)
	params[contract.ParamStorageNodes] = n.name
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: ns + "-" + n.name},
		Provisioner:       base.Provisioner,
		Parameters:        params,
		ReclaimPolicy:     base.ReclaimPolicy,
		VolumeBindingMode: base.VolumeBindingMode,
	}
	if _, err := k8s.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k8s.Client.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	return sc.Name
}

// blockPod is a busybox pod running script once (restart policy Never) with the block claims
// as the devices /dev/<name>.
func blockPod(name string, claims, devices []string, script string) *corev1.Pod {
	grace := int64(1)
	ctr := corev1.Container{Name: "main", Image: busybox, Command: []string{"/bin/sh", "-c", script}}
	var vols []corev1.Volume
	for i, c := range claims {
		ctr.VolumeDevices = append(ctr.VolumeDevices, corev1.VolumeDevice{Name: devices[i], DevicePath: "/dev/" + devices[i]})
		vols = append(vols, corev1.Volume{Name: devices[i], VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c},
		}})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{ctr},
			Volumes:                       vols,
		},
	}
}

// lastWritten is the last number the application printed: the highest on all three devices.
func lastWritten(ctx context.Context, ns string) (int, error) {
	tail := int64(3)
	data, err := k8s.Client.CoreV1().Pods(ns).GetLogs("app", &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	lines := strings.Fields(string(data))
	for i := len(lines) - 1; i >= 0; i-- {
		if n, err := strconv.Atoi(lines[i]); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no number in the application's log: %q", data)
}

// parseNumbers reads the reader's "vol<i> <n>" lines into m[i].
func parseNumbers(out string) ([3]int, error) {
	var m [3]int
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		i := slices.Index(groupVolumes, f[0])
		n, err := strconv.Atoi(f[1])
		if i < 0 || err != nil {
			return m, fmt.Errorf("reader printed %q", line)
		}
		m[i] = n
		seen++
	}
	if seen != len(groupVolumes) {
		return m, fmt.Errorf("reader printed %d numbers, want %d:\n%s", seen, len(groupVolumes), out)
	}
	return m, nil
}

// member is a group snapshot's member: its VolumeSnapshot and the CSI snapshot ID.
type member struct{ snapshot, handle string }

// groupMembers finds, per source claim, the member VolumeSnapshot of a group snapshot, as a
// user restoring it does: the group's content lists a snapshot ID per volume ID (its
// volumeSnapshotInfoList); the claims' PVs give the volume IDs; and the member
// VolumeSnapshots (status.volumeGroupSnapshotName) are bound to the contents holding those
// snapshot IDs.
func groupMembers(t *testing.T, ctx context.Context, ns, group, contentName string) map[string]member {
	t.Helper()
	content, err := k8s.Dynamic.Resource(volumeGroupSnapshotContents).Get(ctx, contentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	infos, _, _ := unstructured.NestedSlice(content.Object, "status", "volumeSnapshotInfoList")
	snapOfVolume := map[string]string{}
	for _, i := range infos {
		info, _ := i.(map[string]any)
		vh, _ := info["volumeHandle"].(string)
		sh, _ := info["snapshotHandle"].(string)
		snapOfVolume[vh] = sh
	}
	if len(snapOfVolume) != len(groupVolumes) {
		t.Fatalf("group snapshot content %s lists %d snapshots, want %d: %v", contentName, len(snapOfVolume), len(groupVolumes), infos)
	}
	snapshotOfHandle := map[string]string{}
	if err := poll(ctx, 3*time.Minute, func() (bool, string, error) {
		list, err := k8s.Dynamic.Resource(volumeSnapshots).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		for _, s := range list.Items {
			g, _, _ := unstructured.NestedString(s.Object, "status", "volumeGroupSnapshotName")
			ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse")
			bound, _, _ := unstructured.NestedString(s.Object, "status", "boundVolumeSnapshotContentName")
			if g != group || !ready || bound == "" {
				continue
			}
			c, err := k8s.Dynamic.Resource(volumeSnapshotContents).Get(ctx, bound, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			h, _, _ := unstructured.NestedString(c.Object, "status", "snapshotHandle")
			snapshotOfHandle[h] = s.GetName()
		}
		return len(snapshotOfHandle) == len(groupVolumes), fmt.Sprintf("%d ready member VolumeSnapshots", len(snapshotOfHandle)), nil
	}); err != nil {
		t.Fatal(err)
	}
	out := map[string]member{}
	for _, v := range groupVolumes {
		pvc, err := k8s.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, v, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pv, err := k8s.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := snapOfVolume[pv.Spec.CSI.VolumeHandle]
		if s, ok := snapshotOfHandle[h]; ok {
			out[v] = member{snapshot: s, handle: h}
		}
	}
	return out
}

// deleteGroupSnapshot deletes a VolumeGroupSnapshot and waits until its content, and with it
// the member snapshots' contents, are gone.
func deleteGroupSnapshot(t *testing.T, ns, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g, err := k8s.Dynamic.Resource(volumeGroupSnapshots).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	} else if err != nil {
		t.Errorf("group snapshot %s: %v", name, err)
		return
	}
	content, _, _ := unstructured.NestedString(g.Object, "status", "boundVolumeGroupSnapshotContentName")
	if err := k8s.Dynamic.Resource(volumeGroupSnapshots).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete group snapshot %s: %v", name, err)
		return
	}
	if content == "" {
		return
	}
	if err := poll(ctx, 5*time.Minute, func() (bool, string, error) {
		_, err := k8s.Dynamic.Resource(volumeGroupSnapshotContents).Get(ctx, content, metav1.GetOptions{})
		return apierrors.IsNotFound(err), "group snapshot content " + content + " still there", nil
	}); err != nil {
		t.Errorf("group snapshot %s: %v", name, err)
	}
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
