package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// The snapshot API of external-snapshotter (its CRDs may be missing).
var (
	contentsGVR  = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
	snapshotsGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
)

// nodePluginSelector selects the node plugin's pods; metricsPortName is the name of the
// container port of its /metrics (deploy/: --metrics-address).
const (
	nodePluginSelector = "app.kubernetes.io/name=nvmeof-csi,app.kubernetes.io/component=node"
	metricsPortName    = "metrics"
)

// clusterView is what the Kubernetes API says about the driver's objects.
type clusterView struct {
	// pvs maps a volume handle to the PV that references it.
	pvs map[string]*corev1.PersistentVolume
	// claimUIDs are the UIDs of every PVC: the provisioner names a volume pvc-<UID> before
	// its PV exists.
	claimUIDs map[string]bool
	// contents maps a snapshot handle to its VolumeSnapshotContent; snapshotUIDs are the
	// UIDs of every VolumeSnapshot (the snapshotter names snapshots snapshot-<UID>).
	contents     map[string]string
	snapshotUIDs map[string]bool
	// snapshotAPI is false when the cluster has no snapshot CRDs: snapshots cannot be
	// matched.
	snapshotAPI bool
	// paths maps a volume ID to its path states on each worker ("node: 2 live").
	paths map[string][]string
	// pathsErr says why path states are missing, if they are.
	pathsErr error
}

// view reads the PVs, PVCs, snapshot objects and the node plugins' path states.
func (e *env) view(ctx context.Context) (*clusterView, error) {
	kube, err := e.cluster()
	if err != nil {
		return nil, err
	}
	v := &clusterView{pvs: map[string]*corev1.PersistentVolume{}, claimUIDs: map[string]bool{},
		contents: map[string]string{}, snapshotUIDs: map[string]bool{}, paths: map[string][]string{}}
	pvs, err := kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing PVs: %w", err)
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if csi := pv.Spec.CSI; csi != nil && csi.Driver == contract.DriverName {
			v.pvs[csi.VolumeHandle] = pv
		}
	}
	pvcs, err := kube.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing PVCs: %w", err)
	}
	for _, c := range pvcs.Items {
		v.claimUIDs[string(c.UID)] = true
	}
	if err := v.readSnapshots(ctx, e); err != nil {
		return nil, err
	}
	v.pathsErr = v.readPaths(ctx, e)
	return v, nil
}

func (v *clusterView) readSnapshots(ctx context.Context, e *env) error {
	contents, err := e.dyn.Resource(contentsGVR).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil // no snapshot CRDs
	}
	if err != nil {
		return fmt.Errorf("listing VolumeSnapshotContents: %w", err)
	}
	v.snapshotAPI = true
	for _, c := range contents.Items {
		if d, _, _ := unstructured.NestedString(c.Object, "spec", "driver"); d != contract.DriverName {
			continue
		}
		for _, path := range [][]string{{"status", "snapshotHandle"}, {"spec", "source", "snapshotHandle"}} {
			if h, ok, _ := unstructured.NestedString(c.Object, path...); ok && h != "" {
				v.contents[h] = c.GetName()
			}
		}
	}
	snaps, err := e.dyn.Resource(snapshotsGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing VolumeSnapshots: %w", err)
	}
	for _, s := range snaps.Items {
		v.snapshotUIDs[string(s.GetUID())] = true
	}
	return nil
}

// readPaths scrapes each node plugin's /metrics through the API server's pod proxy and keeps
// nvmeof_node_volume_paths.
func (v *clusterView) readPaths(ctx context.Context, e *env) error {
	pods, err := e.kube.CoreV1().Pods(e.opts.namespace).List(ctx, metav1.ListOptions{LabelSelector: nodePluginSelector})
	if err != nil {
		return fmt.Errorf("listing the node plugin's pods: %w", err)
	}
	var errs []string
	for _, pod := range pods.Items {
		port := metricsPort(&pod)
		if port == "" {
			errs = append(errs, fmt.Sprintf("pod %s has no port named %s (node plugin started without --metrics-address)", pod.Name, metricsPortName))
			continue
		}
		raw, err := e.kube.CoreV1().Pods(pod.Namespace).ProxyGet("http", pod.Name, port, "metrics", nil).DoRaw(ctx)
		if err != nil {
			errs = append(errs, fmt.Sprintf("pod %s: %v", pod.Name, err))
			continue
		}
		states, err := pathStates(raw)
		if err != nil {
			errs = append(errs, fmt.Sprintf("pod %s: %v", pod.Name, err))
			continue
		}
		for id, s := range states {
			v.paths[id] = append(v.paths[id], pod.Spec.NodeName+": "+s)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("path states: %s", strings.Join(errs, "; "))
	}
	return nil
}

func metricsPort(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == metricsPortName {
				return fmt.Sprint(p.ContainerPort)
			}
		}
	}
	return ""
}

// pathStates reads nvmeof_node_volume_paths from a node plugin's metrics: per volume ID, its
// non-zero path counts by state ("2 live", "1 live, 1 connecting", "0 paths").
func pathStates(raw []byte) (map[string]string, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	out := map[string]string{}
	fam, ok := families["nvmeof_node_volume_paths"]
	if !ok {
		return out, nil
	}
	counts := map[string]map[string]int{}
	for _, m := range fam.GetMetric() {
		id, state := label(m, "volume_id"), label(m, "state")
		if counts[id] == nil {
			counts[id] = map[string]int{}
		}
		counts[id][state] += int(sampleValue(m))
	}
	for id, byState := range counts {
		out[id] = describeStates(byState)
	}
	return out, nil
}

// describeStates lists the non-zero counts, live first, the others by name.
func describeStates(byState map[string]int) string {
	var parts []string
	if n := byState["live"]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d live", n))
	}
	var others []string
	for s, n := range byState {
		if s != "live" && n > 0 {
			others = append(others, fmt.Sprintf("%d %s", n, s))
		}
	}
	slices.Sort(others)
	parts = append(parts, others...)
	if len(parts) == 0 {
		return "0 paths"
	}
	return strings.Join(parts, ", ")
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sampleValue is a gauge's or an untyped sample's value (a scrape without TYPE lines).
func sampleValue(m *dto.Metric) float64 {
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetUntyped().GetValue()
}
