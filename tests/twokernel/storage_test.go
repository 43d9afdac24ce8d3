//go:build vm

package twokernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
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
}

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

// startAgent starts the agent on the machine's disks (formatting them on first use; otherwise
// recovering the pool), with NVMe/TCP and NVMe/RDMA portals on the private link and its API
// on TCP with mTLS, and waits until it answers.
var startAgent = vmtest.NewStep("start-agent", func(s *vmtest.Step, in agentIn) agentOut {
	opts := poolOptions(s)
	dir := s.TempDir()
	server, client := in.TLS.write(s, dir)
	start := time.Now()
	a := vmenv.StartAgent(s, fmt.Sprintf(`
nodeName: %s
pool: {backend: dmthin, metadataDevice: %s, dataDevice: %s, overcommitRatio: 8}
portals:
- {id: 1, transport: tcp, address: %s, port: 4420}
- {id: 2, transport: rdma, address: %s, port: 4420}
listen: tcp://%s:%s
tls: {cert: %s, key: %s, ca: %s}
`, storageNodeName, opts.MetadataDevice, opts.DataDevice, in.Addr, in.Addr, in.Addr, agentPort,
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
// thin_check and thin_ls: clean, and exactly the thin devices the pool's records hold.
var stopAgentAndCheckPool = vmtest.NewStep("stop-agent-check-pool", func(s *vmtest.Step, _ struct{}) poolCheck {
	storageAgent.Lock()
	a := storageAgent.a
	storageAgent.a = nil
	storageAgent.Unlock()
	if a == nil {
		s.Fatal("no agent runs")
	}
	a.Stop(syscall.SIGTERM)
	opts := poolOptions(s)
	ctx, cancel := context.WithTimeout(s.Context(), 5*time.Minute)
	defer cancel()
	p, err := dmthin.Open(ctx, opts)
	if err != nil {
		s.Fatal(err)
	}
	n := len(p.ThinIDs())
	vmenv.ShutdownAndCheckThin(ctx, s, p, opts)
	return poolCheck{ThinIDs: n}
})

// checkMetadataAtBoot runs thin_check on the pool's dm-thin metadata as the power cut left it,
// before anything (the agent) touches it, and returns how many thin devices it holds.
var checkMetadataAtBoot = vmtest.NewStep("check-metadata-at-boot", func(s *vmtest.Step, _ struct{}) poolCheck {
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
