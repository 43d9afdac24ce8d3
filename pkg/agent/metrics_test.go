package agent

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"

	"github.com/nvmeof-csi/nvmeof-csi/internal/grpctest"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/agentapi"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/metrics/metricstest"
)

// The agent's metrics say what happened: objects, publications and hosts, pool usage as last
// read, reconciler runs, and every API call timed by operation and result.
func TestMetricsMatchWhatHappened(t *testing.T) {
	e := newEnv(t)
	reg := metrics.NewRegistry()
	reg.MustRegister(e.srv)
	c := agentapi.NewAgentClient(grpctest.Serve(t, func(s *grpc.Server) { agentapi.RegisterAgentServer(s, e.srv) }, metrics.AgentOperations(reg)))
	ctx := context.Background()
	a, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "a", SizeBytes: gib})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, &agentapi.CreateVolumeRequest{Name: "b", SizeBytes: 2 * gib}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, &agentapi.CreateSnapshotRequest{Name: "s", SourceVolumeId: a.Volume.Id}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{hostA, hostB} {
		if _, err := c.PublishVolume(ctx, &agentapi.PublishVolumeRequest{VolumeId: a.Volume.Id, HostNqn: h, NodeId: "w/" + h, Transport: agentapi.Transport_TRANSPORT_TCP}); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = c.GetVolume(ctx, &agentapi.GetVolumeRequest{Id: agentapi.VolumeID("missing")})
	e.pool.mu.Lock()
	e.pool.dataUsed = 3 * gib
	e.pool.mu.Unlock()
	if _, err := c.GetCapacity(ctx, &agentapi.GetCapacityRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]float64{
		`nvmeof_agent_objects{kind="volumes"}`:                                          2,
		`nvmeof_agent_objects{kind="snapshots"}`:                                        1,
		`nvmeof_agent_objects{kind="exports"}`:                                          1,
		`nvmeof_agent_objects{kind="publications"}`:                                     2,
		`nvmeof_agent_objects{kind="hosts"}`:                                            2,
		`nvmeof_agent_pool_bytes{space="data"}`:                                         float64(10 * gib),
		`nvmeof_agent_pool_used_bytes{space="data"}`:                                    float64(3 * gib),
		`nvmeof_agent_provisioned_bytes`:                                                float64(4 * gib),
		`nvmeof_agent_available_bytes`:                                                  float64(9*gib - 3*gib),
		`nvmeof_agent_reconcile_runs_total{result="ok"}`:                                2, // Start, and the one above
		`nvmeof_agent_reconcile_repaired_total`:                                         0,
		`nvmeof_agent_operation_seconds_count{operation="CreateVolume",result="OK"}`:    2,
		`nvmeof_agent_operation_seconds_count{operation="PublishVolume",result="OK"}`:   2,
		`nvmeof_agent_operation_seconds_count{operation="GetVolume",result="NotFound"}`: 1,
	} {
		if got := metricstest.Value(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// Drift: a subsystem removed behind the agent's back is repaired and counted.
	nqns, _ := e.target.NQNs(ctx)
	if err := e.target.RemoveSubsystem(ctx, nqns[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := metricstest.Value(t, reg, `nvmeof_agent_reconcile_repaired_total`); got != 1 {
		t.Errorf("repaired %v after one subsystem was removed, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("gathering: %d metrics, %v", n, err)
	}
}
