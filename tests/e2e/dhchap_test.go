//go:build vm

package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nvmeof-csi/nvmeof-csi/tests/e2e/cluster"
)

// dhchapSecret makes a DH-HMAC-CHAP secret as nvme gen-dhchap-key does: 32 random bytes and
// their CRC-32, base64, in the DHHC-1 form with no transformation hash.
func dhchapSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32, 36)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	key = binary.LittleEndian.AppendUint32(key, crc32.ChecksumIEEE(key))
	return "DHHC-1:00:" + base64.StdEncoding.EncodeToString(key) + ":"
}

// TestDHCHAPStorageClass: a claim of the example class nvmeof-tcp-dhchap, whose Secret holds
// this node's host key and the storage nodes' key. The pods write and read their data over a
// connection the kernel authenticated both ways, and no key appears in the logs of the
// controller (its sidecars included), the node plugin or the agent, nor in the claim's events.
func TestDHCHAPStorageClass(t *testing.T) {
	ctx := testContext(t, 15*time.Minute)
	hostKey, ctrlKey := dhchapSecret(t), dhchapSecret(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "nvmeof-dhchap", Namespace: namespace},
		StringData: map[string]string{"host." + nodeName: hostKey, "ctrl": ctrlKey}}
	if _, err := k8s.Client.CoreV1().Secrets(namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Secret stays: the attacher needs it to detach, after the test's namespace is gone.
	_, _ = cluster.Run(ctx, "dmesg", "-C")

	ns := newNamespace(t, ctx, "chap")
	createPVC(t, ctx, ns, claim{name: "data", storageClass: "nvmeof-tcp-dhchap", size: "1Gi"})
	sum := strings.TrimSpace(runPod(t, ctx, ns, podSpec("writer", "data", false, corev1.RestartPolicyNever, writeScript)))
	pv := waitBound(t, ctx, ns, "data")
	got := strings.TrimSpace(runPod(t, ctx, ns, podSpec("reader", "data", false, corev1.RestartPolicyNever, readScript)))
	if got != sum || len(sum) != 32 {
		t.Fatalf("the reader read checksum %q, the writer wrote %q", got, sum)
	}
	klog, err := cluster.Run(ctx, "dmesg")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(klog, "controller authenticated") || !strings.Contains(klog, "with DH-HMAC-CHAP") {
		t.Fatalf("the kernel logged no bidirectional DH-HMAC-CHAP authentication:\n%s", klog)
	}
	t.Logf("16 MiB written and read back over NVMe/TCP authenticated both ways (md5 %s)", sum)

	// Every log of the run, and the claim's events: no key.
	var logs strings.Builder
	for _, sel := range []string{"app.kubernetes.io/component=controller", "app.kubernetes.io/component=node", "app.kubernetes.io/component=agent"} {
		out, err := k8s.Kubectl(ctx, "-n", namespace, "logs", "-l", sel, "--all-containers", "--tail=-1", "--prefix")
		if err != nil {
			t.Fatal(err)
		}
		logs.WriteString(out)
	}
	logs.WriteString(events(ctx, ns, "data"))
	if logs.Len() == 0 {
		t.Fatal("no logs read: the check below would prove nothing")
	}
	for what, k := range map[string]string{"host key": hostKey, "controller key": ctrlKey} {
		if strings.Contains(logs.String(), strings.Split(k, ":")[2]) {
			t.Errorf("the %s appears in the logs or events", what)
		}
	}

	// The claim goes, and with its volume's publication the node's key on the storage node:
	// the next tests' classes have no Secret.
	if err := k8s.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 5*time.Minute, func() (bool, string, error) {
		_, err := k8s.Client.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
		return apierrors.IsNotFound(err), "PV " + pv + " still there", nil
	}); err != nil {
		t.Fatal(err)
	}
}
