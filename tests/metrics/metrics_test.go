//go:build vm

// Package metrics_test scrapes the agent's and the plugin's GET /metrics over HTTP, as
// Prometheus does, after a real lifecycle in the VM (dm-thin pool, nvmet, NVMe/TCP over two
// portals, ext4), and checks that the values tell what happened: operation counts, objects,
// pool usage within a tolerance of what was written, and path states after a path cut.
package metrics_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics/metricstest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

const (
	agentMetrics  = "127.0.0.1:9710"
	pluginMetrics = "127.0.0.1:9711"
	svcPort       = 4471
	mib           = int64(1 << 20)
)

// scraper is a Prometheus Gatherer that GETs one /metrics endpoint.
func scraper(addr string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET /metrics of %s: %s", addr, resp.Status)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		out := make([]*dto.MetricFamily, 0, len(families))
		for _, f := range families {
			out = append(out, f)
		}
		return out, nil
	})
}

// eventually polls cond every 250 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, d, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestMetricsTellWhatHappened(t *testing.T) {
	ctx := vmenv.Context(t, 8*time.Minute)
	dir := t.TempDir()
	meta, data := vmenv.DMThinDevices(t, "nvmeof-sn-m", "64M", "2G")
	sock := filepath.Join(dir, "agent.sock")
	vmenv.StartAgent(t, fmt.Sprintf(`
nodeName: sn-m
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s, overcommitRatio: 4}
portals:
- {id: 71, transport: tcp, address: %s, port: %d}
- {id: 72, transport: tcp, address: %s, port: %d}
listen: unix://%s
metricsAddress: %s
`, meta, data, vmtest.PortalA, svcPort, vmtest.PortalB, svcPort, sock, agentMetrics))
	vmenv.Dial(t, "unix://"+sock, nil)
	nodesFile := filepath.Join(dir, "storage-nodes.yaml")
	if err := os.WriteFile(nodesFile, []byte("storageNodes:\n- name: sn-m\n  address: unix://"+sock+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conn := vmenv.StartPlugin(t, plugin.Options{
		Mode: plugin.ModeAll, StorageNodes: nodesFile, AgentTimeout: time.Minute, ProbeTimeout: 10 * time.Second,
		NodeName: "metrics-node", IdentityDir: filepath.Join(dir, "nvme"), StateDir: filepath.Join(dir, "state"),
		MetricsAddress: pluginMetrics,
	})
	ids, ctrl, node := csi.NewIdentityClient(conn), csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	eventually(t, time.Minute, "plugin ready", func() (bool, string) {
		r, err := ids.Probe(ctx, &csi.ProbeRequest{})
		return err == nil && r.GetReady().GetValue(), fmt.Sprint(err)
	})
	agent, plug := scraper(agentMetrics), scraper(pluginMetrics)
	value := func(g prometheus.Gatherer, sel string) float64 { return metricstest.Value(t, g, sel) }
	count := func(method string) float64 {
		return value(plug, `csi_plugin_operations_seconds_count{method_name="`+method+`",grpc_status_code="OK"}`)
	}

	// The lifecycle: create, publish, stage, mount, write, snapshot.
	mount := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	caps := []*csi.VolumeCapability{mount}
	vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "metrics-vol", CapacityRange: &csi.CapacityRange{RequiredBytes: 256 * mib},
		VolumeCapabilities: caps, Parameters: map[string]string{"transport": "tcp"}})
	must(t, "CreateVolume", err)
	volID := vol.GetVolume().GetVolumeId()
	info, err := node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	must(t, "NodeGetInfo", err)
	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: info.GetNodeId(), VolumeCapability: mount,
		VolumeContext: vol.GetVolume().GetVolumeContext()})
	must(t, "ControllerPublishVolume", err)
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	must(t, "mkdir", os.MkdirAll(staging, 0o750))
	_, err = node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: volID, StagingTargetPath: staging, VolumeCapability: mount,
		PublishContext: pub.GetPublishContext(), VolumeContext: vol.GetVolume().GetVolumeContext()})
	must(t, "NodeStageVolume", err)
	_, err = node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: volID, StagingTargetPath: staging, TargetPath: target,
		VolumeCapability: mount, PublishContext: pub.GetPublishContext(), VolumeContext: vol.GetVolume().GetVolumeContext()})
	must(t, "NodePublishVolume", err)
	t.Cleanup(func() { _, _ = vmenv.RunE("umount", "-R", target); _, _ = vmenv.RunE("umount", staging) })

	// The pool's data use before and after 32 MiB of file data; GetCapacity makes the agent
	// read the pool now (a scrape shows its last reading).
	used := func() float64 {
		_, err := ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: caps})
		must(t, "GetCapacity", err)
		return value(agent, `nvmeof_agent_pool_used_bytes{space="data"}`)
	}
	time.Sleep(6 * time.Second) // past the agent's usage cache (5 s)
	before := used()
	blob := make([]byte, 32*mib)
	_, _ = rand.Read(blob)
	f, err := os.Create(filepath.Join(target, "blob"))
	must(t, "create", err)
	_, err = f.Write(blob)
	must(t, "write", err)
	must(t, "fsync", f.Sync())
	must(t, "close", f.Close())
	var grown float64
	eventually(t, 30*time.Second, "pool data use grows by the 32 MiB written", func() (bool, string) {
		grown = used() - before
		return grown >= float64(32*mib) && grown <= float64(48*mib), fmt.Sprintf("grew by %.1f MiB", grown/float64(mib))
	})
	snap, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "metrics-snap", SourceVolumeId: volID})
	must(t, "CreateSnapshot", err)

	for _, m := range []string{"/csi.v1.Controller/CreateVolume", "/csi.v1.Controller/ControllerPublishVolume",
		"/csi.v1.Node/NodeStageVolume", "/csi.v1.Node/NodePublishVolume", "/csi.v1.Controller/CreateSnapshot"} {
		if n := count(m); n != 1 {
			t.Errorf("plugin: %s OK count = %v; want 1", m, n)
		}
	}
	for sel, want := range map[string]float64{
		`nvmeof_agent_objects{kind="volumes"}`:                                         1,
		`nvmeof_agent_objects{kind="snapshots"}`:                                       1,
		`nvmeof_agent_objects{kind="exports"}`:                                         1,
		`nvmeof_agent_objects{kind="publications"}`:                                    1,
		`nvmeof_agent_objects{kind="hosts"}`:                                           1,
		`nvmeof_agent_provisioned_bytes`:                                               float64(512 * mib),
		`nvmeof_agent_operation_seconds_count{operation="CreateVolume",result="OK"}`:   1,
		`nvmeof_agent_operation_seconds_count{operation="PublishVolume",result="OK"}`:  1,
		`nvmeof_agent_operation_seconds_count{operation="CreateSnapshot",result="OK"}`: 1,
	} {
		if got := value(agent, sel); got != want {
			t.Errorf("agent: %s = %v; want %v", sel, got, want)
		}
	}
	if got, total := value(agent, `nvmeof_agent_pool_bytes{space="data"}`), float64(2<<30); got <= 0 || got > total {
		t.Errorf("agent: data space = %v; want the data device's size, at most %v", got, total)
	}
	paths := func(state string) float64 {
		return value(plug, `nvmeof_node_volume_paths{volume_id="`+volID+`",state="`+state+`"}`)
	}
	if live := paths("live"); live != 2 {
		t.Errorf("node: live paths = %v; want 2 (two TCP portals)", live)
	}
	t.Logf("after the lifecycle: pool data use grew by %.1f MiB for 32 MiB written; 2 live paths", grown/float64(mib))

	// Cut the path to portal B: the node's metrics show one live path and one that is not.
	restore := vmenv.CutNVMeTCP(t, "metricstest", svcPort, vmtest.PortalB)
	cut := time.Now()
	eventually(t, 90*time.Second, "node metrics show the cut path", func() (bool, string) {
		live, down := paths("live"), paths("connecting")+paths("resetting")+paths("missing")
		return live == 1 && down >= 1, fmt.Sprintf("live %v, connecting/resetting/missing %v", live, down)
	})
	t.Logf("path cut shown in the node's metrics after %s", time.Since(cut).Round(100*time.Millisecond))
	restore()
	back := time.Now()
	eventually(t, 90*time.Second, "node metrics show both paths live again", func() (bool, string) {
		return paths("live") == 2, fmt.Sprintf("live %v", paths("live"))
	})
	t.Logf("path back in the node's metrics after %s", time.Since(back).Round(100*time.Millisecond))

	// Teardown: every object gone from the agent's figures.
	_, err = node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volID, TargetPath: target})
	must(t, "NodeUnpublishVolume", err)
	_, err = node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volID, StagingTargetPath: staging})
	must(t, "NodeUnstageVolume", err)
	_, err = ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: volID, NodeId: info.GetNodeId()})
	must(t, "ControllerUnpublishVolume", err)
	_, err = ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()})
	must(t, "DeleteSnapshot", err)
	_, err = ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: volID})
	must(t, "DeleteVolume", err)
	for _, kind := range []string{"volumes", "snapshots", "exports", "publications", "hosts"} {
		if got := value(agent, `nvmeof_agent_objects{kind="`+kind+`"}`); got != 0 {
			t.Errorf("agent after teardown: %s = %v; want 0", kind, got)
		}
	}
	if got := value(agent, "nvmeof_agent_provisioned_bytes"); got != 0 {
		t.Errorf("agent after teardown: provisioned = %v; want 0", got)
	}
	if n := count("/csi.v1.Controller/DeleteVolume"); n != 1 {
		t.Errorf("plugin: DeleteVolume OK count = %v; want 1", n)
	}
	if n := value(plug, `nvmeof_node_volume_paths{volume_id="`+volID+`",state="live"}`); n != 0 {
		t.Errorf("node after unstage: %v live paths reported; want none", n)
	}
}

func must(t *testing.T, step string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}
