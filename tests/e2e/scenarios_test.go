//go:build vm

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// The scenarios a platform team runs through, each through the real API with the example
// StorageClasses of deploy/kubernetes/examples: claim, pod, kubelet mount, data.

// writeScript writes 16 MiB of random data and prints its checksum; readScript checks it.
const (
	writeScript = `set -e; dd if=/dev/urandom of=/data/blob bs=1M count=16 2>/dev/null; md5sum /data/blob > /data/blob.md5; sync; cut -d' ' -f1 /data/blob.md5`
	readScript  = `set -e; md5sum -c -s /data/blob.md5; md5sum /data/blob | cut -d' ' -f1`
)

// TestPersistenceTCP: StorageClass nvmeof-tcp → PVC → a pod writes data → the pod is replaced
// → the data is still there.
func TestPersistenceTCP(t *testing.T) { testPersistence(t, "nvmeof-tcp") }

// TestPersistenceRDMA: the same over NVMe/RDMA (Soft-RoCE in the VM).
func TestPersistenceRDMA(t *testing.T) { testPersistence(t, "nvmeof-rdma") }

func testPersistence(t *testing.T, class string) {
	ctx := testContext(t, 15*time.Minute)
	ns := newNamespace(t, ctx, "persist")
	createPVC(t, ctx, ns, claim{name: "data", storageClass: class, size: "1Gi"})
	sum := strings.TrimSpace(runPod(t, ctx, ns, podSpec("writer", "data", false, corev1.RestartPolicyNever, writeScript)))
	pv := waitBound(t, ctx, ns, "data")
	got := strings.TrimSpace(runPod(t, ctx, ns, podSpec("reader", "data", false, corev1.RestartPolicyNever, readScript)))
	if got != sum || len(sum) != 32 {
		t.Fatalf("the replacement pod read checksum %q, the writer wrote %q", got, sum)
	}
	t.Logf("%s: volume %s kept 16 MiB (md5 %s) across pods", class, pv, sum)
}

// TestSnapshotRestoreAndClone: a VolumeSnapshot of a claim with data, restored into a new claim,
// and a clone of the claim: both have the data.
func TestSnapshotRestoreAndClone(t *testing.T) {
	ctx := testContext(t, 20*time.Minute)
	ns := newNamespace(t, ctx, "snap")
	createPVC(t, ctx, ns, claim{name: "source", storageClass: "nvmeof-tcp", size: "1Gi"})
	sum := strings.TrimSpace(runPod(t, ctx, ns, podSpec("writer", "source", false, corev1.RestartPolicyNever, writeScript)))

	t.Run("VolumeSnapshot restored into a new PVC has the data", func(t *testing.T) {
		snap := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "snapshot.storage.k8s.io/v1",
			"kind":       "VolumeSnapshot",
			"metadata":   map[string]any{"name": "snap"},
			"spec": map[string]any{
				"volumeSnapshotClassName": "nvmeof-snapshots",
				"source":                  map[string]any{"persistentVolumeClaimName": "source"},
			},
		}}
		if _, err := k8s.Dynamic.Resource(volumeSnapshots).Namespace(ns).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := poll(ctx, 5*time.Minute, func() (bool, string, error) {
			s, err := k8s.Dynamic.Resource(volumeSnapshots).Namespace(ns).Get(ctx, "snap", metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse")
			msg, _, _ := unstructured.NestedString(s.Object, "status", "error", "message")
			return ready, "snapshot not ready " + msg, nil
		}); err != nil {
			t.Fatalf("%v\nevents:\n%s", err, events(ctx, ns, "snap"))
		}
		apiGroup := "snapshot.storage.k8s.io"
		createPVC(t, ctx, ns, claim{name: "restored", storageClass: "nvmeof-tcp", size: "1Gi",
			source: &corev1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: "snap"}})
		got := strings.TrimSpace(runPod(t, ctx, ns, podSpec("restored-reader", "restored", false, corev1.RestartPolicyNever, readScript)))
		if got != sum {
			t.Fatalf("restored claim has checksum %q, the source had %q", got, sum)
		}
	})

	t.Run("PVC clone has the data", func(t *testing.T) {
		createPVC(t, ctx, ns, claim{name: "clone", storageClass: "nvmeof-tcp", size: "1Gi",
			source: &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "source"}})
		got := strings.TrimSpace(runPod(t, ctx, ns, podSpec("clone-reader", "clone", false, corev1.RestartPolicyNever, readScript)))
		if got != sum {
			t.Fatalf("clone has checksum %q, the source had %q", got, sum)
		}
	})
}

// TestOnlineExpansion: a claim expanded while its pod runs; the pod sees the bigger file system.
func TestOnlineExpansion(t *testing.T) {
	ctx := testContext(t, 15*time.Minute)
	ns := newNamespace(t, ctx, "expand")
	createPVC(t, ctx, ns, claim{name: "data", storageClass: "nvmeof-tcp", size: "1Gi"})
	// The pod prints the file system's size in KiB every second.
	startPod(t, ctx, ns, podSpec("app", "data", false, corev1.RestartPolicyAlways,
		`while true; do df -Pk /data | awk 'NR==2 {print "size", $2}'; sleep 1; done`))
	before, err := lastSize(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}`)
	if _, err := k8s.Client.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "data", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	want := resource.MustParse("3Gi")
	if err := poll(ctx, 8*time.Minute, func() (bool, string, error) {
		pvc, err := k8s.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		got := pvc.Status.Capacity[corev1.ResourceStorage]
		return got.Cmp(want) >= 0, "claim capacity " + got.String(), nil
	}); err != nil {
		t.Fatalf("%v\nevents:\n%s", err, events(ctx, ns, "data"))
	}
	var after int64
	if err := poll(ctx, 3*time.Minute, func() (bool, string, error) {
		after, err = lastSize(ctx, ns)
		return err == nil && after > 2*1024*1024, fmt.Sprintf("file system in the pod is %d KiB", after), err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("file system in the running pod grew from %d KiB to %d KiB", before, after)
}

// lastSize is the last size the expansion pod printed.
func lastSize(ctx context.Context, ns string) (int64, error) {
	logs := podLogs(ctx, ns, "app")
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(lines[i], "size "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no size in the pod's log: %q", logs)
}

// TestRawBlock: a raw block claim; data written to the device by one pod is read back by the
// next.
func TestRawBlock(t *testing.T) {
	ctx := testContext(t, 15*time.Minute)
	ns := newNamespace(t, ctx, "block")
	createPVC(t, ctx, ns, claim{name: "dev", storageClass: "nvmeof-tcp", size: "1Gi", block: true})
	sum := strings.TrimSpace(runPod(t, ctx, ns, podSpec("writer", "dev", true, corev1.RestartPolicyNever,
		`set -e; dd if=/dev/urandom of=/tmp/r bs=1M count=8 2>/dev/null; dd if=/tmp/r of=/dev/xvda bs=1M conv=fsync 2>/dev/null; md5sum /tmp/r | cut -d' ' -f1`)))
	got := strings.TrimSpace(runPod(t, ctx, ns, podSpec("reader", "dev", true, corev1.RestartPolicyNever,
		`set -e; dd if=/dev/xvda bs=1M count=8 2>/dev/null | md5sum | cut -d' ' -f1`)))
	if got != sum || len(sum) != 32 {
		t.Fatalf("the device read back %q, the writer wrote %q", got, sum)
	}
}

// TestReadWriteOncePod: a second pod on a ReadWriteOncePod claim is not scheduled while the
// first runs, and runs once the first is gone.
func TestReadWriteOncePod(t *testing.T) {
	ctx := testContext(t, 15*time.Minute)
	ns := newNamespace(t, ctx, "rwop")
	createPVC(t, ctx, ns, claim{name: "data", storageClass: "nvmeof-tcp", size: "1Gi", access: corev1.ReadWriteOncePod})
	startPod(t, ctx, ns, podSpec("first", "data", false, corev1.RestartPolicyAlways, `touch /data/first; exec sleep 3600`))
	second := podSpec("second", "data", false, corev1.RestartPolicyAlways, `ls /data/first && exec sleep 3600`)
	if _, err := k8s.Client.CoreV1().Pods(ns).Create(ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 3*time.Minute, func() (bool, string, error) {
		p, err := k8s.Client.CoreV1().Pods(ns).Get(ctx, "second", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if p.Spec.NodeName != "" {
			return false, "", fmt.Errorf("second pod scheduled to %s while the first uses the ReadWriteOncePod claim", p.Spec.NodeName)
		}
		return strings.Contains(events(ctx, ns, "second"), "ReadWriteOncePod"), "no FailedScheduling event naming ReadWriteOncePod yet", nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("second pod held back:\n%s", events(ctx, ns, "second"))
	deletePod(t, ctx, ns, "first")
	if err := waitRunning(ctx, ns, "second", 6*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestOverCapacity: a claim larger than the storage node can hold stays Pending, and its
// events say why.
func TestOverCapacity(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	ns := newNamespace(t, ctx, "capacity")
	// Immediate binding: the provisioner tries at once (with WaitForFirstConsumer the
	// scheduler's capacity check keeps the pod, not the claim, pending).
	immediate := storagev1.VolumeBindingImmediate
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: ns},
		Provisioner:       driverName,
		Parameters:        map[string]string{"transport": "tcp"},
		VolumeBindingMode: &immediate,
	}
	if _, err := k8s.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Client.StorageV1().StorageClasses().Delete(ctx, sc.Name, metav1.DeleteOptions{}) })
	createPVC(t, ctx, ns, claim{name: "huge", storageClass: sc.Name, size: "100Ti"})
	var msg string
	if err := poll(ctx, 5*time.Minute, func() (bool, string, error) {
		msg = events(ctx, ns, "huge")
		return strings.Contains(msg, "ProvisioningFailed") && strings.Contains(msg, "ResourceExhausted"), "no ProvisioningFailed event yet:\n" + msg, nil
	}); err != nil {
		t.Fatal(err)
	}
	pvc, err := k8s.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "huge", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" {
		t.Fatalf("over-capacity claim is %s, bound to %q", pvc.Status.Phase, pvc.Spec.VolumeName)
	}
	t.Logf("claim stays Pending; events:\n%s", msg)
}
