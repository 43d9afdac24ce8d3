//go:build vm

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/tests/e2e/cluster"
)

// poll calls f every two seconds until it is done, fails, or timeout passes; the error then
// carries f's last word on what it is waiting for.
func poll(ctx context.Context, timeout time.Duration, f func() (done bool, waiting string, err error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, waiting, err := f()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %s: %s", timeout, waiting)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), waiting)
		case <-time.After(2 * time.Second):
		}
	}
}

// snapshotMetadataCA is the CA (PEM) that issued the external-snapshot-metadata sidecar's
// serving certificate (createTLSSecrets); setSnapshotMetadataCA puts it into the
// SnapshotMetadataService object.
var snapshotMetadataCA []byte

// The sidecar's Service, as the snapshot-metadata component names it.
const (
	snapshotMetadataService = "nvmeof-csi-snapshot-metadata"
	snapshotMetadataSecret  = "nvmeof-csi-snapshot-metadata-tls"
)

// controllerTLS is the controller's client certificate (createTLSSecrets keeps a copy), with
// which the test asks the agent what its pool holds.
var controllerTLS mtls.Files

// createTLSSecrets issues the agents' server certificate (for the name nvmeof-agent) and the
// controller's client certificate from one CA, as deploy/README.md ("mTLS") tells operators.
// The files stay in a temporary directory of the guest, for controllerTLS.
func createTLSSecrets(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "nvmeof-tls-")
	if err != nil {
		return err
	}
	ca, err := cluster.NewPKI(dir, "nvmeof-csi-ca")
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(ca.CAFile())
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := k8s.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for secret, cn := range map[string]string{"nvmeof-agent-tls": "nvmeof-agent", "nvmeof-csi-controller-tls": "nvmeof-csi-controller"} {
		certFile, keyFile, err := ca.Issue(cn, []string{cn}, nil)
		if err != nil {
			return err
		}
		cert, err := os.ReadFile(certFile)
		if err != nil {
			return err
		}
		key, err := os.ReadFile(keyFile)
		if err != nil {
			return err
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: namespace},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": caPEM},
		}
		if _, err := k8s.Client.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		if secret == "nvmeof-csi-controller-tls" {
			controllerTLS = mtls.Files{Cert: certFile, Key: keyFile, CA: ca.CAFile()}
		}
	}
	// The external-snapshot-metadata sidecar's serving certificate, for the names of its
	// Service (the SnapshotMetadataService's address is <service>.<namespace>:<port>), from a
	// CA of its own: backup tools trust it through the object's caCert, nothing else.
	cbtDir := filepath.Join(dir, "snapshot-metadata")
	cbtCA, err := cluster.NewPKI(cbtDir, "nvmeof-csi-snapshot-metadata-ca")
	if err != nil {
		return err
	}
	host := snapshotMetadataService + "." + namespace
	certFile, keyFile, err := cbtCA.Issue(snapshotMetadataService, []string{host, host + ".svc", host + ".svc.cluster.local"}, nil)
	if err != nil {
		return err
	}
	data := map[string][]byte{}
	for k, f := range map[string]string{"tls.crt": certFile, "tls.key": keyFile, "ca.crt": cbtCA.CAFile()} {
		if data[k], err = os.ReadFile(f); err != nil {
			return err
		}
	}
	snapshotMetadataCA = data["ca.crt"]
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: snapshotMetadataSecret, Namespace: namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       data,
	}
	if _, err := k8s.Client.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

var snapshotMetadataServices = schema.GroupVersionResource{Group: "cbt.storage.k8s.io", Version: "v1beta1", Resource: "snapshotmetadataservices"}

// setSnapshotMetadataCA sets the SnapshotMetadataService's caCert (base64 of the PEM bundle,
// as the CRD's format: byte has it) to the CA of the sidecar's certificate.
func setSnapshotMetadataCA(ctx context.Context) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"caCert": snapshotMetadataCA}})
	if err != nil {
		return err
	}
	_, err = k8s.Dynamic.Resource(snapshotMetadataServices).Patch(ctx, driverName, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// testContext is bounded by d and ends with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace creates a namespace for one test and deletes it, waiting until it is gone
// (its pods and claims with it), when the test ends.
func newNamespace(t *testing.T, ctx context.Context, prefix string) string {
	t.Helper()
	ns, err := k8s.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The service account admission needs the namespace's default ServiceAccount.
	if err := poll(ctx, 2*time.Minute, func() (bool, string, error) {
		_, err := k8s.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, "no default ServiceAccount yet", nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := k8s.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
			return
		}
		if err := poll(ctx, 5*time.Minute, func() (bool, string, error) {
			_, err := k8s.Client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), "namespace " + ns.Name + " still terminating", nil
		}); err != nil {
			t.Errorf("namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

type claim struct {
	name, storageClass, size string
	block                    bool
	access                   corev1.PersistentVolumeAccessMode
	source                   *corev1.TypedLocalObjectReference
	labels                   map[string]string
}

func createPVC(t *testing.T, ctx context.Context, ns string, c claim) *corev1.PersistentVolumeClaim {
	t.Helper()
	mode := corev1.PersistentVolumeFilesystem
	if c.block {
		mode = corev1.PersistentVolumeBlock
	}
	access := c.access
	if access == "" {
		access = corev1.ReadWriteOnce
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: c.name, Labels: c.labels},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &c.storageClass,
			AccessModes:      []corev1.PersistentVolumeAccessMode{access},
			VolumeMode:       &mode,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(c.size)}},
			DataSource:       c.source,
		},
	}
	out, err := k8s.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// podSpec is a busybox pod running script with the claim at /data (or, for a block claim, as
// the device /dev/xvda).
func podSpec(name, pvc string, block bool, restart corev1.RestartPolicy, script string) *corev1.Pod {
	grace := int64(1)
	ctr := corev1.Container{
		Name:    "main",
		Image:   busybox,
		Command: []string{"/bin/sh", "-c", script},
	}
	if block {
		ctr.VolumeDevices = []corev1.VolumeDevice{{Name: "vol", DevicePath: "/dev/xvda"}}
	} else {
		ctr.VolumeMounts = []corev1.VolumeMount{{Name: "vol", MountPath: "/data"}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{ctr},
			Volumes: []corev1.Volume{{Name: "vol", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc},
			}}},
		},
	}
}

// runPod runs a pod to completion and returns its log; it fails the test unless the pod
// succeeds. The pod is deleted (and gone) before runPod returns.
func runPod(t *testing.T, ctx context.Context, ns string, pod *corev1.Pod) string {
	t.Helper()
	if _, err := k8s.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	err := poll(ctx, 6*time.Minute, func() (bool, string, error) {
		p, err := k8s.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, "pod " + pod.Name + " is " + describePod(p), nil
	})
	logs := podLogs(ctx, ns, pod.Name)
	if err != nil {
		t.Fatalf("%v\nevents:\n%s", err, events(ctx, ns, pod.Name))
	}
	if phase != corev1.PodSucceeded {
		t.Fatalf("pod %s %s; log:\n%s", pod.Name, phase, logs)
	}
	deletePod(t, ctx, ns, pod.Name)
	return logs
}

// startPod starts a long-running pod and waits until it runs.
func startPod(t *testing.T, ctx context.Context, ns string, pod *corev1.Pod) {
	t.Helper()
	if _, err := k8s.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitRunning(ctx, ns, pod.Name, 6*time.Minute); err != nil {
		t.Fatal(err)
	}
}

func waitRunning(ctx context.Context, ns, name string, timeout time.Duration) error {
	err := poll(ctx, timeout, func() (bool, string, error) {
		p, err := k8s.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, "", fmt.Errorf("pod %s ended: %s; log:\n%s", name, p.Status.Phase, podLogs(ctx, ns, name))
		}
		return p.Status.Phase == corev1.PodRunning, "pod " + name + " is " + describePod(p), nil
	})
	if err != nil {
		return fmt.Errorf("%w\nevents:\n%s", err, events(ctx, ns, name))
	}
	return nil
}

// deletePod deletes a pod and waits until it is gone, its volumes unmounted.
func deletePod(t *testing.T, ctx context.Context, ns, name string) {
	t.Helper()
	if err := k8s.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if err := poll(ctx, 4*time.Minute, func() (bool, string, error) {
		_, err := k8s.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), "pod " + name + " still terminating", nil
	}); err != nil {
		t.Fatal(err)
	}
}

func describePod(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s += fmt.Sprintf(" (%s: %s)", c.Type, c.Message)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf(" (%s: %s %s)", cs.Name, w.Reason, w.Message)
		}
	}
	return s
}

func podLogs(ctx context.Context, ns, name string) string {
	data, err := k8s.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(data)
}

// events lists the events of one object, oldest first.
func events(ctx context.Context, ns, name string) string {
	list, err := k8s.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", e.Type, e.Reason, e.Source.Component, e.Message)
	}
	return b.String()
}

// waitBound waits for a claim to be bound and returns its volume's name.
func waitBound(t *testing.T, ctx context.Context, ns, name string) string {
	t.Helper()
	var volume string
	if err := poll(ctx, 5*time.Minute, func() (bool, string, error) {
		pvc, err := k8s.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		volume = pvc.Spec.VolumeName
		return pvc.Status.Phase == corev1.ClaimBound, "claim " + name + " is " + string(pvc.Status.Phase), nil
	}); err != nil {
		t.Fatalf("%v\nevents:\n%s", err, events(ctx, ns, name))
	}
	return volume
}

var volumeSnapshots = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
var volumeSnapshotContents = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
