//go:build vm

package twokernel

import (
	"os"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/mtls/mtlstest"
)

// Sizes of the two machines. The storage VM's dmthin pool: 512 MiB of metadata (the record
// store and the dm-thin metadata) and 8 GiB of data; its lvm pool: a volume group on a third
// disk of 8 GiB; all sparse host files.
const (
	storageMemoryMiB = 2048
	workerMemoryMiB  = 2048
	metaDiskBytes    = 512 << 20
	dataDiskBytes    = 8 << 30
	storageNodeName  = "sn-1"
	workerNodeName   = "worker-1"
	agentPort        = "9600"
)

// twoKernel is a storage VM and a worker VM on one private link, and the mTLS material of the
// agent and the controller.
type twoKernel struct {
	c       *vmtest.Cluster
	storage *vmtest.Machine
	worker  *vmtest.Machine
	tls     tlsBundle
	// pluginUp: the worker's CSI plugin runs.
	pluginUp bool
}

// newTwoKernel boots both machines (the storage VM first in the cluster: 192.0.2.1; the
// worker: 192.0.2.2).
func newTwoKernel(t *testing.T) *twoKernel {
	t.Helper()
	c := vmtest.NewCluster(t)
	tk := &twoKernel{c: c}
	tk.storage = c.Add(t, vmtest.MachineConfig{
		Name: "storage", MemoryMiB: storageMemoryMiB,
		Disks: []vmtest.Disk{
			{Name: "meta", Size: metaDiskBytes}, {Name: "data", Size: dataDiskBytes}, // dmthin
			{Name: "lvm", Size: dataDiskBytes}, // the lvm backend's volume group
		},
	})
	tk.worker = c.Add(t, vmtest.MachineConfig{Name: "worker", MemoryMiB: workerMemoryMiB})
	tk.tls = newTLSBundle(t, tk.storage.Addr())
	c.Boot(t, tk.storage, tk.worker)
	return tk
}

// startPluginOnce starts the worker's CSI plugin unless it runs already (subtests share it).
func (tk *twoKernel) startPluginOnce(t *testing.T, in pluginIn) {
	t.Helper()
	if tk.pluginUp {
		return
	}
	startPlugin.Run(t, tk.worker, in)
	tk.pluginUp = true
}

// agentAddr is the agent's gRPC address (mTLS) on the private link.
func (tk *twoKernel) agentAddr() string { return tk.storage.Addr() + ":" + agentPort }

// tlsBundle is the PEM content of a CA, the agent's certificate (for the storage VM's address)
// and the controller's, carried to the guests in step arguments.
type tlsBundle struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

func newTLSBundle(t *testing.T, serverAddr string) tlsBundle {
	ca := mtlstest.NewCA(t, "twokernel")
	server, client := ca.Issue(t, serverAddr), ca.Issue(t, "controller")
	read := func(p string) string {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	return tlsBundle{
		CA: read(server.CA), ServerCert: read(server.Cert), ServerKey: read(server.Key),
		ClientCert: read(client.Cert), ClientKey: read(client.Key),
	}
}

// write writes the bundle's files into dir and names them.
func (b tlsBundle) write(t testing.TB, dir string) (server, client mtls.Files) {
	t.Helper()
	files := map[string]string{
		"ca.pem": b.CA, "server.pem": b.ServerCert, "server-key.pem": b.ServerKey,
		"client.pem": b.ClientCert, "client-key.pem": b.ClientKey,
	}
	for name, content := range files {
		if err := os.WriteFile(dir+"/"+name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	server = mtls.Files{Cert: dir + "/server.pem", Key: dir + "/server-key.pem", CA: dir + "/ca.pem"}
	client = mtls.Files{Cert: dir + "/client.pem", Key: dir + "/client-key.pem", CA: dir + "/ca.pem"}
	return server, client
}
