package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/agentclient"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// storageNodesKey is the key of the storage-node list in its ConfigMap.
const storageNodesKey = "storage-nodes.yaml"

// agentCallTimeout bounds each agent call: an unreachable storage node is reported as such
// instead of stalling the command.
const agentCallTimeout = 15 * time.Second

// env is what a command works with; each part is made on first use.
type env struct {
	opts        *options
	in          io.Reader
	out, errOut io.Writer

	// kube and dyn are the cluster (nil without one); tests set them.
	kube kubernetes.Interface
	dyn  dynamic.Interface
	// nodes are the storage nodes and agents their clients; tests set both.
	nodes  []agentclient.StorageNode
	agents agentclient.Source
	// initiator reads this machine's NVMe controllers.
	initiator *nvme.Initiator

	closers []func() error
	tmpDir  string
}

func (e *env) close() {
	for _, c := range slices.Backward(e.closers) {
		_ = c()
	}
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
}

// cluster connects to the Kubernetes API with the usual kubeconfig rules (e.kube, e.dyn).
func (e *env) cluster() (kubernetes.Interface, error) {
	if e.kube != nil {
		return e.kube, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if e.opts.kubeconfig != "" {
		rules.ExplicitPath = e.opts.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: e.opts.kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "nvmeofctl"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if e.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	e.kube = kube
	return e.kube, nil
}

// inCluster reports whether the command should read the cluster: always, unless the storage
// nodes come from a file and no kubeconfig was named.
func (e *env) inCluster() bool {
	return e.kube != nil || e.opts.nodesFile == "" || e.opts.kubeconfig != ""
}

// storageNodes returns the storage nodes and a Source of their agents: from --storage-nodes,
// or from the driver's ConfigMap with the controller's client certificate from its Secret
// (written to a private temporary directory for the life of the command).
func (e *env) storageNodes(ctx context.Context) ([]agentclient.StorageNode, agentclient.Source, error) {
	if e.agents != nil {
		return e.nodes, e.agents, nil
	}
	var cfg agentclient.Config
	var err error
	if e.opts.nodesFile != "" {
		if cfg, err = agentclient.LoadConfig(e.opts.nodesFile); err != nil {
			return nil, nil, err
		}
	} else if cfg, err = e.clusterStorageNodes(ctx); err != nil {
		return nil, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("storage nodes: %w", err)
	}
	p, err := agentclient.NewPool(cfg, agentclient.CallTimeout(agentCallTimeout), grpc.WithUserAgent("nvmeofctl"))
	if err != nil {
		return nil, nil, err
	}
	e.closers = append(e.closers, p.Close)
	e.nodes, e.agents = cfg.StorageNodes, p
	return e.nodes, e.agents, nil
}

func (e *env) clusterStorageNodes(ctx context.Context) (agentclient.Config, error) {
	kube, err := e.cluster()
	if err != nil {
		return agentclient.Config{}, err
	}
	ns := e.opts.namespace
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, e.opts.nodesMap, metav1.GetOptions{})
	if err != nil {
		return agentclient.Config{}, fmt.Errorf("the driver's storage nodes (ConfigMap %s/%s): %w", ns, e.opts.nodesMap, err)
	}
	cfg, err := agentclient.ParseConfig([]byte(cm.Data[storageNodesKey]))
	if err != nil {
		return agentclient.Config{}, fmt.Errorf("ConfigMap %s/%s, key %s: %w", ns, e.opts.nodesMap, storageNodesKey, err)
	}
	if !slices.ContainsFunc(cfg.StorageNodes, func(n agentclient.StorageNode) bool { return !n.TLS.Empty() }) {
		return cfg, nil
	}
	secret, err := kube.CoreV1().Secrets(ns).Get(ctx, e.opts.tlsSecret, metav1.GetOptions{})
	if err != nil {
		return agentclient.Config{}, fmt.Errorf("the controller's client certificate (Secret %s/%s): %w", ns, e.opts.tlsSecret, err)
	}
	if e.tmpDir, err = os.MkdirTemp("", "nvmeofctl-tls-"); err != nil {
		return agentclient.Config{}, err
	}
	files := map[string]string{}
	for _, key := range []string{"tls.crt", "tls.key", "ca.crt"} {
		data, ok := secret.Data[key]
		if !ok {
			return agentclient.Config{}, fmt.Errorf("the Secret %s/%s has no key %s", ns, e.opts.tlsSecret, key)
		}
		files[key] = filepath.Join(e.tmpDir, key)
		if err := os.WriteFile(files[key], data, 0o600); err != nil {
			return agentclient.Config{}, err
		}
	}
	for i := range cfg.StorageNodes {
		t := &cfg.StorageNodes[i].TLS
		if !t.Empty() {
			t.Cert, t.Key, t.CA = files["tls.crt"], files["tls.key"], files["ca.crt"]
		}
	}
	return cfg, nil
}

// nodeReport is what one storage node's agent answered; Err is why it did not.
type nodeReport struct {
	node      agentclient.StorageNode
	info      *agentapi.InfoResponse
	capacity  *agentapi.GetCapacityResponse
	volumes   []*agentapi.Volume
	snapshots []*agentapi.Snapshot
	exports   *agentapi.ListExportsResponse
	err       error
}

// survey asks every storage node's agent, in parallel, what it holds.
func (e *env) survey(ctx context.Context) ([]*nodeReport, error) {
	nodes, agents, err := e.storageNodes(ctx)
	if err != nil {
		return nil, err
	}
	reports := make([]*nodeReport, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		reports[i] = &nodeReport{node: n}
		wg.Go(func() { reports[i].err = reports[i].fill(ctx, agents) })
	}
	wg.Wait()
	return reports, nil
}

func (r *nodeReport) fill(ctx context.Context, agents agentclient.Source) error {
	c, err := agents.Client(r.node.Name)
	if err != nil {
		return err
	}
	if r.info, err = c.Info(ctx, &agentapi.InfoRequest{}); err != nil {
		return err
	}
	if r.capacity, err = c.GetCapacity(ctx, &agentapi.GetCapacityRequest{}); err != nil {
		return err
	}
	vols, err := c.ListVolumes(ctx, &agentapi.ListVolumesRequest{WithUsage: true})
	if err != nil {
		return err
	}
	r.volumes = vols.GetVolumes()
	snaps, err := c.ListSnapshots(ctx, &agentapi.ListSnapshotsRequest{})
	if err != nil {
		return err
	}
	r.snapshots = snaps.GetSnapshots()
	r.exports, err = c.ListExports(ctx, &agentapi.ListExportsRequest{})
	return err
}
