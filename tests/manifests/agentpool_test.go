package manifests_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/manifests"
)

// hostPathOf returns the host path a container sees at p, through the hostPath volume of the
// deepest mount holding it, and whether that mount is writable; "" when no hostPath volume
// holds p.
func hostPathOf(w workload, c *corev1.Container, p string) (string, bool) {
	m, rel, ok := mountOf(c, p)
	if !ok {
		return "", false
	}
	v, _ := volume(w.pod, m.Name)
	if v.HostPath == nil {
		return "", false
	}
	return filepath.Join(v.HostPath.Path, rel), !m.ReadOnly
}

// poolPaths are the paths an agent with this configuration opens for its pool, each with
// whether it writes there (or opens it read-write).
func poolPaths(cfg agent.Config) map[string]bool {
	paths := map[string]bool{}
	switch cfg.Pool.Backend {
	case agent.BackendDMThin:
		// The two devices, opened read-write (and the metadata device flocked); device-mapper's
		// control node, whose ioctls build the pool; and the directory in which the agent
		// mknods the volumes' device nodes, which nvmet opens by path.
		paths[cfg.Pool.MetadataDevice] = true
		paths[cfg.Pool.DataDevice] = true
		paths[dm.ControlPath] = true
		paths[filepath.Join(dmthin.DefaultNodeDir, "x")] = true
	case agent.BackendLVM:
		// The physical volumes, device-mapper, and LVM's configuration and archives, run
		// directory and locks, shared with the host's own lvm commands.
		for _, d := range cfg.Pool.Devices {
			paths[d] = true
		}
		paths[dm.ControlPath] = true
		for _, p := range []string{"/etc/lvm/archive", "/run/lvm/x", "/run/lock/lvm/x"} {
			paths[p] = true
		}
	}
	return paths
}

// checkAgentPool checks that the agent container of w can reach, on the host, everything the
// pool of cfg needs; and, for a configuration written for the container (not for systemd),
// that the lvm backend runs without udev (none answers in the container).
func checkAgentPool(t *testing.T, where string, w workload, cfg agent.Config, forContainer bool) {
	t.Helper()
	c := &w.pod.Spec.Containers[0]
	if !privileged(c) {
		t.Errorf("%s: the agent must be privileged (device nodes, device-mapper, configfs)", where)
	}
	for p, write := range poolPaths(cfg) {
		host, writable := hostPathOf(w, c, p)
		switch {
		case host != p:
			t.Errorf("%s: the %s backend needs the host's %s; the agent container sees %q of the host there", where, cfg.Pool.Backend, p, host)
		case write && !writable:
			t.Errorf("%s: the %s backend writes %s, which the agent container mounts read-only", where, cfg.Pool.Backend, p)
		}
	}
	if forContainer && cfg.Pool.Backend == agent.BackendLVM {
		lc := strings.ReplaceAll(cfg.LVMConfig, " ", "")
		for _, s := range []string{"udev_sync=0", "udev_rules=0"} {
			if !strings.Contains(lc, s) {
				t.Errorf("%s: in a container the lvm backend needs lvmConfig with %s (deploy/README.md)", where, s)
			}
		}
	}
}

// The agent DaemonSet of every rendering reaches what each of its configurations' pools
// needs.
func TestAgentReachesItsPool(t *testing.T) {
	for _, r := range renderings {
		t.Run(r.name, func(t *testing.T) {
			s := render(t, r)
			w, ok := s.workload("DaemonSet", "nvmeof-agent")
			if !ok {
				t.Fatal("no agent DaemonSet")
			}
			for key, cfg := range checkAgentConfigs(t, s) {
				checkAgentPool(t, "agent "+key, w, cfg, true)
			}
		})
	}
}

// The shipped examples default to the dmthin backend.
func TestExamplesUseDMThin(t *testing.T) {
	for _, r := range renderings {
		if !r.example {
			continue
		}
		for key, cfg := range checkAgentConfigs(t, render(t, r)) {
			if cfg.Pool.Backend != agent.BackendDMThin {
				t.Errorf("%s: agent %s: backend %s, want the default for new pools, %s", r.name, key, cfg.Pool.Backend, agent.BackendDMThin)
			}
		}
	}
	cfg, err := agent.LoadConfig(path("deploy/systemd/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pool.Backend != agent.BackendDMThin {
		t.Errorf("deploy/systemd/config.yaml: backend %s, want %s", cfg.Pool.Backend, agent.BackendDMThin)
	}
}

var yamlBlock = regexp.MustCompile("(?ms)^```yaml\n(.*?)^```")

// documentedAgentConfigs returns the agent configurations shown in a Markdown file: yaml
// blocks that are one (they start with nodeName:) or Helm values holding some
// (agent.configs), by "file: block n[, key]".
func documentedAgentConfigs(t *testing.T, file string) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile(path(file))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for i, m := range yamlBlock.FindAllStringSubmatch(string(raw), -1) {
		where := file + ": yaml block " + strconv.Itoa(i+1)
		block := m[1]
		if strings.HasPrefix(block, "nodeName:") {
			out[where] = []byte(block)
			continue
		}
		var values struct {
			Agent struct {
				Configs map[string]any `json:"configs"`
			} `json:"agent"`
		}
		if err := yaml.Unmarshal([]byte(block), &values); err != nil {
			continue // not values
		}
		for key, c := range values.Agent.Configs {
			y, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			out[where+", "+key] = y
		}
	}
	return out
}

// The agent configurations the docs show are valid, cover both backends, and work in the
// shipped DaemonSet (the main README's, written for systemd, as far as the pool goes).
func TestDocumentedAgentConfigs(t *testing.T) {
	s := render(t, renderings[0])
	w, ok := s.workload("DaemonSet", "nvmeof-agent")
	if !ok {
		t.Fatal("no agent DaemonSet")
	}
	backends := map[string][]string{}
	dir := t.TempDir()
	for file, forContainer := range map[string]bool{"README.md": false, "deploy/README.md": true, manifests.Chart + "/README.md": true} {
		for where, raw := range documentedAgentConfigs(t, file) {
			p := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(p, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := agent.LoadConfig(p)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			backends[cfg.Pool.Backend] = append(backends[cfg.Pool.Backend], where)
			checkAgentPool(t, where, w, cfg, forContainer)
		}
	}
	for _, b := range []string{agent.BackendDMThin, agent.BackendLVM} {
		if len(backends[b]) == 0 {
			t.Errorf("no documented agent configuration uses the %s backend", b)
		}
	}
	for b, where := range backends {
		slices.Sort(where)
		t.Logf("%s: %s", b, strings.Join(where, "; "))
	}
}
