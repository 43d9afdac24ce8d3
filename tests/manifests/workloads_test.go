package manifests_test

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
)

// flagSet maps flag names to whether the flag is boolean (may be given without a value).
type flagSet map[string]bool

// binaryFlags reads the flags a binary of this repository defines: the flag.Xxx and
// flag.XxxVar calls in cmd/<binary>/*.go, plus klog's flags (klog.InitFlags).
func binaryFlags(t *testing.T, binary string) flagSet {
	t.Helper()
	dir := path(filepath.Join("cmd", binary))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no Go files (%v)", dir, err)
	}
	fs := flagSet{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "flag" {
				return true
			}
			method := sel.Sel.Name
			nameArg := 0
			switch {
			case strings.HasSuffix(method, "Var"): // flag.Var, flag.StringVar, ...
				nameArg = 1
			case method == "Func" || method == "BoolFunc":
			default:
				if _, ok := flagTypes[method]; !ok {
					return true // flag.Parse, flag.Args, ...
				}
			}
			if len(call.Args) <= nameArg {
				return true
			}
			lit, ok := call.Args[nameArg].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: flag.%s with a non-literal name", fset.Position(call.Pos()), method)
				return true
			}
			name, _ := strconv.Unquote(lit.Value)
			fs[name] = strings.HasPrefix(method, "Bool")
			return true
		})
	}
	if len(fs) == 0 {
		t.Fatalf("%s: found no flag definitions", dir)
	}
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	kfs.VisitAll(func(f *flag.Flag) {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		fs[f.Name] = ok && b.IsBoolFlag()
	})
	return fs
}

// The flag.Xxx(name, ...) definitions; flag.XxxVar(&v, name, ...) are recognized by suffix.
var flagTypes = map[string]bool{"Bool": true, "String": true, "Int": true, "Int64": true, "Uint": true,
	"Uint64": true, "Float64": true, "Duration": true}

// Flags of the sidecars at the versions the chart pins (read from each sidecar's cmd/ and
// csi-lib-utils standardflags at that version). A flag missing here is either a typo or new:
// check the sidecar's source at the pinned version before adding it.
var (
	loggingFlags  = flagSet{"v": false, "vmodule": false, "logging-format": false, "log-flush-frequency": false}
	standardFlags = flagSet{"version": true, "kubeconfig": false, "csi-address": false, "leader-election": true,
		"leader-election-namespace": false, "leader-election-lease-duration": false, "leader-election-renew-deadline": false,
		"leader-election-retry-period": false, "leader-election-labels": false, "kube-api-qps": false, "kube-api-burst": false,
		"http-endpoint": false, "metrics-address": false, "metrics-path": false}
	sidecarFlags = map[string]flagSet{
		"csi-provisioner": merge(loggingFlags, standardFlags, flagSet{"feature-gates": false, "timeout": false,
			"default-fstype": false, "extra-create-metadata": true, "enable-capacity": true, "capacity-ownerref-level": false,
			"capacity-poll-interval": false, "capacity-for-immediate-binding": true, "capacity-threads": false,
			"strict-topology": true, "immediate-topology": true, "worker-threads": false, "retry-interval-start": false,
			"retry-interval-max": false, "volume-name-prefix": false, "volume-name-uuid-length": false,
			"kube-api-capacity-qps": false, "kube-api-capacity-burst": false, "controller-publish-readonly": true,
			"prevent-volume-mode-conversion": true, "cloning-protection-threads": false, "enable-pprof": true}),
		"csi-attacher": merge(loggingFlags, standardFlags, flagSet{"feature-gates": false, "timeout": false, "resync": false,
			"retry-interval-start": false, "retry-interval-max": false, "worker-threads": false, "max-entries": false,
			"default-fstype": false, "reconcile-sync": false, "max-grpc-log-length": false}),
		"csi-snapshotter": merge(loggingFlags, standardFlags, flagSet{"feature-gates": false, "timeout": false,
			"resync-period": false, "snapshot-name-prefix": false, "snapshot-name-uuid-length": false, "worker-threads": false,
			"extra-create-metadata": true, "retry-interval-start": false, "retry-interval-max": false}),
		"csi-resizer": merge(loggingFlags, standardFlags, flagSet{"feature-gates": false, "timeout": false,
			"resync-period": false, "workers": false, "retry-interval-start": false, "retry-interval-max": false,
			"handle-volume-inuse-error": true, "extra-modify-metadata": true}),
		"csi-node-driver-registrar": merge(loggingFlags, flagSet{"csi-address": false, "kubelet-registration-path": false,
			"plugin-registration-path": false, "timeout": false, "http-endpoint": false, "health-port": false,
			"mode": false, "version": true, "enable-pprof": true}),
		// external-snapshot-metadata v1.0.0: pkg/sidecar/sidecar.go (its own flag set, with
		// klog's flags).
		"csi-snapshot-metadata": {"kubeconfig": false, "csi-address": false, "version": true, "timeout": false,
			"port": false, "tls-cert": false, "tls-key": false, "audience": false, "max-streaming-duration-min": false,
			"kube-api-qps": false, "kube-api-burst": false, "http-endpoint": false, "metrics-path": false,
			"disable-metrics": true, "v": false, "vmodule": false},
		"livenessprobe": merge(loggingFlags, flagSet{"csi-address": false, "probe-timeout": false, "http-endpoint": false,
			"health-port": false, "metrics-address": false, "metrics-path": false}),
	}
)

func merge(sets ...flagSet) flagSet {
	out := flagSet{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkArgs checks every argument is --flag=value of a known flag (or --flag for a boolean
// one) and every $(VAR) names an env variable of the container.
func checkArgs(t *testing.T, where string, c *corev1.Container, args []string, known flagSet) {
	t.Helper()
	env := map[string]bool{}
	if c != nil {
		for _, e := range c.Env {
			env[e.Name] = true
		}
	}
	for _, a := range args {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			if !env[m[1]] {
				t.Errorf("%s: argument %q refers to $(%s), which is not in the container's env", where, a, m[1])
			}
		}
		name, hasPrefix := strings.CutPrefix(a, "--")
		if !hasPrefix {
			t.Errorf("%s: argument %q: want --flag=value", where, a)
			continue
		}
		name, _, hasValue := strings.Cut(name, "=")
		isBool, ok := known[name]
		switch {
		case !ok:
			t.Errorf("%s: unknown flag --%s", where, name)
		case !hasValue && !isBool:
			t.Errorf("%s: --%s needs =value", where, name)
		}
	}
}

// entrypoint is the binary the image runs without a command: the Dockerfile's ENTRYPOINT.
func entrypoint(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(path("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("Dockerfile: no ENTRYPOINT [\"...\"]")
	}
	return string(m[1])
}

const ourImage = "/nvmeof-csi" // suffix of the nvmeof-csi image repository

// The binaries of the nvmeof-csi image the manifests may run.
var imageBinaries = []string{"nvmeof-csi", "nvmeof-agent"}

// binaryOf returns which of our binaries a container runs ("" for a sidecar).
func binaryOf(t *testing.T, c *corev1.Container) string {
	if !strings.HasSuffix(repository(c.Image), ourImage) {
		return ""
	}
	if len(c.Command) > 0 {
		return filepath.Base(c.Command[0])
	}
	return filepath.Base(entrypoint(t))
}

func TestContainerArgsAreFlagsOfTheirBinaries(t *testing.T) {
	ours := map[string]flagSet{}
	for _, bin := range imageBinaries {
		ours[bin] = binaryFlags(t, bin)
	}
	for _, r := range renderings {
		for _, w := range render(t, r).workloads() {
			for i := range w.pod.Spec.Containers {
				c := &w.pod.Spec.Containers[i]
				where := r.name + ": " + w.key.String() + " container " + c.Name
				if bin := binaryOf(t, c); bin != "" {
					known, ok := ours[bin]
					if !ok {
						t.Errorf("%s: runs %s, which is not a binary of the image", where, bin)
						continue
					}
					checkArgs(t, where, c, c.Args, known)
					continue
				}
				known, ok := sidecarFlags[filepath.Base(repository(c.Image))]
				if !ok {
					t.Errorf("%s: unknown image %s", where, c.Image)
					continue
				}
				if len(c.Command) > 0 {
					t.Errorf("%s: a sidecar keeps its image's entrypoint", where)
				}
				checkArgs(t, where, c, c.Args, known)
			}
		}
	}
}

// csiPlugin returns the pod's nvmeof-csi container and the path of its unix socket.
func csiPlugin(t *testing.T, w workload) (*corev1.Container, string) {
	for i := range w.pod.Spec.Containers {
		c := &w.pod.Spec.Containers[i]
		if binaryOf(t, c) != "nvmeof-csi" {
			continue
		}
		ep, ok := flagValue(c.Args, "endpoint")
		if !ok {
			t.Fatalf("%s: the plugin has no --endpoint", w.key)
		}
		sock, ok := strings.CutPrefix(ep, "unix://")
		if !ok {
			t.Fatalf("%s: --endpoint=%s: want unix:///path", w.key, ep)
		}
		return c, sock
	}
	return nil, ""
}

func TestSidecarsReachThePluginSocket(t *testing.T) {
	for _, r := range renderings {
		for _, w := range render(t, r).workloads() {
			plugin, sock := csiPlugin(t, w)
			if plugin == nil {
				continue
			}
			pm, prel, ok := mountOf(plugin, sock)
			if !ok {
				t.Errorf("%s: %s: the plugin's socket %s is on no volume", r.name, w.key, sock)
				continue
			}
			for i := range w.pod.Spec.Containers {
				c := &w.pod.Spec.Containers[i]
				if c == plugin {
					continue
				}
				where := r.name + ": " + w.key.String() + " container " + c.Name
				addr, ok := flagValue(c.Args, "csi-address")
				if !ok {
					t.Errorf("%s: no --csi-address", where)
					continue
				}
				if addr != sock {
					t.Errorf("%s: --csi-address=%s, the plugin listens on %s", where, addr, sock)
				}
				if m, rel, ok := mountOf(c, addr); !ok || m.Name != pm.Name || rel != prel {
					t.Errorf("%s: %s is not the plugin's socket (volume %q, %q; the plugin's: %q, %q)", where, addr, m.Name, rel, pm.Name, prel)
				}
			}
		}
	}
}

// The plugin's livenessProbe asks the livenessprobe sidecar (--http-endpoint), or the plugin's
// own /healthz (--healthz-address) where the sidecar is replaced.
func TestLivenessProbesAskTheLivenessprobeSidecar(t *testing.T) {
	for _, r := range renderings {
		for _, w := range render(t, r).workloads() {
			plugin, _ := csiPlugin(t, w)
			if plugin == nil {
				continue
			}
			where := r.name + ": " + w.key.String()
			lp, endpointFlag := container(w.pod, "livenessprobe"), "http-endpoint"
			if r.builtin {
				lp, endpointFlag = plugin, "healthz-address"
			}
			if lp == nil || plugin.LivenessProbe == nil || plugin.LivenessProbe.HTTPGet == nil {
				t.Errorf("%s: want a livenessprobe sidecar and an httpGet livenessProbe on the plugin", where)
				continue
			}
			ep, _ := flagValue(lp.Args, endpointFlag)
			_, lport, err := net.SplitHostPort(ep)
			if err != nil {
				t.Errorf("%s: livenessprobe --http-endpoint=%q: %v", where, ep, err)
				continue
			}
			port := plugin.LivenessProbe.HTTPGet.Port
			want := port.String()
			for _, p := range plugin.Ports {
				if port.StrVal != "" && p.Name == port.StrVal {
					want = strconv.Itoa(int(p.ContainerPort))
				}
			}
			if want != lport || plugin.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: the liveness probe asks port %s (%s) %s; livenessprobe serves /healthz on %s", where, port.String(), want, plugin.LivenessProbe.HTTPGet.Path, lport)
			}
		}
	}
}

func TestPodReferences(t *testing.T) {
	for _, r := range renderings {
		s := render(t, r)
		for _, w := range s.workloads() {
			where := r.name + ": " + w.key.String()
			spec := &w.pod.Spec
			if o, ok := s.byKey[w.key]; ok {
				var ls map[string]string
				switch x := o.Obj.(type) {
				case *appsv1.Deployment:
					ls = x.Spec.Selector.MatchLabels
				case *appsv1.DaemonSet:
					ls = x.Spec.Selector.MatchLabels
				}
				if len(ls) == 0 || !labels.SelectorFromSet(ls).Matches(labels.Set(w.pod.Labels)) {
					t.Errorf("%s: selector %v does not match the pod labels %v", where, ls, w.pod.Labels)
				}
			}
			if _, ok := s.get("ServiceAccount", w.key.Namespace, spec.ServiceAccountName); !ok {
				t.Errorf("%s: service account %q is not rendered", where, spec.ServiceAccountName)
			}
			mounted := map[string]bool{}
			for _, c := range append(spec.InitContainers, spec.Containers...) {
				for _, m := range c.VolumeMounts {
					mounted[m.Name] = true
					if _, ok := volume(w.pod, m.Name); !ok {
						t.Errorf("%s container %s: mounts volume %q, which the pod does not have", where, c.Name, m.Name)
					}
				}
			}
			for _, v := range spec.Volumes {
				if !mounted[v.Name] {
					t.Errorf("%s: volume %q is mounted nowhere", where, v.Name)
				}
				if v.ConfigMap != nil && s.configMap(w.key.Namespace, v.ConfigMap.Name) == nil {
					t.Errorf("%s: volume %q: ConfigMap %q is not rendered", where, v.Name, v.ConfigMap.Name)
				}
				if v.Secret != nil && v.Secret.SecretName == "" {
					t.Errorf("%s: volume %q: no secret name", where, v.Name)
				}
			}
		}
	}
}

// The three workloads and what each must be.
func TestWorkloadShapes(t *testing.T) {
	for _, r := range renderings {
		s := render(t, r)
		t.Run(r.name, func(t *testing.T) {
			ctl, ok := s.workload("Deployment", "nvmeof-csi-controller")
			if !ok {
				t.Fatal("no controller Deployment")
			}
			checkController(t, ctl, r.builtin, r.snapshotMetadata)
			node, ok := s.workload("DaemonSet", "nvmeof-csi-node")
			if !ok {
				t.Fatal("no node DaemonSet")
			}
			checkNode(t, node, r.builtin)
			agent, ok := s.workload("DaemonSet", "nvmeof-agent")
			if !ok {
				t.Fatal("no agent DaemonSet")
			}
			checkAgent(t, agent)
		})
	}
}

func names(pod *corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		out = append(out, c.Name)
	}
	return out
}

func privileged(c *corev1.Container) bool {
	return c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
}

func checkController(t *testing.T, w workload, builtin, snapshotMetadata bool) {
	want := "nvmeof-csi,csi-provisioner,csi-attacher,csi-snapshotter,csi-resizer,livenessprobe"
	if builtin {
		want = strings.TrimSuffix(want, ",livenessprobe")
	}
	// csi-snapshot-metadata comes where its chart template or kustomize component puts it.
	got := slices.DeleteFunc(names(w.pod), func(n string) bool { return n == "csi-snapshot-metadata" })
	if n := len(w.pod.Spec.Containers) - len(got); n != map[bool]int{true: 1, false: 0}[snapshotMetadata] {
		t.Errorf("controller: %d csi-snapshot-metadata containers, want them with snapshotMetadata=%t", n, snapshotMetadata)
	}
	if got := strings.Join(got, ","); got != want {
		t.Errorf("controller containers %s, want %s", got, want)
	}
	if w.pod.Spec.HostNetwork {
		t.Error("the controller needs no host network")
	}
	for i := range w.pod.Spec.Containers {
		c := &w.pod.Spec.Containers[i]
		if privileged(c) {
			t.Errorf("controller container %s is privileged", c.Name)
		}
		// csi-snapshot-metadata serves reads on every replica and has no leader election.
		if strings.HasPrefix(c.Name, "csi-") && c.Name != "csi-snapshot-metadata" && !hasFlag(c.Args, "leader-election") {
			t.Errorf("controller container %s: no --leader-election", c.Name)
		}
	}
	plugin := container(w.pod, "nvmeof-csi")
	if v, _ := flagValue(plugin.Args, "mode"); v != "controller" {
		t.Errorf("controller plugin --mode=%s", v)
	}
	prov := container(w.pod, "csi-provisioner")
	// Capacity tracking: the provisioner finds its owner through POD_NAME and NAMESPACE.
	if envFieldRef(prov, "POD_NAME") != "metadata.name" || envFieldRef(prov, "NAMESPACE") != "metadata.namespace" {
		t.Error("csi-provisioner: capacity tracking needs POD_NAME and NAMESPACE from the downward API")
	}
	if lvl, _ := flagValue(prov.Args, "capacity-ownerref-level"); !hasFlag(prov.Args, "enable-capacity") || lvl != "2" {
		t.Error("csi-provisioner: want --enable-capacity owned by the Deployment (--capacity-ownerref-level=2)")
	}
}

func checkNode(t *testing.T, w workload, builtin bool) {
	want := "nvmeof-csi,node-driver-registrar,livenessprobe"
	if builtin {
		want = "nvmeof-csi"
	}
	if got := strings.Join(names(w.pod), ","); got != want {
		t.Errorf("node containers %s, want %s", got, want)
	}
	if !w.pod.Spec.HostNetwork {
		t.Error("node plugin: NVMe/TCP connections need the host network")
	}
	plugin, sock := csiPlugin(t, w)
	if !privileged(plugin) {
		t.Error("node plugin is not privileged")
	}
	if v, _ := flagValue(plugin.Args, "mode"); v != "node" {
		t.Errorf("node plugin --mode=%s", v)
	}
	if v, _ := flagValue(plugin.Args, "node-name"); v != "$(NODE_NAME)" || envFieldRef(plugin, "NODE_NAME") != "spec.nodeName" {
		t.Error("node plugin: want --node-name=$(NODE_NAME) with NODE_NAME from spec.nodeName")
	}
	hostPathOf := func(c *corev1.Container, p string) string {
		m, rel, ok := mountOf(c, p)
		if !ok {
			return ""
		}
		v, _ := volume(w.pod, m.Name)
		if v.HostPath == nil {
			return ""
		}
		return filepath.Join(v.HostPath.Path, rel)
	}
	// The kubelet directory: a Bidirectional mount at its own host path, holding the state.
	var kubelet string
	for _, m := range plugin.VolumeMounts {
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			v, _ := volume(w.pod, m.Name)
			if v.HostPath == nil || v.HostPath.Path != m.MountPath {
				t.Errorf("node plugin: the Bidirectional mount %s must be the host path of the same name", m.MountPath)
			}
			kubelet = m.MountPath
		}
	}
	if kubelet == "" {
		t.Fatal("node plugin: no Bidirectional mount of the kubelet directory")
	}
	if v, _ := flagValue(plugin.Args, "state-dir"); !strings.HasPrefix(v, kubelet+"/plugins/") {
		t.Errorf("node plugin: --state-dir=%s: want it under %s/plugins/", v, kubelet)
	}
	// The kubelet finds the socket at --kubelet-registration-path: its host path.
	hostSock := hostPathOf(plugin, sock)
	if want := kubelet + "/plugins/" + driverName + "/csi.sock"; hostSock != want {
		t.Errorf("node plugin: socket %s on the host is %q, want %s", sock, hostSock, want)
	}
	// The registrar: node-driver-registrar, or the plugin itself (--registration-dir).
	reg, regDirFlag := container(w.pod, "node-driver-registrar"), "plugin-registration-path"
	if builtin {
		reg, regDirFlag = plugin, "registration-dir"
	}
	if v, _ := flagValue(reg.Args, "kubelet-registration-path"); v != hostSock {
		t.Errorf("%s: --kubelet-registration-path=%s, the socket is %s on the host", reg.Name, v, hostSock)
	}
	regDir, _ := flagValue(reg.Args, regDirFlag)
	if regDir == "" && !builtin {
		regDir = "/registration" // node-driver-registrar's default
	}
	if hp := hostPathOf(reg, regDir+"/x"); hp != kubelet+"/plugins_registry/x" {
		t.Errorf("%s: %s is %q on the host, want %s/plugins_registry", reg.Name, regDir, filepath.Dir(hp), kubelet)
	}
	for p, what := range map[string]string{"/dev/nvme-fabrics": "/dev", "/sys/class/nvme": "/sys", "/etc/nvme/hostnqn": "/etc/nvme"} {
		if hp := hostPathOf(plugin, p); hp != p {
			t.Errorf("node plugin: %s is %q on the host, want the host's %s", p, hp, what)
		}
	}
}

func checkAgent(t *testing.T, w workload) {
	if got := strings.Join(names(w.pod), ","); got != "nvmeof-agent" {
		t.Errorf("agent containers %s, want nvmeof-agent", got)
	}
	if !w.pod.Spec.HostNetwork || w.pod.Spec.HostPID {
		t.Error("agent: want the host network (portals, API) and not the host PID namespace")
	}
	if w.pod.Spec.NodeSelector["nvmeof.csi.io/storage-node"] != "true" {
		t.Errorf("agent: node selector %v, want nvmeof.csi.io/storage-node=true", w.pod.Spec.NodeSelector)
	}
	c := &w.pod.Spec.Containers[0]
	if binaryOf(t, c) != "nvmeof-agent" || !privileged(c) {
		t.Error("agent: want nvmeof-agent, privileged")
	}
	for _, p := range []string{"/dev/mapper/x", "/sys/kernel/config/nvmet", "/run/lock/lvm/x"} {
		m, rel, ok := mountOf(c, p)
		v, _ := volume(w.pod, m.Name)
		if !ok || v.HostPath == nil || filepath.Join(v.HostPath.Path, rel) != p {
			t.Errorf("agent: %s is not the host's", p)
		}
	}
}
