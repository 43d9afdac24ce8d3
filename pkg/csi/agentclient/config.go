// Package agentclient gives the CSI controller its view of the storage nodes: the configuration
// (which agents exist, where they listen, how to authenticate to them, where they are in the
// topology) and a Source of agent API clients, one per storage node.
package agentclient

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/yamlstrict"
)

// Config lists the storage nodes the controller manages. It is read from a YAML file, in
// Kubernetes a ConfigMap mounted into the controller pod:
//
//	storageNodes:
//	- name: storage-1
//	  address: storage-1.example.net:9500
//	  tls: {cert: /etc/nvmeof/tls/tls.crt, key: /etc/nvmeof/tls/tls.key, ca: /etc/nvmeof/tls/ca.crt}
//	  topology: {topology.nvmeof.csi.io/zone: a}
//	- name: storage-2
//	  address: unix:///run/nvmeof-agent/agent.sock
type Config struct {
	StorageNodes []StorageNode `json:"storageNodes"`
}

// StorageNode is one agent.
type StorageNode struct {
	// Name is the storage node's name as it appears in volume and snapshot IDs; it must equal
	// the agent's own nodeName. Renaming a storage node orphans its volumes' IDs.
	Name string `json:"name"`
	// Address is unix:///path (plaintext allowed) or host:port (mTLS required).
	Address string `json:"address"`
	// TLS authenticates the controller to the agent and the agent to the controller.
	TLS TLS `json:"tls,omitempty"`
	// Topology labels say where the storage node's volumes are reachable from: a volume on
	// this node is accessible from the worker nodes whose topology segments contain all of
	// these labels. No labels: reachable from everywhere.
	Topology map[string]string `json:"topology,omitempty"`
}

// TLS names the controller's client certificate, its key and the CA that signed the agents'
// certificates.
type TLS struct {
	mtls.Files
	// ServerName is the name the agent's certificate must carry (default: the host of
	// Address).
	ServerName string `json:"serverName,omitempty"`
}

// LoadConfig reads and validates a configuration file; unknown fields are errors.
func LoadConfig(path string) (Config, error) { return yamlstrict.Load[Config](path) }

// ParseConfig decodes (strictly: unknown and duplicate fields are errors) and validates a
// configuration.
func ParseConfig(raw []byte) (Config, error) { return yamlstrict.Decode[Config](raw) }

// Validate checks names (storage node name format, unique), addresses, TLS (required for
// TCP: plaintext only on a unix socket; all three files or none) and topology keys.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, n := range c.StorageNodes {
		where := fmt.Sprintf("storageNodes[%d] (%s)", i, n.Name)
		if !ValidName(n.Name) {
			errs = append(errs, fmt.Errorf("%s: name %q: want lowercase letters, digits, '-' and '.', at most 63 characters, starting and ending with a letter or digit", where, n.Name))
		}
		if seen[n.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate name", where))
		}
		seen[n.Name] = true
		if err := n.validateAddress(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if !n.TLS.Empty() && (n.TLS.Cert == "" || n.TLS.Key == "" || n.TLS.CA == "") {
			errs = append(errs, fmt.Errorf("%s: tls needs cert, key and ca", where))
		}
		if n.TLS.Empty() && n.TLS.ServerName != "" {
			errs = append(errs, fmt.Errorf("%s: tls.serverName without cert, key and ca", where))
		}
		for k := range n.Topology {
			if k == "" || strings.ContainsAny(k, " \t\n,=") {
				errs = append(errs, fmt.Errorf("%s: topology key %q is not a label key", where, k))
			}
		}
	}
	return errors.Join(errs...)
}

func (n StorageNode) validateAddress() error {
	if path, ok := strings.CutPrefix(n.Address, "unix://"); ok {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("address %q: want unix:///absolute/path", n.Address)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(n.Address)
	if err != nil || host == "" {
		return fmt.Errorf("address %q: want unix:///path or host:port", n.Address)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: bad port", n.Address)
	}
	if n.TLS.Empty() {
		return fmt.Errorf("address %q is TCP and needs tls (cert, key, ca): plaintext is allowed only on a unix socket", n.Address)
	}
	return nil
}

// Node returns the storage node called name.
func (c Config) Node(name string) (StorageNode, bool) {
	for _, n := range c.StorageNodes {
		if n.Name == name {
			return n, true
		}
	}
	return StorageNode{}, false
}

// ValidName reports whether name is a valid storage node name (the format of the storage node
// part of volume and snapshot IDs in package contract).
func ValidName(name string) bool {
	// contract keeps its name pattern private; an ID built from the name parses only if the
	// name is valid (a '/' in name fails the agent ID part).
	const anyAgentID = "vol-00000000000000000000000000000000"
	node, _, ok := contract.ParseObjectID(contract.ObjectID(name, anyAgentID), "vol")
	return ok && node == name
}
