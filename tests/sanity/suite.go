//go:build vm

// Package sanity runs the CSI conformance suite (kubernetes-csi/csi-test sanity) against the
// nvmeof-csi plugin and two real storage-node agents, in the VM, with no fakes: real dm-thin
// pools (the default backend), the kernel NVMe target, real NVMe/TCP or NVMe/RDMA connects,
// mkfs and mounts.
package sanity

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls/mtlstest"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// skipped lists csi-sanity specs this test skips on purpose, each with its reason. It is
// empty: every spec the driver's capabilities call for runs.
//
// csi-sanity itself skips 11 specs, each for a capability the driver does not claim (its 6
// GroupController specs run):
//   - ModifyVolume (6) and CreateVolume with a volume attribute class (2): no MODIFY_VOLUME,
//     no VolumeAttributesClass support;
//   - NodeGetStorageHealth (1): not claimed;
//   - CreateSnapshot with accessibility requirements (1): no SNAPSHOT_ACCESSIBILITY_CONSTRAINTS
//     (a snapshot lives on its volume's storage node);
//   - "publishing more volumes than the node max attach limit" (1): the node reports no
//     max_volumes_per_node unless configured, so there is no limit to exceed.
var skipped = map[string]string{}

// Run runs the whole suite (Identity, Controller, Node) over transport ("tcp" or "rdma").
// Ginkgo allows one suite per process, so each transport has its own test package (tcp/,
// rdma/); run numbers keep their pools and ports apart.
func Run(t *testing.T, transport string, run int) {
	dir := t.TempDir()
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	storageNodes := startStorageNodes(t, dir, run)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- plugin.Run(klog.NewContext(ctx, klog.Background()), plugin.Options{
			Mode:         plugin.ModeAll,
			Endpoint:     endpoint,
			StorageNodes: storageNodes,
			AgentTimeout: 2 * time.Minute,
			ProbeTimeout: 10 * time.Second,
			NodeName:     "sanity-node",
			IdentityDir:  filepath.Join(dir, "nvme"),
			StateDir:     filepath.Join(dir, "state"),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("plugin: %v", err)
		}
	})

	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 256 << 20
	cfg.TestVolumeExpandSize = 512 << 20
	cfg.TestVolumeParameters = map[string]string{"transport": transport}
	// Name every spec with its outcome in the output (CI shows what passed and what was skipped).
	if err := flag.Set("ginkgo.v", "true"); err != nil {
		t.Fatal(err)
	}
	if len(skipped) > 0 {
		var res []string
		for spec := range skipped {
			res = append(res, spec)
		}
		if err := flag.Set("ginkgo.skip", strings.Join(res, "|")); err != nil {
			t.Fatal(err)
		}
	}
	sanity.Test(t, cfg)
}

// startStorageNodes starts two agents, each with its own thin pool and tcp and rdma portals
// (sn-a on PortalA over a unix socket, sn-b on PortalB over TCP with mTLS), and writes the
// controller's storage-node configuration.
func startStorageNodes(t *testing.T, dir string, run int) string {
	ca := mtlstest.NewCA(t, "sanity")
	server := ca.Issue(t, "127.0.0.1")
	client := ca.Issue(t, "controller")
	svc := 4420 + run
	agentTCP := fmt.Sprintf("127.0.0.1:%d", 9600+run)
	for i, sn := range []struct{ name, addr, listen, tls string }{
		{"sn-a", vmtest.PortalA, "unix://" + filepath.Join(dir, "sn-a.sock"), ""},
		{"sn-b", vmtest.PortalB, "tcp://" + agentTCP,
			fmt.Sprintf("tls: {cert: %s, key: %s, ca: %s}", server.Cert, server.Key, server.CA)},
	} {
		meta, data := vmenv.DMThinDevices(t, "nvmeof-"+sn.name, "256M", "6G")
		id := 100*run + 10*i
		vmenv.StartAgent(t, fmt.Sprintf(`
nodeName: %s
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s, overcommitRatio: 200}
portals:
- {id: %d, transport: tcp, address: %s, port: %d}
- {id: %d, transport: rdma, address: %s, port: %d}
listen: %s
%s
`, sn.name, meta, data, id+1, sn.addr, svc, id+2, sn.addr, svc, sn.listen, sn.tls))
	}
	vmenv.Dial(t, "unix://"+filepath.Join(dir, "sn-a.sock"), nil)
	vmenv.Dial(t, agentTCP, vmenv.MTLS(t, client, "127.0.0.1"))

	path := filepath.Join(dir, "storage-nodes.yaml")
	cfg := fmt.Sprintf(`storageNodes:
- name: sn-a
  address: unix://%s
- name: sn-b
  address: %s
  tls: {cert: %s, key: %s, ca: %s, serverName: 127.0.0.1}
`, filepath.Join(dir, "sn-a.sock"), agentTCP, client.Cert, client.Key, client.CA)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
