//go:build vm

package agent_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
	"github.com/nvmeof-csi/nvmeof-csi/tests/vmtest"
)

// agentConfigEnv makes the test binary run as the agent process (what cmd/nvmeof-agent runs
// after parsing its flags), so tests can SIGKILL and restart a real agent.
const agentConfigEnv = "NVMEOF_TEST_AGENT_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(agentConfigEnv); path != "" {
		os.Exit(runAgent(path))
	}
	vmtest.Main(m)
}

func runAgent(path string) int {
	klog.InitFlags(nil)
	flag.Parse()
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg); err != nil {
		klog.ErrorS(err, "agent failed")
		klog.Flush()
		return 1
	}
	return 0
}
