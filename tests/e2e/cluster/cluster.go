// Package cluster runs a one-node Kubernetes cluster inside the test VM: etcd, the control plane,
// containerd and a kubelet, all from binaries built on the host (hack/build-k8s.sh) and images
// written there (hack/build-images.sh). Nothing is pulled: the VM has no network to the outside.
//
// The node's address and the API's service address live on guest-only interfaces. The API
// server listens on port 443 of every guest address, and the first service address
// (10.96.0.1) is a local address of the guest: pods reach the API through the "kubernetes"
// Service without a kube-proxy. Pods get addresses on a guest-only bridge (the bridge CNI
// plugin).
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Addresses of the cluster inside the guest.
const (
	APIServiceIP = "10.96.0.1"
	ServiceRange = "10.96.0.0/16"
	PodSubnet    = "10.244.0.0/24"
	apiPort      = 443
)

// Config says where the parts come from and where the cluster lives.
type Config struct {
	// BinDir holds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl
	// and etcd.
	BinDir string
	// ImageDir holds image tarballs and list.txt ("<file> <ref>[,<ref>...]" per line).
	ImageDir string
	// WorkDir holds certificates, configuration, etcd's data and the logs (tmpfs is fine).
	WorkDir string
	// DataDir is on a real disk: containerd's image store.
	DataDir string
	// NodeName and NodeIP name the one node; NodeIP must be a guest address that is not
	// loopback.
	NodeName, NodeIP string
	// Log receives progress lines.
	Log io.Writer
}

// Cluster is a running cluster.
type Cluster struct {
	cfg        Config
	Kubeconfig string
	REST       *rest.Config
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface
	procs      []*proc
}

// LogDir holds one log file per component.
func (c *Cluster) LogDir() string { return filepath.Join(c.cfg.WorkDir, "logs") }

// NodeName is the node's name.
func (c *Cluster) NodeName() string { return c.cfg.NodeName }

// Start brings the cluster up and returns once the node is Ready. On error, what was started is
// stopped again.
func Start(ctx context.Context, cfg Config) (c *Cluster, err error) {
	c = &Cluster{cfg: cfg}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, d := range []string{c.LogDir(), filepath.Join(cfg.WorkDir, "pki"), cfg.DataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var files controlPlaneFiles
	err = RunSteps(cfg.Log, "cluster", []Step{
		{"host prepared", func() error { return prepareHost(ctx) }},
		{"certificates written", func() (err error) { files, err = c.writeFiles(); return err }},
		{"etcd ready", func() error { return c.startEtcd(ctx) }},
		{"kube-apiserver ready", func() error { return c.startAPIServer(ctx, files) }},
		{"containerd ready, images imported", func() error { return c.startContainerd(ctx) }},
		{"controller-manager and scheduler started", func() error { return c.startControllers(files) }},
		{"kubelet registered, node Ready", func() error { return c.startKubelet(ctx, files) }},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Step is one named step of a bring-up.
type Step struct {
	Name string
	Do   func() error
}

// RunSteps runs steps in order and prints each one's duration to log as "<prefix>: <name>
// (<duration>)"; the first error stops them and names its step.
func RunSteps(log io.Writer, prefix string, steps []Step) error {
	for _, st := range steps {
		start := time.Now()
		if err := st.Do(); err != nil {
			return fmt.Errorf("%s: %w", st.Name, err)
		}
		if log != nil {
			fmt.Fprintf(log, "%s: %s (%s)\n", prefix, st.Name, time.Since(start).Round(100*time.Millisecond))
		}
	}
	return nil
}

// Stop stops every component, the last started first, and waits for them.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(20 * time.Second)
	}
	c.procs = nil
}

// Kubectl runs kubectl against the cluster, bounded by ctx.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.cfg.BinDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Tail returns the last n lines of a component's log.
func (c *Cluster) Tail(component string, n int) string {
	data, err := os.ReadFile(filepath.Join(c.LogDir(), component+".log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// prepareHost gives the guest what a kubelet host has: cgroup v2 with its controllers
// delegated, shared mount propagation (the CSI node plugin's Bidirectional mounts), a bridge
// for pods, forwarding, and the API service address on a dummy interface.
func prepareHost(ctx context.Context) error {
	cmds := [][]string{
		{"modprobe", "-a", "bridge", "overlay"},
		{"mount", "--make-rshared", "/"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	for _, args := range cmds {
		if _, err := Run(ctx, args[0], args[1:]...); err != nil {
			return err
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		if _, err := Run(ctx, "mount", "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"); err != nil {
			return err
		}
	}
	ctrls, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return err
	}
	var enable []string
	for _, f := range strings.Fields(string(ctrls)) {
		enable = append(enable, "+"+f)
	}
	if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte(strings.Join(enable, " ")), 0o644); err != nil {
		return fmt.Errorf("delegate cgroup controllers: %w", err)
	}
	if err := settleStaticKeys(ctx); err != nil {
		return err
	}
	if _, err := net.InterfaceByName("kube0"); err != nil {
		for _, args := range [][]string{
			{"link", "add", "kube0", "type", "dummy"},
			{"addr", "add", APIServiceIP + "/32", "dev", "kube0"},
			{"link", "set", "kube0", "up"},
		} {
			if _, err := Run(ctx, "ip", args...); err != nil {
				return err
			}
		}
	}
	// A resolv.conf for pods (dnsPolicy Default and ClusterFirst without cluster DNS).
	if _, err := os.Stat("/etc/resolv.conf"); err != nil {
		if err := os.WriteFile("/etc/resolv.conf", []byte("# no DNS in the test VM\n"), 0o644); err != nil {
			return err
		}
	}
	for _, d := range []string{"/etc/cni/net.d", "/var/lib/kubelet", "/var/log/pods"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile("/etc/cni/net.d/10-e2e.conflist", []byte(fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
`, PodSubnet)), 0o644)
}

// staticKeysRuleset hooks an empty, accepting base chain into every IPv4 and IPv6 hook.
const staticKeysRuleset = `table inet nvmeof_e2e_static_keys {
	chain prerouting { type filter hook prerouting priority 0; policy accept; }
	chain input { type filter hook input priority 0; policy accept; }
	chain forward { type filter hook forward priority 0; policy accept; }
	chain output { type filter hook output priority 0; policy accept; }
	chain postrouting { type filter hook postrouting priority 0; policy accept; }
}
`

// settleStaticKeys turns on, while nothing else runs in the guest, the kernel static keys that
// the cluster would otherwise turn on (and off) under load: the netfilter hooks (the kubelet's
// iptables canary and the CNI plugin register and drop base chains) and the memory and cpuset
// cgroup keys (the first pod cgroup). A static key is flipped by patching kernel text (an int3,
// then the new bytes); under multi-threaded TCG another vCPU has been seen to run the stale
// int3 after the patch ended, and the guest died ("Oops: int3" in __ip_local_out under etcd's
// writes). Held from here on, these keys never flip again: a base chain and a cgroup that
// stay for the VM's life keep their counts above zero.
func settleStaticKeys(ctx context.Context) error {
	if err := os.MkdirAll("/sys/fs/cgroup/nvmeof-e2e-static-keys", 0o755); err != nil {
		return fmt.Errorf("hold the cgroup static keys: %w", err)
	}
	rules := filepath.Join(os.TempDir(), "nvmeof-e2e-static-keys.nft")
	if err := os.WriteFile(rules, []byte(staticKeysRuleset), 0o644); err != nil {
		return err
	}
	_, err := Run(ctx, "nft", "-f", rules)
	return err
}

type controlPlaneFiles struct {
	ca, apiCert, apiKey, saPub, saKey, tokens, adminKubeconfig string
}

const adminToken = "nvmeof-e2e-admin-token"

func (c *Cluster) writeFiles() (controlPlaneFiles, error) {
	dir := filepath.Join(c.cfg.WorkDir, "pki")
	p, err := NewPKI(dir, "nvmeof-e2e-ca")
	if err != nil {
		return controlPlaneFiles{}, err
	}
	f := controlPlaneFiles{ca: p.CAFile(), tokens: filepath.Join(dir, "tokens.csv")}
	f.apiCert, f.apiKey, err = p.Issue("kube-apiserver",
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(APIServiceIP), net.ParseIP(c.cfg.NodeIP)})
	if err != nil {
		return f, err
	}
	if f.saPub, f.saKey, err = serviceAccountKeys(dir); err != nil {
		return f, err
	}
	// One token for everything on the host side: admin, controllers, kubelet. This is a
	// throw-away cluster inside a VM.
	if err := os.WriteFile(f.tokens, []byte(adminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		return f, err
	}
	f.adminKubeconfig = filepath.Join(c.cfg.WorkDir, "admin.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, apiPort, f.ca, adminToken)
	if err := os.WriteFile(f.adminKubeconfig, []byte(kc), 0o600); err != nil {
		return f, err
	}
	c.Kubeconfig = f.adminKubeconfig
	return f, nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	data := filepath.Join(c.cfg.WorkDir, "etcd")
	if _, err := c.start("etcd", "etcd",
		"--name=e2e", "--data-dir="+data,
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=e2e=http://127.0.0.1:2380",
		// tmpfs below: fsync buys nothing.
		"--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return err
	}
	return c.waitHTTP(ctx, "etcd", "http://127.0.0.1:2379/health", nil, "", 2*time.Minute)
}

func (c *Cluster) startAPIServer(ctx context.Context, f controlPlaneFiles) error {
	if _, err := c.start("kube-apiserver", "kube-apiserver",
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", fmt.Sprintf("--secure-port=%d", apiPort),
		"--advertise-address="+c.cfg.NodeIP,
		"--tls-cert-file="+f.apiCert, "--tls-private-key-file="+f.apiKey,
		"--client-ca-file="+f.ca,
		"--token-auth-file="+f.tokens,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+f.saPub,
		"--service-account-signing-key-file="+f.saKey,
		"--service-cluster-ip-range="+ServiceRange,
		// The CSI node plugin and the agent run privileged.
		"--allow-privileged=true",
		// Logs and exec go to the kubelet at the node's address; its name resolves nowhere.
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(f.ca)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(caPEM)
	if err := c.waitHTTP(ctx, "kube-apiserver", fmt.Sprintf("https://127.0.0.1:%d/readyz", apiPort), pool, adminToken, 5*time.Minute); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", f.adminKubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if c.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	c.REST = cfg
	return nil
}

func (c *Cluster) startControllers(f controlPlaneFiles) error {
	if _, err := c.start("kube-controller-manager", "kube-controller-manager",
		"--kubeconfig="+f.adminKubeconfig,
		"--authentication-kubeconfig="+f.adminKubeconfig, "--authorization-kubeconfig="+f.adminKubeconfig,
		"--leader-elect=false",
		"--service-account-private-key-file="+f.saKey,
		"--root-ca-file="+f.ca,
		"--use-service-account-credentials=true",
		"--bind-address=127.0.0.1",
	); err != nil {
		return err
	}
	_, err := c.start("kube-scheduler", "kube-scheduler",
		"--kubeconfig="+f.adminKubeconfig,
		"--authentication-kubeconfig="+f.adminKubeconfig, "--authorization-kubeconfig="+f.adminKubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
	)
	return err
}

const containerdSocket = "/run/containerd/containerd.sock"

func (c *Cluster) startContainerd(ctx context.Context) error {
	conf := filepath.Join(c.cfg.WorkDir, "containerd.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`version = 2
root = %q
state = "/run/containerd"
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
`, filepath.Join(c.cfg.DataDir, "containerd"), containerdSocket)), 0o644); err != nil {
		return err
	}
	if _, err := c.startPath("containerd", "containerd", "--config", conf); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := Run(ctx, "ctr", "--address", containerdSocket, "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not answer within a minute:\n%s", c.Tail("containerd", 20))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return c.importImages(ctx)
}

// importImages imports every tarball of list.txt into containerd's k8s.io namespace.
func (c *Cluster) importImages(ctx context.Context) error {
	list, err := os.Open(filepath.Join(c.cfg.ImageDir, "list.txt"))
	if err != nil {
		return fmt.Errorf("%w (run hack/build-images.sh)", err)
	}
	defer list.Close()
	sc := bufio.NewScanner(list)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		tar := fields[0]
		if !filepath.IsAbs(tar) {
			tar = filepath.Join(c.cfg.ImageDir, tar)
		}
		if _, err := Run(ctx, "ctr", "--address", containerdSocket, "-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs", tar); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (c *Cluster) startKubelet(ctx context.Context, f controlPlaneFiles) error {
	conf := filepath.Join(c.cfg.WorkDir, "kubelet.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
# A throw-away node inside a VM: the API server's calls (logs, exec) need no credentials.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
# Everything but containerd's store is tmpfs: evict only when truly out.
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
syncFrequency: 10s
fileCheckFrequency: 10s
maxPods: 60
`, containerdSocket)), 0o644); err != nil {
		return err
	}
	if _, err := c.start("kubelet", "kubelet",
		"--config="+conf,
		"--kubeconfig="+f.adminKubeconfig,
		"--hostname-override="+c.cfg.NodeName,
		"--node-ip="+c.cfg.NodeIP,
	); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, c.cfg.NodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not Ready within 5 minutes:\n%s", c.cfg.NodeName, c.Tail("kubelet", 30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// waitHTTP polls url until it answers 200, the process exits or timeout passes.
func (c *Cluster) waitHTTP(ctx context.Context, component, url string, pool *x509.CertPool, token string, timeout time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p := c.proc(component); p != nil && p.exited() {
			return fmt.Errorf("%s exited:\n%s", component, c.Tail(component, 30))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("%s not ready within %s (%v):\n%s", component, timeout, last, c.Tail(component, 30))
}

// proc is one component process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) stop(grace time.Duration) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.log.Close()
}

func (c *Cluster) proc(name string) *proc {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// start runs a binary of BinDir; startPath one found on PATH.
func (c *Cluster) start(name, binary string, args ...string) (*proc, error) {
	return c.startPath(name, filepath.Join(c.cfg.BinDir, binary), args...)
}

func (c *Cluster) startPath(name, binary string, args ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(c.LogDir(), name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return p, nil
}

// Run runs a command to completion, bounded by ctx and two minutes, and returns its output.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out: %w", err)
		}
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}
