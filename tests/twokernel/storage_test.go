//go:build vm

package twokernel

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/command"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/lvm"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/pool/dmthin"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmenv"
)

// Steps of the storage VM. Its agent is a real agent process (the test binary in agent mode),
// whose pool is the machine's two persistent disks.

// storageAgent is the agent this storage VM runs, if any.
var storageAgent struct {
	sync.Mutex
	a *vmenv.Agent
}

type agentIn struct {
	Addr string // the storage VM's address on the private link
	TLS  tlsBundle
	// Backend is the pool backend: backendDMThin (the disks "meta" and "data") or backendLVM
	// (a volume group on the disk "lvm").
	Backend string
	// NodeName is the storage node's name (empty: storageNodeName).
	NodeName string
}

const (
	backendDMThin = agent.BackendDMThin
	backendLVM    = agent.BackendLVM
	// lvmVG and lvmThinPool are the lvm backend's volume group and thin pool.
	lvmVG       = "twokernel"
	lvmThinPool = "pool"
)

// backends are the pool backends the power-cut tests run on.
var backends = []string{backendDMThin, backendLVM}

type agentOut struct {
	// Ready is how long the agent took from its start to answering Info over mTLS.
	Ready time.Duration
}

// poolOptions are the agent's pool in dmthin's terms (its devices found by their serials).
func poolOptions(s *vmtest.Step) dmthin.Options {
	meta, err := vmtest.DiskDevice("meta")
	if err != nil {
		s.Fatal(err)
	}
	data, err := vmtest.DiskDevice("data")
	if err != nil {
		s.Fatal(err)
	}
	return dmthin.Options{MetadataDevice: meta, DataDevice: data, Name: "nvmeof-" + storageNodeName}
}

// lvmDevice is the lvm backend's one physical volume.
func lvmDevice(s *vmtest.Step) string {
	dev, err := vmtest.DiskDevice("lvm")
	if err != nil {
		s.Fatal(err)
	}
	return dev
}

// lvmPool is the lvm backend's pool as pkg/lvm drives it, restricted to its device.
func lvmPool(s *vmtest.Step) *lvm.Pool {
	return &lvm.Pool{VG: lvmVG, ThinPool: lvmThinPool, Runner: command.Exec{}, ExtraConfig: lvm.DeviceFilter(lvmDevice(s))}
}

// poolConfig is the agent configuration's pool line for a backend. For lvm it first makes
// sure the volume group and thin pool exist and are active (after a power cut LVM does not
// activate them by itself; activating a thin pool runs thin_check on its metadata).
func poolConfig(s *vmtest.Step, backend string) string {
	switch backend {
	case backendDMThin:
		opts := poolOptions(s)
		return fmt.Sprintf("{backend: dmthin, metadataDevice: %s, dataDevice: %s, overcommitRatio: 8}", opts.MetadataDevice, opts.DataDevice)
	case backendLVM:
		ctx, cancel := context.WithTimeout(s.Context(), 5*time.Minute)
		defer cancel()
		if err := lvmPool(s).Setup(ctx, []string{lvmDevice(s)}, 90); err != nil {
			s.Fatal(err)
		}
		return fmt.Sprintf("{backend: lvm, volumeGroup: %s, thinPool: %s, devices: [%s], overcommitRatio: 8}", lvmVG, lvmThinPool, lvmDevice(s))
	}
	s.Fatalf("unknown backend %q", backend)
	return ""
}

// startAgent starts the agent on the machine's disks (formatting them on first use; otherwise
// recovering the pool), with NVMe/TCP and NVMe/RDMA portals on the private link and its API
// on TCP with mTLS, and waits until it answers.
var startAgent = vmtest.NewStep("start-agent", func(s *vmtest.Step, in agentIn) agentOut {
	if in.Backend == "" {
		in.Backend = backendDMThin
	}
	if in.NodeName == "" {
		in.NodeName = storageNodeName
	}
	dir := s.TempDir()
	server, client := in.TLS.write(s, dir)
	start := time.Now()
	a := vmenv.StartAgent(s, fmt.Sprintf(`
nodeName: %s
pool: %s
portals:
- {id: 1, transport: tcp, address: %s, port: 4420}
- {id: 2, transport: rdma, address: %s, port: 4420}
listen: tcp://%s:%s
tls: {cert: %s, key: %s, ca: %s}
`, in.NodeName, poolConfig(s, in.Backend), in.Addr, in.Addr, in.Addr, agentPort,
		server.Cert, server.Key, server.CA))
	storageAgent.Lock()
	storageAgent.a = a
	storageAgent.Unlock()
	vmenv.Dial(s, in.Addr+":"+agentPort, vmenv.MTLS(s, client, in.Addr))
	return agentOut{Ready: time.Since(start)}
})

type poolCheck struct {
	// ThinIDs is how many thin devices the pool records (and thin_ls lists).
	ThinIDs int
}

// stopAgentAndCheckPool stops the agent (SIGTERM), shuts its pool down and checks it with
// thin_check and thin_ls: clean, and exactly the thin devices the pool's records hold (for
// lvm: the thin LVs, none left pending).
var stopAgentAndCheckPool = vmtest.NewStep("stop-agent-check-pool", func(s *vmtest.Step, backend string) poolCheck {
	storageAgent.Lock()
	a := storageAgent.a
	storageAgent.a = nil
	storageAgent.Unlock()
	if a == nil {
		s.Fatal("no agent runs")
	}
	a.Stop(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(s.Context(), 5*time.Minute)
	defer cancel()
	if backend == backendLVM {
		return poolCheck{ThinIDs: checkLVMPool(ctx, s)}
	}
	opts := poolOptions(s)
	p, err := dmthin.Open(ctx, opts)
	if err != nil {
		s.Fatal(err)
	}
	n := len(p.ThinIDs())
	vmenv.ShutdownAndCheckThin(ctx, s, p, opts)
	return poolCheck{ThinIDs: n}
})

// checkLVMPool checks the lvm backend's pool: no thin LV is left tagged pending (a create the
// agent had not finished); then, the volume group deactivated, thin_check finds the thin
// pool's metadata clean (read through LVM's read-only component activation of pool_tmeta)
// and thin_ls lists exactly as many thin devices as there are thin LVs. It returns that number.
func checkLVMPool(ctx context.Context, s *vmtest.Step) int {
	p := lvmPool(s)
	lvs, err := p.List(ctx)
	if err != nil {
		s.Fatal(err)
	}
	for _, lv := range lvs {
		if _, pending := lvm.TagValue(lv.Tags, "nvmeof.pending"); pending {
			s.Errorf("thin LV %s is still tagged pending", lv.Name)
		}
	}
	ids := checkLVMThinMetadata(s)
	if ids != len(lvs) {
		s.Errorf("thin_ls lists %d thin devices; the volume group has %d thin LVs", ids, len(lvs))
	}
	return len(lvs)
}

// checkLVMThinMetadata deactivates the lvm backend's volume group, runs thin_check and thin_ls
// on its thin pool's metadata (pool_tmeta, activated alone and read-only) and returns how
// many thin devices it holds.
func checkLVMThinMetadata(s *vmtest.Step) int {
	cfg := lvm.DeviceFilter(lvmDevice(s))
	run := func(name string, args ...string) string {
		out, err := exec.CommandContext(s.Context(), name, args...).CombinedOutput()
		if err != nil {
			s.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("vgchange", "--config", cfg, "-an", lvmVG)
	tmeta := lvmVG + "/" + lvmThinPool + "_tmeta"
	run("lvchange", "--config", cfg, "-ay", "-y", tmeta)
	defer func() { _, _ = exec.Command("lvchange", "--config", cfg, "-an", tmeta).CombinedOutput() }()
	dev := "/dev/mapper/" + lvmVG + "-" + lvmThinPool + "_tmeta"
	run("thin_check", dev)
	return len(strings.Fields(run("thin_ls", "--no-headers", "-o", "DEV", dev)))
}

// checkMetadataAtBoot runs thin_check on the pool's thin metadata as the power cut left it,
// before anything (the agent) touches it, and returns how many thin devices it holds.
var checkMetadataAtBoot = vmtest.NewStep("check-metadata-at-boot", func(s *vmtest.Step, backend string) poolCheck {
	if backend == backendLVM {
		return poolCheck{ThinIDs: checkLVMThinMetadata(s)}
	}
	return poolCheck{ThinIDs: len(vmenv.CheckThinMetadata(s, poolOptions(s)))}
})

// listExports describes every subsystem the agent owns in nvmet's configfs: its namespace
// (UUID, enabled), its allowed hosts and the ports it is linked to, one line each, sorted.
var listExports = vmtest.NewStep("list-exports", func(s *vmtest.Step, _ struct{}) []string {
	root := "/sys/kernel/config/nvmet"
	subs, err := os.ReadDir(filepath.Join(root, "subsystems"))
	if err != nil {
		s.Fatal(err)
	}
	ports := map[string][]string{}
	portDirs, _ := os.ReadDir(filepath.Join(root, "ports"))
	for _, p := range portDirs {
		links, _ := os.ReadDir(filepath.Join(root, "ports", p.Name(), "subsystems"))
		for _, l := range links {
			ports[l.Name()] = append(ports[l.Name()], p.Name())
		}
	}
	var out []string
	for _, sub := range subs {
		nqn := sub.Name()
		if !strings.HasPrefix(nqn, contract.SubsystemNQNPrefix) {
			continue
		}
		dir := filepath.Join(root, "subsystems", nqn)
		hosts, _ := os.ReadDir(filepath.Join(dir, "allowed_hosts"))
		var hostNames []string
		for _, h := range hosts {
			hostNames = append(hostNames, h.Name())
		}
		ns := filepath.Join(dir, "namespaces", "1")
		attr := func(name string) string {
			raw, err := os.ReadFile(filepath.Join(ns, name))
			if err != nil {
				return "?"
			}
			return strings.TrimSpace(string(raw))
		}
		p := ports[nqn]
		slices.Sort(p)
		out = append(out, fmt.Sprintf("%s ns1 uuid=%s enable=%s hosts=%v ports=%v",
			nqn, attr("device_uuid"), attr("enable"), hostNames, p))
	}
	slices.Sort(out)
	return out
})
