//go:build vm

package twokernel

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/internal/vmtest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/plugin"
)

// csi-sanity across kernels: the agent in the storage VM, the CSI plugin (controller and node)
// and csi-sanity in the worker VM, every volume reached over the private link. Ginkgo runs one
// suite per process, so each transport's suite is a child process of the worker's step server.

const sanityEnv = "NVMEOF_TWOKERNEL_SANITY"

type sanityIn struct {
	Plugin    pluginIn
	Transport string
}

type sanityOut struct {
	Passed   bool
	Summary  string
	Duration time.Duration
}

var summaryRE = regexp.MustCompile(`Ran \d+ of \d+ Specs in [0-9.]+ seconds\n(SUCCESS|FAIL)! -- \d+ Passed \| \d+ Failed \| \d+ Pending \| \d+ Skipped`)

// runSanity runs the csi-sanity suite over one transport in a child process and returns
// ginkgo's summary.
var runSanity = vmtest.NewStep("run-sanity", func(s *vmtest.Step, in sanityIn) sanityOut {
	dir := s.TempDir()
	cfg := filepath.Join(dir, "sanity.json")
	raw, err := json.Marshal(in)
	if err != nil {
		s.Fatal(err)
	}
	if err := os.WriteFile(cfg, raw, 0o644); err != nil {
		s.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		s.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.CommandContext(s.Context(), self)
	cmd.Env = append(os.Environ(), sanityEnv+"="+cfg)
	cmd.Stdout = io.MultiWriter(s.Output(), &out)
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res := sanityOut{Passed: runErr == nil, Duration: time.Since(start)}
	res.Summary = summaryRE.FindString(out.String())
	if res.Summary == "" {
		s.Fatalf("csi-sanity printed no summary (%v)", runErr)
	}
	return res
})

// ginkgoT is what csi-sanity needs of a test.
type ginkgoT struct{ failed bool }

func (g *ginkgoT) Fail() { g.failed = true }

// maybeRunSanity runs csi-sanity and exits when this process is run by runSanity.
func maybeRunSanity() {
	path := os.Getenv(sanityEnv)
	if path == "" {
		return
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var in sanityIn
	if err := json.Unmarshal(raw, &in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	t := &ginkgoT{}
	sanityChild(t, filepath.Dir(path), in)
	if t.failed {
		os.Exit(1)
	}
	os.Exit(0)
}

// childStep is the testing.TB a child process's helpers fail with: it exits.
type childStep struct{ testing.TB }

func (childStep) Helper() {}
func (childStep) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(2)
}

func sanityChild(t *ginkgoT, dir string, in sanityIn) {
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	_, client := in.Plugin.TLS.write(childStep{}, dir)
	nodes := filepath.Join(dir, "storage-nodes.yaml")
	if err := os.WriteFile(nodes, []byte(fmt.Sprintf(`storageNodes:
- name: %s
  address: %s
  tls: {cert: %s, key: %s, ca: %s, serverName: %s}
`, storageNodeName, in.Plugin.AgentAddr, client.Cert, client.Key, client.CA, in.Plugin.ServerName)), 0o644); err != nil {
		childStep{}.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- plugin.Run(klog.NewContext(ctx, klog.Background()), plugin.Options{
			Mode:         plugin.ModeAll,
			Endpoint:     endpoint,
			StorageNodes: nodes,
			AgentTimeout: 2 * time.Minute,
			ProbeTimeout: 10 * time.Second,
			NodeName:     workerNodeName,
			IdentityDir:  filepath.Join(dir, "nvme"),
			StateDir:     filepath.Join(dir, "state"),
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "plugin:", err)
			t.Fail()
		}
	}()

	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 256 << 20
	cfg.TestVolumeExpandSize = 512 << 20
	cfg.TestVolumeParameters = map[string]string{"transport": in.Transport}
	for name, value := range map[string]string{"ginkgo.v": "true", "ginkgo.no-color": "true"} {
		if err := flag.Set(name, value); err != nil {
			childStep{}.Fatal(err)
		}
	}
	sanity.Test(t, cfg)
}

// TestSanityAcrossKernels runs the full csi-sanity suite with the agent in the storage VM and
// the plugin in the worker VM, over NVMe/TCP and then NVMe/RDMA (Soft-RoCE on both ends of the
// private link).
func TestSanityAcrossKernels(t *testing.T) {
	tk := newTwoKernel(t)
	startAgent.Run(t, tk.storage, agentIn{Addr: tk.storage.Addr(), TLS: tk.tls})
	in := pluginIn{AgentAddr: tk.agentAddr(), ServerName: tk.storage.Addr(), TLS: tk.tls}
	for _, transport := range []string{"tcp", "rdma"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
			defer cancel()
			res, err := runSanity.Call(ctx, tk.worker, sanityIn{Plugin: in, Transport: transport})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("csi-sanity over %s across kernels in %s:\n%s", transport, res.Duration.Round(time.Second), res.Summary)
			if !res.Passed || !strings.HasPrefix(strings.SplitN(res.Summary, "\n", 2)[1], "SUCCESS!") {
				t.Errorf("csi-sanity over %s failed", transport)
			}
		})
	}
	pool := stopAgentAndCheckPool.Run(t, tk.storage, backendDMThin)
	if pool.ThinIDs != 0 {
		t.Errorf("csi-sanity left %d thin devices in the pool", pool.ThinIDs)
	}
}
