package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	restclient "k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient/fakeagent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// world is one storage node (a fake agent) and a fake cluster with the driver's node plugin.
type world struct {
	t      *testing.T
	ctx    context.Context
	agent  *fakeagent.Agent
	kube   *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	sysfs  string
	scrape string // what the node plugin's /metrics answers
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, ctx: t.Context(), agent: fakeagent.New("sn-1", 100<<30), sysfs: t.TempDir()}
	nodePod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nvmeof-csi-node-x", Namespace: "nvmeof-csi",
			Labels: map[string]string{"app.kubernetes.io/name": "nvmeof-csi", "app.kubernetes.io/component": "node"}},
		Spec: corev1.PodSpec{NodeName: "worker-1", Containers: []corev1.Container{{Name: "nvmeof-csi",
			Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9811}}}}},
	}
	w.kube = fake.NewClientset(nodePod)
	w.kube.PrependProxyReactor("pods", func(k8stesting.Action) (bool, restclient.ResponseWrapper, error) {
		return true, rawResponse(w.scrape), nil
	})
	scheme := runtime.NewScheme()
	w.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		contentsGVR: "VolumeSnapshotContentList", snapshotsGVR: "VolumeSnapshotList"})
	return w
}

type rawResponse string

func (r rawResponse) DoRaw(context.Context) ([]byte, error) { return []byte(r), nil }
func (r rawResponse) Stream(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(r))), nil
}

// run runs one command line against the world and returns stdout, stderr and the exit code.
func (w *world) run(stdin string, args ...string) (string, string, int) {
	w.t.Helper()
	var out, errOut bytes.Buffer
	saved := commands
	defer func() { commands = saved }()
	// Wrap every command so that it finds the fakes in its env.
	wrapped := map[string]command{}
	for name, c := range saved {
		inner := c.run
		c.run = func(ctx context.Context, e *env) error {
			e.kube, e.dyn = w.kube, w.dyn
			e.nodes = []agentclient.StorageNode{{Name: "sn-1", Address: "sn-1.example:9500"}}
			e.agents = fakeagent.NewCluster(w.agent)
			return inner(ctx, e)
		}
		wrapped[name] = c
	}
	commands = wrapped
	code := run(w.ctx, append([]string{"nvmeofctl"}, append(args, "--sysfs", w.sysfs)...), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func (w *world) createVolume(name string, src *agentapi.ContentSource) string {
	w.t.Helper()
	resp, err := w.agent.CreateVolume(w.ctx, &agentapi.CreateVolumeRequest{Name: name, SizeBytes: 1 << 30, Source: src})
	if err != nil {
		w.t.Fatal(err)
	}
	return resp.GetVolume().GetId()
}

func (w *world) createPV(volumeID, claimNS, claim string) {
	w.t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + claim},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: contract.DriverName, VolumeHandle: contract.ObjectID("sn-1", volumeID)}},
			ClaimRef:               &corev1.ObjectReference{Namespace: claimNS, Name: claim},
		},
	}
	if _, err := w.kube.CoreV1().PersistentVolumes().Create(w.ctx, pv, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func TestVolumesJoinsAgentsWithPVCsAndPathStates(t *testing.T) {
	w := newWorld(t)
	db := w.createVolume("pvc-db", nil)
	w.createPV(db, "prod", "db")
	snap, err := w.agent.CreateSnapshot(w.ctx, &agentapi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: db})
	if err != nil {
		t.Fatal(err)
	}
	clone := w.createVolume("pvc-dev", &agentapi.ContentSource{Source: &agentapi.ContentSource_SnapshotId{SnapshotId: snap.GetSnapshot().GetId()}})
	w.createPV(clone, "dev", "db-copy")
	if _, err := w.agent.PublishVolume(w.ctx, &agentapi.PublishVolumeRequest{VolumeId: db, HostNqn: "nqn.2014-08.org.example:worker-1",
		NodeId: "worker-1", Transport: agentapi.Transport_TRANSPORT_TCP}); err != nil {
		t.Fatal(err)
	}
	dbID := contract.ObjectID("sn-1", db)
	w.scrape = "# TYPE nvmeof_node_volume_paths gauge\n" +
		`nvmeof_node_volume_paths{volume_id="` + dbID + `",state="live"} 1` + "\n" +
		`nvmeof_node_volume_paths{volume_id="` + dbID + `",state="missing"} 1` + "\n" +
		`nvmeof_node_volume_paths{volume_id="` + dbID + `",state="connecting"} 0` + "\n"

	out, errOut, code := w.run("", "volumes", "-o", "json")
	if code != 0 {
		t.Fatalf("volumes: exit %d: %s", code, errOut)
	}
	var rep volumesReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("volumes -o json: %v\n%s", err, out)
	}
	byPVC := map[string]volumeRow{}
	for _, v := range rep.Volumes {
		byPVC[v.PVC] = v
	}
	got := byPVC["prod/db"]
	if got.ID != dbID || got.Snapshots != 1 || got.Clones != 1 || got.SizeBytes != 1<<30 || !slices.Equal(got.Hosts, []string{"worker-1"}) ||
		!slices.Equal(got.Paths, []string{"worker-1: 1 live, 1 missing"}) {
		t.Errorf("prod/db row = %+v; want its ID, 1 snapshot, 1 clone (through the snapshot), 1 GiB, host worker-1, paths 1 live and 1 missing", got)
	}
	if c := byPVC["dev/db-copy"]; c.Source != contract.ObjectID("sn-1", snap.GetSnapshot().GetId()) || c.PV != "pv-db-copy" || c.UsedBytes != nil {
		t.Errorf("dev/db-copy row = %+v; want the snapshot as source, its PV, and no usage (not active)", c)
	}
	if got.UsedBytes == nil || *got.UsedBytes != 256<<20 {
		t.Errorf("prod/db used = %v; want what the agent reports for it (256 MiB)", got.UsedBytes)
	}
	table, _, code := w.run("", "volumes")
	if code != 0 || !strings.Contains(table, "prod/db") || !strings.Contains(table, "PVC") {
		t.Errorf("volumes (table): exit %d\n%s", code, table)
	}
}

func TestOrphansCleanRemovesOnlyWhatNothingReferences(t *testing.T) {
	w := newWorld(t)
	kept := w.createVolume("pvc-kept", nil)
	w.createPV(kept, "app", "data")
	// Being provisioned: its PVC exists, its PV not yet.
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: "app", UID: types.UID("1234")}}
	if _, err := w.kube.CoreV1().PersistentVolumeClaims("app").Create(w.ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	provisioning := w.createVolume("pvc-1234", nil)
	leaked := w.createVolume("pvc-leaked", nil)
	published := w.createVolume("pvc-published", nil)
	if _, err := w.agent.PublishVolume(w.ctx, &agentapi.PublishVolumeRequest{VolumeId: published, HostNqn: "nqn.2014-08.org.example:w",
		NodeId: "w", Transport: agentapi.Transport_TRANSPORT_TCP}); err != nil {
		t.Fatal(err)
	}
	snapKept, err := w.agent.CreateSnapshot(w.ctx, &agentapi.CreateSnapshotRequest{Name: "snapshot-kept", SourceVolumeId: kept})
	if err != nil {
		t.Fatal(err)
	}
	content := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
		"metadata": map[string]any{"name": "content-1"},
		"spec":     map[string]any{"driver": contract.DriverName},
		"status":   map[string]any{"snapshotHandle": contract.ObjectID("sn-1", snapKept.GetSnapshot().GetId())},
	}}
	if _, err := w.dyn.Resource(contentsGVR).Create(w.ctx, content, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	snapLeaked, err := w.agent.CreateSnapshot(w.ctx, &agentapi.CreateSnapshotRequest{Name: "snapshot-leaked", SourceVolumeId: kept})
	if err != nil {
		t.Fatal(err)
	}

	out, errOut, code := w.run("", "orphans", "-o", "json")
	if code != 0 {
		t.Fatalf("orphans: exit %d: %s", code, errOut)
	}
	var rep orphansReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, o := range rep.Orphans {
		found[o.ID] = o.Removable
	}
	want := map[string]bool{
		contract.ObjectID("sn-1", leaked):                           true,
		contract.ObjectID("sn-1", published):                        false,
		contract.ObjectID("sn-1", snapLeaked.GetSnapshot().GetId()): true,
	}
	if len(found) != len(want) {
		t.Errorf("orphans = %v; want exactly %v", found, want)
	}
	for id, removable := range want {
		if r, ok := found[id]; !ok || r != removable {
			t.Errorf("orphan %s: found %v, removable %v; want removable %v", id, ok, r, removable)
		}
	}

	// Not confirmed: nothing goes.
	if _, _, code := w.run("no\n", "orphans", "--clean"); code == 0 {
		t.Error("orphans --clean answered no: exit 0; want a failure saying nothing was removed")
	}
	if _, ok := w.agent.Volume(leaked); !ok {
		t.Fatal("orphans --clean removed a volume without confirmation")
	}
	if _, errOut, code := w.run("yes\n", "orphans", "--clean"); code != 0 {
		t.Fatalf("orphans --clean (yes): exit %d: %s", code, errOut)
	}
	for _, id := range []string{leaked} {
		if _, ok := w.agent.Volume(id); ok {
			t.Errorf("volume %s (no PV) survived --clean", id)
		}
	}
	if _, ok := w.agent.Snapshot(snapLeaked.GetSnapshot().GetId()); ok {
		t.Error("snapshot with no VolumeSnapshotContent survived --clean")
	}
	for _, id := range []string{kept, provisioning, published} {
		if _, ok := w.agent.Volume(id); !ok {
			t.Errorf("volume %s was removed; it is referenced, being provisioned or published", id)
		}
	}
	if _, ok := w.agent.Snapshot(snapKept.GetSnapshot().GetId()); !ok {
		t.Error("a snapshot a VolumeSnapshotContent references was removed")
	}
}

func TestStatusReportsPoolUsageAndUnreachableNodes(t *testing.T) {
	w := newWorld(t)
	w.agent.SetUsage(40, 5)
	w.createVolume("pvc-a", nil)
	out, errOut, code := w.run("", "status")
	if code != 0 || !strings.Contains(out, "sn-1") || !strings.Contains(out, "[####......]") {
		t.Errorf("status: exit %d, stdout:\n%s\nstderr: %s; want sn-1 with a 40%% bar", code, out, errOut)
	}
	w.agent.SetError(fakeagent.AllMethods, context.DeadlineExceeded)
	out, _, code = w.run("", "status", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "reachable: false") {
		t.Errorf("status of an unreachable node: exit %d:\n%s", code, out)
	}
}

func TestBadCommandLinesExitWithUsage(t *testing.T) {
	w := newWorld(t)
	for _, args := range [][]string{{"nope"}, {"volumes", "-o", "xml"}, {"orphans", "--yes"}, {"status", "extra"}} {
		if _, errOut, code := w.run("", args...); code != exitUsage || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want %d with a message", args, code, errOut, exitUsage)
		}
	}
}

func TestPathStatesAndFormatting(t *testing.T) {
	got, err := pathStates([]byte(`nvmeof_node_volume_paths{volume_id="a/vol-1",state="live"} 2
nvmeof_node_volume_paths{volume_id="a/vol-2",state="live"} 0
nvmeof_node_volume_paths{volume_id="a/vol-2",state="missing"} 0
`))
	if err != nil || got["a/vol-1"] != "2 live" || got["a/vol-2"] != "0 paths" {
		t.Errorf("pathStates = %v, %v", got, err)
	}
	for n, want := range map[int64]string{512: "512B", 1 << 30: "1GiB", 3 << 29: "1.5GiB", 48 << 30: "48GiB"} {
		if s := bytesIEC(n); s != want {
			t.Errorf("bytesIEC(%d) = %s; want %s", n, s, want)
		}
	}
	if b := bar(31, 100); b != "[###.......]  31%" {
		t.Errorf("bar(31, 100) = %q", b)
	}
}
