package agentclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
)

// DefaultProbeTimeout bounds each agent's answer to a readiness probe.
const DefaultProbeTimeout = 3 * time.Second

// Ready returns the controller's readiness check: every storage node's agent is asked
// for Info (in parallel, each bounded by timeout; 0 means DefaultProbeTimeout) and must answer
// with its configured name — an address that reaches the wrong agent would put volumes under
// the wrong IDs.
//
// Policy: ready when at least one storage node answers correctly; the others are logged. A
// controller that can serve some storage nodes should serve them: readiness that demanded all
// nodes would block the CSI sidecars, and the liveness probe would restart the controller,
// whenever any one storage node is down. Not ready when no storage node is configured or none
// answers.
func Ready(nodes []StorageNode, agents Source, timeout time.Duration) func(context.Context) error {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	return func(ctx context.Context) error {
		if len(nodes) == 0 {
			return errors.New("no storage nodes are configured")
		}
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = checkAgent(ctx, n.Name, agents, timeout)
			}()
		}
		wg.Wait()
		var failed []error
		for i, err := range errs {
			if err != nil {
				klog.FromContext(ctx).Error(err, "Storage node is not ready", "storageNode", nodes[i].Name)
				failed = append(failed, err)
			}
		}
		if len(failed) == len(nodes) {
			return fmt.Errorf("no storage node answers: %w", errors.Join(failed...))
		}
		return nil
	}
}

func checkAgent(ctx context.Context, name string, agents Source, timeout time.Duration) error {
	agent, err := agents.Client(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := agent.Info(ctx, &agentapi.InfoRequest{})
	if err != nil {
		return fmt.Errorf("storage node %s: %w", name, err)
	}
	if info.GetNodeName() != name {
		return fmt.Errorf("storage node %s: the agent at its address calls itself %q; check the address", name, info.GetNodeName())
	}
	return nil
}
