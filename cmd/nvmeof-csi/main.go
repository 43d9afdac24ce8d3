// Command nvmeof-csi is the CSI plugin of nvmeof-csi: the controller service talks to the
// storage-node agents, the node service connects NVMe-oF paths and mounts volumes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/node"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/version"
)

func main() {
	klog.InitFlags(nil)
	var o plugin.Options
	var topology string
	showVersion := flag.Bool("version", false, "print the version and exit")
	releasePaths := flag.Duration("release-paths", 0, "do not serve: give every NVMe-oF controller of an nvmeof-csi volume on this host a ctrl_loss_tmo of this "+
		"duration and fail queued I/O fast, so that a host shutdown's unmounts end within it even when the storage is unreachable, then exit "+
		"(deploy/systemd/nvmeof-csi-shutdown.service)")
	flag.StringVar(&o.Mode, "mode", plugin.ModeAll, "which CSI services to serve: controller, node or all")
	flag.StringVar(&o.Endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint (unix:///path or tcp://host:port)")
	flag.StringVar(&o.StorageNodes, "storage-nodes", "/etc/nvmeof-csi/storage-nodes.yaml", "controller: storage-node configuration file")
	flag.DurationVar(&o.AgentTimeout, "agent-timeout", 30*time.Second, "controller: bound of each agent call")
	flag.DurationVar(&o.ProbeTimeout, "probe-timeout", 3*time.Second, "controller: bound of Probe's agent checks; also bounds each --healthz-address check")
	flag.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "node: this worker's Kubernetes node name (default $NODE_NAME)")
	flag.StringVar(&o.IdentityDir, "identity-dir", "/etc/nvme", "node: directory of the host's hostnqn and hostid (created when missing)")
	flag.StringVar(&topology, "topology", "", "node: accessible topology segments, key=value,key=value")
	flag.Int64Var(&o.MaxVolumesPerNode, "max-volumes-per-node", 0, "node: volumes this node may attach (0: no limit reported)")
	flag.StringVar(&o.MetricsAddress, "metrics-address", "", "serve GET /metrics (Prometheus) on this host:port, e.g. :9811 (empty: off)")
	flag.DurationVar(&o.HealInterval, "heal-interval", node.DefaultHealInterval, "node: how often staged volumes' paths are repaired (reconnect dropped portals, delete dead controllers, rescan); 0: never")
	flag.StringVar(&o.StateDir, "state-dir", "", "node: where staging state is kept (default under the kubelet plugin directory)")
	// Built-in replacements for the node-driver-registrar and livenessprobe sidecars, for
	// clusters where those are unavailable; off by default (the production manifests use the
	// sidecars).
	flag.StringVar(&o.RegistrationDir, "registration-dir", "", "node: register with the kubelet through this directory, the kubelet's plugins_registry as mounted here (empty: off; needs --kubelet-registration-path)")
	flag.StringVar(&o.KubeletRegistrationPath, "kubelet-registration-path", "", "node: the CSI socket's path on the host, which the kubelet dials, e.g. /var/lib/kubelet/plugins/nvmeof.csi.io/csi.sock (with --registration-dir)")
	flag.StringVar(&o.HealthzAddress, "healthz-address", "", "serve GET /healthz (200 when Probe reports ready, else 503) on this host:port, e.g. :9818 (empty: off)")
	flag.Parse()

	if *showVersion {
		fmt.Println(version.String("nvmeof-csi"))
		return
	}
	if *releasePaths > 0 {
		os.Exit(release(*releasePaths))
	}
	var err error
	if o.Topology, err = parseSegments(topology); err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-csi: --topology:", err)
		os.Exit(2)
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-csi:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := plugin.Run(ctx, o); err != nil {
		klog.ErrorS(err, "nvmeof-csi failed")
		klog.Flush()
		os.Exit(1)
	}
}

// parseSegments parses "k=v,k2=v2".
func parseSegments(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// release is --release-paths: bound the waits of this host's nvmeof-csi controllers.
func release(d time.Duration) int {
	in := &nvme.Initiator{}
	changed, err := in.ReleaseTimeouts(contract.SubsystemNQNPrefix, int(d.Round(time.Second)/time.Second))
	fmt.Printf("nvmeof-csi: ctrl_loss_tmo %s and fast I/O failure set on %d controllers %v\n", d.Round(time.Second), len(changed), changed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nvmeof-csi: --release-paths:", err)
		return 1
	}
	return 0
}
