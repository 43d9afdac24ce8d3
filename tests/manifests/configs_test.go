package manifests_test

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	groupsnapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
)

// TLS Secrets hold these keys (kubernetes.io/tls plus the CA, as cert-manager writes them).
var tlsKeys = []string{"tls.crt", "tls.key", "ca.crt"}

// configFile returns the content of a file a container reads from a ConfigMap volume.
func configFile(t *testing.T, s *set, w workload, c *corev1.Container, file string) (*corev1.ConfigMap, string, bool) {
	t.Helper()
	m, rel, ok := mountOf(c, file)
	if !ok {
		t.Errorf("%s: %s is on no volume", w.key, file)
		return nil, "", false
	}
	v, _ := volume(w.pod, m.Name)
	if v.ConfigMap == nil {
		t.Errorf("%s: %s is not on a ConfigMap volume", w.key, file)
		return nil, "", false
	}
	cm := s.configMap(w.key.Namespace, v.ConfigMap.Name)
	if cm == nil {
		return nil, "", false // TestPodReferences reports it
	}
	return cm, rel, true
}

// checkTLSFiles checks each file is a key of a Secret volume of the container.
func checkTLSFiles(t *testing.T, where string, w workload, c *corev1.Container, files ...string) {
	t.Helper()
	for _, f := range files {
		m, rel, ok := mountOf(c, f)
		v, _ := volume(w.pod, m.Name)
		if !ok || v.Secret == nil || !slices.Contains(tlsKeys, rel) {
			t.Errorf("%s: TLS file %s is not one of %v of a Secret mounted in %s", where, f, tlsKeys, c.Name)
		}
	}
}

func TestSiteConfiguration(t *testing.T) {
	for _, r := range renderings {
		t.Run(r.name, func(t *testing.T) {
			s := render(t, r)
			storage := checkStorageNodes(t, s)
			agents := checkAgentConfigs(t, s)
			if !r.example {
				if len(storage.StorageNodes) != 0 || len(agents) != 0 {
					t.Error("the defaults configure no site")
				}
				return
			}
			if len(storage.StorageNodes) == 0 || len(agents) == 0 {
				t.Fatal("the example configures no storage nodes or agents")
			}
			// Every agent is a storage node the controller knows, at the address it listens on.
			for key, a := range agents {
				n, ok := storage.Node(a.NodeName)
				if !ok {
					t.Errorf("agent %s: nodeName %s is not among the controller's storage nodes", key, a.NodeName)
					continue
				}
				lu, err := url.Parse(a.Listen)
				if err != nil {
					t.Fatal(err)
				}
				lhost, lport, _ := net.SplitHostPort(lu.Host)
				host, port, _ := net.SplitHostPort(n.Address)
				if port != lport || (lhost != "0.0.0.0" && lhost != "" && lhost != host) {
					t.Errorf("agent %s listens on %s; the controller dials %s", key, lu.Host, n.Address)
				}
			}
		})
	}
}

func checkStorageNodes(t *testing.T, s *set) agentclient.Config {
	w, ok := s.workload("Deployment", "nvmeof-csi-controller")
	if !ok {
		t.Fatal("no controller")
	}
	plugin, _ := csiPlugin(t, w)
	file, ok := flagValue(plugin.Args, "storage-nodes")
	if !ok {
		t.Fatal("controller: no --storage-nodes")
	}
	cm, key, ok := configFile(t, s, w, plugin, file)
	if !ok {
		t.FailNow()
	}
	raw, ok := cm.Data[key]
	if !ok {
		t.Fatalf("controller: --storage-nodes=%s: ConfigMap %s has no key %s", file, cm.Name, key)
	}
	cfg, err := agentclient.ParseConfig([]byte(raw))
	if err != nil {
		t.Fatalf("controller: ConfigMap %s, %s: %v", cm.Name, key, err)
	}
	for _, n := range cfg.StorageNodes {
		if !n.TLS.Empty() {
			checkTLSFiles(t, "storage node "+n.Name, w, plugin, n.TLS.Cert, n.TLS.Key, n.TLS.CA)
		}
	}
	return cfg
}

func checkAgentConfigs(t *testing.T, s *set) map[string]agent.Config {
	w, ok := s.workload("DaemonSet", "nvmeof-agent")
	if !ok {
		t.Fatal("no agent")
	}
	c := &w.pod.Spec.Containers[0]
	file, ok := flagValue(c.Args, "config")
	if !ok || filepath.Base(file) != "$(NODE_NAME).yaml" {
		t.Fatalf("agent: --config=%s: want <dir>/$(NODE_NAME).yaml", file)
	}
	cm, _, ok := configFile(t, s, w, c, file)
	if !ok {
		t.FailNow()
	}
	out := map[string]agent.Config{}
	dir := t.TempDir()
	for key, raw := range cm.Data {
		if !strings.HasSuffix(key, ".yaml") {
			t.Errorf("agent ConfigMap %s: key %s: want <node name>.yaml", cm.Name, key)
			continue
		}
		p := filepath.Join(dir, key)
		if err := os.WriteFile(p, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := agent.LoadConfig(p)
		if err != nil {
			t.Errorf("agent ConfigMap %s: %v", cm.Name, err)
			continue
		}
		if !cfg.TLS.Empty() {
			checkTLSFiles(t, "agent "+key, w, c, cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
		}
		out[key] = cfg
	}
	return out
}

func TestStorageAndSnapshotClasses(t *testing.T) {
	for _, r := range renderings {
		s := render(t, r)
		var classes, snapClasses, groupClasses, defaults int
		for _, o := range s.objs {
			switch c := o.Obj.(type) {
			case *storagev1.StorageClass:
				classes++
				where := r.name + ": StorageClass " + c.Name
				if c.Provisioner != driverName {
					t.Errorf("%s: provisioner %s", where, c.Provisioner)
				}
				if _, err := contract.ParseParams(c.Parameters); err != nil {
					t.Errorf("%s: %v", where, err)
				}
				if fs, ok := c.Parameters["csi.storage.k8s.io/fstype"]; ok && fs != "ext4" && fs != "xfs" {
					t.Errorf("%s: fstype %s: the driver supports ext4 and xfs", where, fs)
				}
				if c.VolumeBindingMode == nil || *c.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
					t.Errorf("%s: placement by topology and capacity tracking need volumeBindingMode WaitForFirstConsumer", where)
				}
				if c.Annotations["storageclass.kubernetes.io/is-default-class"] == "true" {
					defaults++
				}
			case *snapshotv1.VolumeSnapshotClass:
				snapClasses++
				if c.Driver != driverName || len(c.Parameters) != 0 {
					t.Errorf("%s: VolumeSnapshotClass %s: want driver %s without parameters", r.name, c.Name, driverName)
				}
			case *groupsnapshotv1.VolumeGroupSnapshotClass:
				// The group controller refuses every parameter but the sidecar's reserved
				// csi.storage.k8s.io/ ones.
				groupClasses++
				if c.Driver != driverName || len(c.Parameters) != 0 {
					t.Errorf("%s: VolumeGroupSnapshotClass %s: want driver %s without parameters", r.name, c.Name, driverName)
				}
			}
		}
		if defaults > 1 {
			t.Errorf("%s: %d default StorageClasses", r.name, defaults)
		}
		if r.example && (classes == 0 || snapClasses != 1 || groupClasses != 1) {
			t.Errorf("%s: the example has %d StorageClasses, %d VolumeSnapshotClasses and %d VolumeGroupSnapshotClasses",
				r.name, classes, snapClasses, groupClasses)
		}
	}
}
