//go:build vm

package e2e

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/e2e/cluster"
)

// The one node: worker and storage node at once, on the portal address of the test VM.
const (
	nodeName   = "nvmeof-e2e"
	driverName = "nvmeof.csi.io"
	namespace  = "nvmeof-csi"
	// Workload image (hack/build-images.sh): static busybox.
	busybox = "nvmeof-csi.test/busybox:1"
)

// storageNode is one storage node of the e2e overlay (deploy/kubernetes/overlays/e2e): its
// agent's API address and the two devices of its dm-thin pool, as its agent configuration
// names them.
type storageNode struct {
	name, address              string
	metadataDevice, dataDevice string
}

// pool is what the agent names the pool's device-mapper devices and its directory of device
// nodes (under /dev/nvmeof) after.
func (n storageNode) pool() string { return "nvmeof-" + n.name }

// The storage nodes: the Kubernetes node's own, and a second one (agent-b.yaml) on the VM's
// second address, so that volumes span two storage nodes as they would two hosts. Neither
// name starts with the other followed by a dash: each agent names its device-mapper devices
// nvmeof-<storage node>-..., and the pools' names must not nest.
var (
	storageA     = storageNode{nodeName, net.JoinHostPort(vmtest.PortalA, "9500"), "/dev/loop0", "/dev/loop1"}
	storageB     = storageNode{"storage-b", net.JoinHostPort(vmtest.PortalB, "9500"), "/dev/loop2", "/dev/loop3"}
	storageNodes = []storageNode{storageA, storageB}
)

var k8s *cluster.Cluster

// cacheDir holds what hack/build-k8s.sh and hack/build-images.sh made.
func cacheDir() string {
	if d := os.Getenv("NVMEOF_K8S_CACHE"); d != "" {
		return d
	}
	return "/var/cache/nvmeof-csi/k8s"
}

func TestMain(m *testing.M) {
	if !vmtest.InGuest() {
		// The control plane, containerd's images and the pods need more than the default guest.
		os.Exit(vmtest.RunSelf(vmtest.Size{MemoryMiB: 8192, CPUs: 2, ScratchGiB: 96}))
	}
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	start := time.Now()
	var err error
	k8s, err = cluster.Start(ctx, cluster.Config{
		BinDir:   filepath.Join(cacheDir(), "bin"),
		ImageDir: filepath.Join(cacheDir(), "images"),
		WorkDir:  "/run/nvmeof-e2e",
		DataDir:  filepath.Join(vmtest.ScratchDir(), "k8s"),
		NodeName: nodeName,
		NodeIP:   vmtest.PortalA,
		Log:      os.Stdout,
	})
	if err == nil {
		err = deployDriver(ctx)
	}
	cancel()
	if err != nil {
		fmt.Println("e2e: setup failed:", err)
		if k8s != nil {
			dumpState()
			k8s.Stop()
		}
		os.Exit(1)
	}
	fmt.Printf("e2e: cluster and driver ready in %s\n", time.Since(start).Round(time.Second))
	code := m.Run()
	if code != 0 {
		dumpState()
	}
	k8s.Stop()
	os.Exit(code)
}

// deployDriver does what an operator does: the thin pools' devices on the storage nodes, the
// node label, the snapshot CRDs (VolumeGroupSnapshot ones included) and controller, the
// SnapshotMetadataService CRD, the TLS Secrets, then `kubectl apply -k` of the overlay and
// the CA bundle into its SnapshotMetadataService object (the snapshot-metadata component
// ships a placeholder).
func deployDriver(ctx context.Context) error {
	return cluster.RunSteps(os.Stdout, "e2e", []cluster.Step{
		{Name: "pool devices of " + storageA.name + " and " + storageB.name, Do: func() error { return createPoolDevices(ctx) }},
		{Name: "node labelled as storage node", Do: func() error {
			patch := []byte(`{"metadata":{"labels":{"nvmeof.csi.io/storage-node":"true"}}}`)
			_, err := k8s.Client.CoreV1().Nodes().Patch(ctx, nodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
			return err
		}},
		{Name: "snapshot CRDs and snapshot-controller applied", Do: func() error {
			if _, err := k8s.Kubectl(ctx, "apply", "-k", filepath.Join(cacheDir(), "crds")); err != nil {
				return err
			}
			_, err := k8s.Kubectl(ctx, "apply", "-k", "manifests/snapshot-controller")
			return err
		}},
		{Name: "SnapshotMetadataService CRD applied", Do: func() error {
			_, err := k8s.Kubectl(ctx, "apply", "-k", filepath.Join(cacheDir(), "crds-snapshot-metadata"))
			return err
		}},
		{Name: "TLS Secrets created", Do: func() error { return createTLSSecrets(ctx) }},
		{Name: "kubectl apply -k deploy/kubernetes/overlays/e2e", Do: func() error {
			_, err := k8s.Kubectl(ctx, "apply", "-k", "../../deploy/kubernetes/overlays/e2e")
			return err
		}},
		{Name: "SnapshotMetadataService given the CA of its sidecar's certificate", Do: func() error { return setSnapshotMetadataCA(ctx) }},
		{Name: "driver running and registered", Do: func() error { return waitDriver(ctx) }},
	})
}

// createPoolDevices makes the two blank devices of each agent's dm-thin pool: loop devices
// over sparse files of the scratch disk. The agent formats them when it first opens the pool.
func createPoolDevices(ctx context.Context) error {
	// The storage node's module, loaded by its operator (deploy/README.md).
	if _, err := cluster.Run(ctx, "modprobe", "dm-thin-pool"); err != nil {
		return err
	}
	for _, n := range storageNodes {
		for dev, size := range map[string]string{n.metadataDevice: "1G", n.dataDevice: "48G"} {
			img := filepath.Join(vmtest.ScratchDir(), "pool-"+filepath.Base(dev)+".img")
			if _, err := cluster.Run(ctx, "truncate", "-s", size, img); err != nil {
				return err
			}
			if _, err := cluster.Run(ctx, "losetup", dev, img); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitDriver waits for the three workloads to be ready and for the kubelet to know the driver.
func waitDriver(ctx context.Context) error {
	return poll(ctx, 10*time.Minute, func() (bool, string, error) {
		for _, ds := range []string{"nvmeof-agent", "nvmeof-agent-b", "nvmeof-csi-node"} {
			d, err := k8s.Client.AppsV1().DaemonSets(namespace).Get(ctx, ds, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			if d.Status.DesiredNumberScheduled == 0 || d.Status.NumberReady != d.Status.DesiredNumberScheduled {
				return false, fmt.Sprintf("DaemonSet %s: %d of %d ready", ds, d.Status.NumberReady, d.Status.DesiredNumberScheduled), nil
			}
		}
		dep, err := k8s.Client.AppsV1().Deployments(namespace).Get(ctx, "nvmeof-csi-controller", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if !deploymentAvailable(dep) {
			return false, fmt.Sprintf("Deployment nvmeof-csi-controller: %d of %d ready", dep.Status.ReadyReplicas, *dep.Spec.Replicas), nil
		}
		csiNode, err := k8s.Client.StorageV1().CSINodes().Get(ctx, nodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "no CSINode yet", nil
		} else if err != nil {
			return false, "", err
		}
		for _, d := range csiNode.Spec.Drivers {
			if d.Name == driverName {
				return true, "", nil
			}
		}
		return false, "driver not registered with the kubelet yet", nil
	})
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return d.Status.ReadyReplicas == *d.Spec.Replicas
		}
	}
	return false
}

// dumpState prints what explains a failure: pods, events and the tails of the logs.
func dumpState() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "pvc,pv,volumeattachments", "-A"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		out, err := k8s.Kubectl(ctx, args...)
		fmt.Printf("=== kubectl %s\n%s%v\n", strings.Join(args, " "), out, errOrEmpty(err))
	}
	for _, c := range []string{"kubelet", "kube-apiserver", "kube-controller-manager", "containerd"} {
		fmt.Printf("=== %s (tail)\n%s\n", c, k8s.Tail(c, 40))
	}
	for _, sel := range []string{"app.kubernetes.io/component=controller", "app.kubernetes.io/component=node", "app.kubernetes.io/component=agent"} {
		out, err := k8s.Kubectl(ctx, "-n", namespace, "logs", "-l", sel, "--all-containers", "--tail=40", "--prefix")
		fmt.Printf("=== logs %s\n%s%v\n", sel, out, errOrEmpty(err))
	}
}

func errOrEmpty(err error) any {
	if err == nil {
		return ""
	}
	return err
}
