package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigFillsDefaults(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, `
nodeName: storage-1
pool: {volumeGroup: vg0, thinPool: pool}
portals:
- {id: 1, transport: tcp, address: 192.0.2.1}
- {id: 2, transport: rdma, address: "fd00::1", port: 4421}
listen: unix:///run/nvmeof-agent.sock
reconcileInterval: 30s
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pool.OvercommitRatio != 1 || cfg.Portals[0].Port != 4420 || cfg.Portals[1].Port != 4421 ||
		cfg.ReconcileInterval.Duration != 30*time.Second ||
		cfg.ConfigfsRoot != "/sys/kernel/config/nvmet" {
		t.Fatalf("config %+v", cfg)
	}
	if cfg.NQNPrefix() != "nqn.2026-11.io.nvmeof-csi:storage-1:" {
		t.Fatalf("prefix %q", cfg.NQNPrefix())
	}
}

func TestLoadConfigRejects(t *testing.T) {
	base := "nodeName: s1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: tcp, address: 192.0.2.1}]\n"
	for name, tc := range map[string]struct{ body, want string }{
		"plaintext tcp":  {base + "listen: tcp://0.0.0.0:9500\n", "requires tls"},
		"unknown field":  {base + "listen: unix:///x\nfoo: 1\n", "foo"},
		"bad transport":  {"nodeName: s1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: fc, address: 192.0.2.1}]\nlisten: unix:///x\n", "transport"},
		"bad address":    {"nodeName: s1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: tcp, address: storage}]\nlisten: unix:///x\n", "not an IP"},
		"duplicate port": {"nodeName: s1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: tcp, address: 192.0.2.1}, {id: 1, transport: tcp, address: 192.0.2.2}]\nlisten: unix:///x\n", "unique"},
		"bad node name":  {"nodeName: Storage_1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: tcp, address: 192.0.2.1}]\nlisten: unix:///x\n", "nodeName"},
		"low overcommit": {"nodeName: s1\npool: {volumeGroup: vg, thinPool: p, overcommitRatio: 0.5}\nportals: [{id: 1, transport: tcp, address: 192.0.2.1}]\nlisten: unix:///x\n", "overcommit"},
		"no listen":      {base, "listen"},
		// Keys that were once documented and never applied are refused, not ignored.
		"portal anaGroup": {"nodeName: s1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: tcp, address: 192.0.2.1, anaGroup: 2}]\nlisten: unix:///x\n", "anaGroup"},
		"agent topology":  {base + "listen: unix:///x\ntopology: {zone: a}\n", "topology"},
		"bad anaState":    {"nodeName: s1\npool: {volumeGroup: vg, thinPool: p}\nportals: [{id: 1, transport: tcp, address: 192.0.2.1, anaState: change}]\nlisten: unix:///x\n", "anaState"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestLVMConfigFiltersToThePoolDevices(t *testing.T) {
	c := Config{Pool: PoolConfig{Devices: []string{"/dev/nvme0n1", "/dev/loop1"}}, LVMConfig: "activation { udev_sync = 0 }"}
	want := `devices { global_filter = [ "a|^/dev/nvme0n1$|", "a|^/dev/loop1$|", "r|.*|" ] } activation { udev_sync = 0 }`
	if got := c.LVMConfigString(); got != want {
		t.Fatalf("LVMConfigString() =\n%s\nwant\n%s", got, want)
	}
	if got := (&Config{}).LVMConfigString(); got != "" {
		t.Fatalf("no devices, no extra config: %q", got)
	}
}
