package agentclient

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
)

func TestParseConfigAcceptsAFullConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
storageNodes:
- name: storage-1
  address: storage-1.example.net:9500
  tls: {cert: /tls/tls.crt, key: /tls/tls.key, ca: /tls/ca.crt, serverName: agent.storage-1}
  topology: {topology.nvmeof.csi.io/zone: a}
- name: storage-2
  address: unix:///run/nvmeof-agent/agent.sock
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{StorageNodes: []StorageNode{
		{
			Name:     "storage-1",
			Address:  "storage-1.example.net:9500",
			TLS:      TLS{Files: mtls.Files{Cert: "/tls/tls.crt", Key: "/tls/tls.key", CA: "/tls/ca.crt"}, ServerName: "agent.storage-1"},
			Topology: map[string]string{"topology.nvmeof.csi.io/zone": "a"},
		},
		{Name: "storage-2", Address: "unix:///run/nvmeof-agent/agent.sock"},
	}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("ParseConfig =\n%+v\nwant\n%+v", c, want)
	}
	if n, ok := c.Node("storage-2"); !ok || n.Address != "unix:///run/nvmeof-agent/agent.sock" {
		t.Errorf("Node(storage-2) = %+v, %v", n, ok)
	}
	if _, ok := c.Node("storage-3"); ok {
		t.Error("Node(storage-3) found")
	}
}

func TestParseConfigRejects(t *testing.T) {
	const tlsOK = `tls: {cert: /c, key: /k, ca: /ca}`
	for name, tc := range map[string]struct{ yaml, wantErr string }{
		"tcp without tls": {
			`storageNodes: [{name: s1, address: "10.0.0.1:9500"}]`,
			"plaintext is allowed only on a unix socket",
		},
		"unknown field": {
			`storageNodes: [{name: s1, address: "unix:///a.sock", portals: []}]`,
			"unknown field",
		},
		"unknown tls field": {
			`storageNodes: [{name: s1, address: "unix:///a.sock", tls: {cert: /c, key: /k, ca: /ca, insecure: true}}]`,
			"unknown field",
		},
		"unknown top-level field": {`nodes: []`, "unknown field"},
		"bad name": {
			`storageNodes: [{name: Storage_1, address: "unix:///a.sock"}]`,
			"name \"Storage_1\"",
		},
		"name with a slash": {
			`storageNodes: [{name: a/b, address: "unix:///a.sock"}]`,
			"name \"a/b\"",
		},
		"duplicate name": {
			`storageNodes: [{name: s1, address: "unix:///a.sock"}, {name: s1, address: "unix:///b.sock"}]`,
			"duplicate name",
		},
		"relative unix path": {
			`storageNodes: [{name: s1, address: "unix://a.sock"}]`,
			"absolute",
		},
		"no port": {
			`storageNodes: [{name: s1, address: "storage-1", ` + tlsOK + `}]`,
			"want unix:///path or host:port",
		},
		"bad port": {
			`storageNodes: [{name: s1, address: "storage-1:99999", ` + tlsOK + `}]`,
			"bad port",
		},
		"partial tls": {
			`storageNodes: [{name: s1, address: "10.0.0.1:9500", tls: {cert: /c}}]`,
			"tls needs cert, key and ca",
		},
		"empty topology key": {
			`storageNodes: [{name: s1, address: "unix:///a.sock", topology: {"": a}}]`,
			"topology key",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseConfig err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storage-nodes.yaml")
	if err := os.WriteFile(path, []byte(`storageNodes: [{name: s1, address: "10.0.0.1:9500"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadConfig err = %v, want it to name %s", err, path)
	}
	if err := os.WriteFile(path, []byte(`storageNodes: [{name: s1, address: "unix:///a.sock"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadConfig(path); err != nil || len(c.StorageNodes) != 1 {
		t.Fatalf("LoadConfig = %+v, %v", c, err)
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"s1": true, "storage-1.rack-2": true, "a": true,
		"": false, "-a": false, "a-": false, "A": false, "a/b": false, "a_b": false, strings.Repeat("a", 64): false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
